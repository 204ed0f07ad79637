// Package files is the core's answer to the layer for remote paths: it routes each path with
// the files plugin's rule table (no plugin call), asks the plugin to decide remote opens and
// metadata, and moves the content itself — from the agent straight into a memfd or a local
// directory the process gets as a real fd. Bytes never pass through the plugin.
package files

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	agentv1 "github.com/kwarp-dev/kwarp/agent/api/v1"
	"github.com/kwarp-dev/kwarp/core/fsroute"
	"github.com/kwarp-dev/kwarp/layer"
	"github.com/kwarp-dev/kwarp/sdk"
)

// Decider is the files plugin as the core sees it (the pluginhost client satisfies it through
// an adapter; tests give their own).
type Decider interface {
	Open(ctx context.Context, path string, flags int, mode uint32) (sdk.OpenDecision, error)
	Stat(ctx context.Context, path string, noFollow bool) (sdk.FileInfo, int, error)
	Readlink(ctx context.Context, path string) (string, int, error)
	Access(ctx context.Context, path string, mode uint32) (int, error)
}

// MaxFileSize is the largest remote file the core materialises for a process.
const MaxFileSize = 1 << 30

// Files implements layer.Handler.
type Files struct {
	table   *fsroute.Table
	decider Decider
	agent   agentv1.FsClient
	// scratch holds materialised directories; removed at session end.
	scratch string
	log     zerolog.Logger

	mu     sync.Mutex
	dirs   map[string]string // remote dir → local materialised copy
	writes *writeBack
}

// New builds the handler. scratch must be a private directory the session removes at its end.
func New(table *fsroute.Table, d Decider, agent agentv1.FsClient, scratch string, log zerolog.Logger) *Files {
	f := &Files{table: table, decider: d, agent: agent, scratch: scratch, log: log, dirs: map[string]string{}}
	f.writes = newWriteBack(agent, scratch, func(err error) { log.Warn().Err(err).Msg("write-back to the target failed") })
	return f
}

// Flush waits until every file the process closed after writing is in the pod. Call it once
// the process tree has ended, before the agent connection closes.
func (f *Files) Flush() { f.writes.flush() }

var _ layer.Handler = (*Files)(nil)

// Route evaluates the rule table.
func (f *Files) Route(path string) layer.Route { return f.table.Route(path) }

// Open opens a remote path for the process.
func (f *Files) Open(ctx context.Context, path string, flags int, mode uint32) (*os.File, error) {
	if local, ok := f.writes.local(path); ok {
		if flags&(unix.O_WRONLY|unix.O_RDWR) == 0 {
			return os.Open(local)
		}
		return f.writes.reopen(local, flags)
	}
	if flags&(unix.O_ACCMODE|unix.O_CREAT|unix.O_TRUNC|unix.O_APPEND|unix.O_DIRECTORY|unix.O_PATH) == unix.O_RDONLY {
		// a plain read has no remote effect: the agent's first answer carries the file's
		// stat or its errno, so one round trip decides and fills (no call to the plugin)
		file, err := f.readFile(ctx, path)
		if !errors.Is(err, unix.EISDIR) {
			return file, err
		}
	}
	d, err := f.decider.Open(ctx, path, flags, mode)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	if d.Errno != 0 {
		return nil, unix.Errno(d.Errno)
	}
	switch d.Action {
	case sdk.OpenRead:
		return f.readFile(ctx, path)
	case sdk.OpenReadDir:
		return f.readDir(ctx, path, d.Info)
	case sdk.OpenLocal:
		// the plugin sent it back here (a file the program creates in read mode)
		return os.OpenFile(path, flags&^unix.O_CLOEXEC, os.FileMode(mode&0o7777))
	case sdk.OpenWrite:
		exists := d.Info.Mode != 0
		return f.writes.open(ctx, path, flags, mode, exists, d.Info.Mode, f.readFile)
	}
	return nil, unix.EIO
}

// readFile streams the remote file from the agent into a memfd.
func (f *Files) readFile(ctx context.Context, path string) (*os.File, error) {
	stream, err := f.agent.Read(ctx, &agentv1.ReadRequest{Path: path, MaxBytes: MaxFileSize})
	if err != nil {
		return nil, fmt.Errorf("read %s from the target: %w", path, err)
	}
	fd, err := unix.MemfdCreate("kwarp:"+filepath.Base(path), unix.MFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("memfd for %s: %w", path, err)
	}
	mf := os.NewFile(uintptr(fd), path)
	for first := true; ; first = false {
		chunk, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			mf.Close()
			return nil, fmt.Errorf("read %s from the target: %w", path, err)
		}
		if first && chunk.Errno != 0 {
			mf.Close()
			return nil, unix.Errno(chunk.Errno)
		}
		if _, err := mf.Write(chunk.Data); err != nil {
			mf.Close()
			return nil, fmt.Errorf("fill memfd for %s: %w", path, err)
		}
	}
	if _, err := mf.Seek(0, io.SeekStart); err != nil {
		mf.Close()
		return nil, err
	}
	return mf, nil
}

