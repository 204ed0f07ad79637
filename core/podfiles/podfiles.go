// Package podfiles serves a few of the pod's files from content the session already holds,
// whatever the fs rules say: the resolver's /etc/resolv.conf and /etc/hosts come from the DNS
// plugin's table, so names resolve as in the pod even with fs mode local or in a targetless
// session (whose agent pod's files they are), and with dns disabled they stay this machine's.
package podfiles

import (
	"context"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kwarp-dev/kwarp/layer"
)

// Handler answers for its fixed files and passes every other path to next.
type Handler struct {
	next  layer.Handler
	files map[string][]byte // path → content; nil content: the path is this machine's
	mtime time.Time
}

var _ layer.Handler = (*Handler)(nil)

// New serves files (absolute path → content) in front of next. A path mapped to nil is
// routed Local whatever next says.
func New(next layer.Handler, files map[string][]byte) *Handler {
	return &Handler{next: next, files: files, mtime: time.Now()}
}

// Route: the fixed files are Remote (served here), or Local when mapped to nil.
func (h *Handler) Route(path string) layer.Route {
	if c, ok := h.files[path]; ok {
		if c == nil {
			return layer.Local
		}
		return layer.Remote
	}
	return h.next.Route(path)
}

// Open gives a fixed file as a read-only memfd; writing it is refused (EROFS), as the
// kubelet's files are in a pod.
func (h *Handler) Open(ctx context.Context, path string, flags int, mode uint32) (*os.File, error) {
	c, ok := h.files[path]
	if !ok {
		return h.next.Open(ctx, path, flags, mode)
	}
	if flags&(unix.O_WRONLY|unix.O_RDWR|unix.O_TRUNC|unix.O_APPEND) != 0 {
		return nil, unix.EROFS
	}
	if flags&unix.O_DIRECTORY != 0 {
		return nil, unix.ENOTDIR
	}
	fd, err := unix.MemfdCreate("kwarp:pod"+path, unix.MFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("memfd for %s: %w", path, err)
	}
	f := os.NewFile(uintptr(fd), path)
	if _, err := f.Write(c); err != nil {
		f.Close()
		return nil, fmt.Errorf("fill memfd for %s: %w", path, err)
	}
	if _, err := f.Seek(0, 0); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// Stat describes a fixed file as the kubelet writes it: a root-owned 0644 regular file.
func (h *Handler) Stat(ctx context.Context, path string, nofollow bool) (unix.Stat_t, error) {
	c, ok := h.files[path]
	if !ok {
		return h.next.Stat(ctx, path, nofollow)
	}
	ts := unix.NsecToTimespec(h.mtime.UnixNano())
	return unix.Stat_t{Mode: unix.S_IFREG | 0o644, Size: int64(len(c)), Nlink: 1, Blksize: 4096,
		Blocks: (int64(len(c)) + 511) / 512, Atim: ts, Mtim: ts, Ctim: ts}, nil
}

// Readlink: a fixed file is not a link.
func (h *Handler) Readlink(ctx context.Context, path string) (string, error) {
	if _, ok := h.files[path]; ok {
		return "", unix.EINVAL
	}
	return h.next.Readlink(ctx, path)
}

// Access allows reading a fixed file, never writing or executing it.
func (h *Handler) Access(ctx context.Context, path string, mode uint32) error {
	if _, ok := h.files[path]; !ok {
		return h.next.Access(ctx, path, mode)
	}
	if mode&(unix.W_OK|unix.X_OK) != 0 {
		return unix.EACCES
	}
	return nil
}
