// Package inroot opens paths inside a container's root directory without ever leaving it.
//
// The agent reaches a container's files through /proc/PID/root. Walking a path below that magic
// link is not enough: an absolute symlink in the container ("/etc/link -> /etc/app.conf") would
// resolve against the agent's root (the node's filesystem), and ".." at the container's root
// would climb into the node's directories. openat2(2) with RESOLVE_IN_ROOT makes the kernel
// treat the directory fd as "/" for the whole walk, symlinks and ".." included, the way chroot
// does for the container's own processes; RESOLVE_NO_MAGICLINKS refuses /proc/*/root,
// /proc/*/fd/* and their kin (ELOOP), which would otherwise jump to any other root.
package inroot

import (
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// ErrNoOpenat2 is returned on kernels without openat2 (before Linux 5.6): there is no safe
// way to resolve in another root without it, so the agent refuses rather than risk an escape.
var ErrNoOpenat2 = errors.New("the node's kernel lacks openat2 (Linux 5.6+): the target's files cannot be served safely")

// Resolve is the resolution every open in a container's root uses.
const Resolve = unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS

// eagainRetries bounds the retries openat2 asks for with EAGAIN: with RESOLVE_IN_ROOT the
// kernel gives up a walk when a concurrent rename or mount might have let ".." escape.
const eagainRetries = 16

// OpenRoot opens a directory (in practice /proc/PID/root) as an O_PATH fd to resolve in.
func OpenRoot(path string) (int, error) {
	fd, err := unix.Open(path, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("open root %s: %w", path, err)
	}
	return fd, nil
}

// Open opens path (absolute or relative, both taken from root) inside root. mode is used only
// with O_CREAT; openat2 refuses a mode without it. The error is the bare unix.Errno so callers
// hand it to the user's process unchanged, or ErrNoOpenat2.
func Open(root int, path string, flags int, mode uint32) (int, error) {
	how := unix.OpenHow{Flags: uint64(flags) | unix.O_CLOEXEC, Resolve: Resolve}
	if flags&(unix.O_CREAT|unix.O_TMPFILE) != 0 {
		how.Mode = uint64(mode & 0o7777)
	}
	for i := 0; ; i++ {
		fd, err := unix.Openat2(root, path, &how)
		if err == nil {
			return fd, nil
		}
		if errors.Is(err, unix.EINTR) || (errors.Is(err, unix.EAGAIN) && i < eagainRetries) {
			continue
		}
		if errors.Is(err, unix.ENOSYS) {
			return -1, ErrNoOpenat2
		}
		return -1, err
	}
}

// ReadFile reads at most limit bytes of a file inside root.
func ReadFile(root int, path string, limit int64) ([]byte, error) {
	fd, err := Open(root, path, unix.O_RDONLY|unix.O_NOCTTY|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), path)
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, limit))
}