// readDir lists the remote directory into a local directory with the same entry names and
// types, so getdents on the fd the process gets lists the pod's directory.
func (f *Files) readDir(ctx context.Context, path string, info sdk.FileInfo) (*os.File, error) {
	resp, err := f.agent.ReadDir(ctx, &agentv1.ReadDirRequest{Path: path})
	if err != nil {
		return nil, fmt.Errorf("list %s in the target: %w", path, err)
	}
	if resp.Errno != 0 {
		return nil, unix.Errno(resp.Errno)
	}
	sum := sha256.Sum256([]byte(path))
	dir := filepath.Join(f.scratch, "dirs", hex.EncodeToString(sum[:8]))
	f.mu.Lock()
	defer f.mu.Unlock()
	// the stand-in is updated in place, never replaced: a process may have it as its cwd or
	// hold it open, and must keep seeing the pod's directory through it
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	want := map[string]uint32{}
	for _, e := range resp.Entries {
		if e.Name == "" || e.Name == "." || e.Name == ".." || filepath.Base(e.Name) != e.Name {
			continue
		}
		want[e.Name] = e.Type
	}
	have, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	for _, h := range have {
		if t, ok := want[h.Name()]; !ok || dtOf(h.Type()) != t {
			os.RemoveAll(filepath.Join(dir, h.Name()))
		} else {
			delete(want, h.Name())
		}
	}
	for name, t := range want {
		p := filepath.Join(dir, name)
		switch t {
		case unix.DT_DIR:
			err = os.Mkdir(p, 0o755)
		case unix.DT_LNK:
			err = os.Symlink("kwarp-remote-link", p)
		default:
			err = os.WriteFile(p, nil, 0o644)
		}
		if err != nil {
			return nil, fmt.Errorf("materialise %s: %w", p, err)
		}
	}
	f.dirs[path] = dir
	if info.Mode != 0 {
		_ = os.Chmod(dir, os.FileMode(info.Mode&0o777))
	}
	return os.OpenFile(dir, unix.O_RDONLY|unix.O_DIRECTORY, 0)
}

// dtOf is the getdents type of a local entry, to compare with the pod's.
func dtOf(m os.FileMode) uint32 {
	switch {
	case m.IsDir():
		return unix.DT_DIR
	case m&os.ModeSymlink != 0:
		return unix.DT_LNK
	}
	return unix.DT_REG
}

// Stat answers from the plugin (which asks the agent), or from the session's copy of a file
// the process wrote.
func (f *Files) Stat(ctx context.Context, path string, nofollow bool) (unix.Stat_t, error) {
	if local, ok := f.writes.local(path); ok {
		var st unix.Stat_t
		if err := unix.Stat(local, &st); err == nil {
			return st, nil
		}
	}
	fi, errno, err := f.decider.Stat(ctx, path, nofollow)
	if err != nil {
		return unix.Stat_t{}, fmt.Errorf("stat %s: %w", path, err)
	}
	if errno != 0 {
		return unix.Stat_t{}, unix.Errno(errno)
	}
	return ToStat(fi), nil
}

// Readlink answers from the plugin.
func (f *Files) Readlink(ctx context.Context, path string) (string, error) {
	t, errno, err := f.decider.Readlink(ctx, path)
	if err != nil {
		return "", fmt.Errorf("readlink %s: %w", path, err)
	}
	if errno != 0 {
		return "", unix.Errno(errno)
	}
	return t, nil
}

// Access answers from the plugin.
func (f *Files) Access(ctx context.Context, path string, mode uint32) error {
	errno, err := f.decider.Access(ctx, path, mode)
	if err != nil {
		return fmt.Errorf("access %s: %w", path, err)
	}
	if errno != 0 {
		return unix.Errno(errno)
	}
	return nil
}

// ToStat converts the SDK's file info to the kernel's struct.
func ToStat(fi sdk.FileInfo) unix.Stat_t {
	st := unix.Stat_t{Mode: fi.Mode, Size: fi.Size, Uid: fi.UID, Gid: fi.GID, Nlink: fi.Nlink, Ino: fi.Ino,
		Dev: fi.Dev, Rdev: fi.Rdev, Blksize: fi.Blksize, Blocks: fi.Blocks}
	st.Atim = unix.NsecToTimespec(fi.Atime.UnixNano())
	st.Mtim = unix.NsecToTimespec(fi.Mtime.UnixNano())
	st.Ctim = unix.NsecToTimespec(fi.Ctime.UnixNano())
	return st
}
