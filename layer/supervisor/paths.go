package supervisor

import (
	"path"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// resolve turns the path a call names into the absolute, lexically clean path the Handler
// routes, reading the calling thread's cwd or dirfd from /proc/<tid> for relative paths (by TID:
// threads may differ in cwd after unshare(CLONE_FS), and /proc/<tid> exists for every thread).
// ok is false when the supervisor cannot tell what the path means (the dirfd is not a
// directory with a path, the link is gone); the call then runs untouched and the kernel says
// what it would have said.
//
// Cleaning is lexical: "a/../b" is "b" even when a is a symlink elsewhere. The kernel resolves
// Local calls itself (CONTINUE), so this only matters for names routed from such paths.
func (w *worker) resolve(tid int, dirfd int32, rel []byte) (string, bool) {
	if rel[0] == '/' {
		p := path.Clean(string(rel))
		if w.s.dirs.active() {
			// A process that fchdir()ed into a remote directory and asked getcwd() names the
			// local stand-in in absolute paths too.
			p = w.s.dirs.translate(p)
		}
		return p, true
	}
	var n int
	var err error
	switch {
	case dirfd == unix.AT_FDCWD:
		n, err = readlinkProc(tid, "cwd", -1, w.scratch[:], w.link[:])
	case dirfd >= 0:
		n, err = readlinkProc(tid, "fd/", int(dirfd), w.scratch[:], w.link[:])
	default:
		return "", false // EBADF, from the kernel
	}
	if err != nil || n == 0 || w.link[0] != '/' {
		// Gone, or not a directory with a name (pipe:[…], anon_inode:[…], /memfd:…): the
		// kernel answers ENOTDIR or EBADF.
		return "", false
	}
	base := w.link[:n]
	if hasSuffix(base, " (deleted)") {
		return "", false
	}
	if w.s.dirs.active() {
		// the base first, so ".." from a stand-in leads to the remote directory's parent
		if t := w.s.dirs.translate(string(base)); t != string(base) {
			return path.Clean(t + "/" + string(rel)), true
		}
	}
	// base + "/" + rel, built in place so the only allocation is the final string.
	j := append(w.join[:0], base...)
	j = append(j, '/')
	j = append(j, rel...)
	p := path.Clean(string(j))
	if w.s.dirs.active() {
		p = w.s.dirs.translate(p)
	}
	return p, true
}

func hasSuffix(b []byte, suffix string) bool {
	return len(b) >= len(suffix) && string(b[len(b)-len(suffix):]) == suffix
}

// dirMap remembers which local directories stand for remote ones. A remote directory opened
// for a process is a local directory the Handler filled (a temp dir with the entries); when the
// process then opens "name" relative to that fd, or fchdir()s into it and opens a relative path
// (fts, find, Python's scandir), /proc/<tid>/fd/N names the local stand-in, and the call must
// be routed as "<remote dir>/name" instead.
type dirMap struct {
	n  atomic.Int32
	mu sync.RWMutex
	m  map[string]string // local stand-in → remote path
}

// maxDirs bounds the map; a session that opens more distinct remote directories than this
// still works for absolute paths, only dirfd-relative names beyond it are routed locally.
const maxDirs = 1 << 16

func (d *dirMap) active() bool { return d.n.Load() > 0 }

func (d *dirMap) add(local, remote string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.m == nil {
		d.m = map[string]string{}
	}
	if _, ok := d.m[local]; !ok && len(d.m) >= maxDirs {
		return
	}
	d.m[local] = remote
	d.n.Store(int32(len(d.m)))
}

// translate maps p to the remote path when p is a stand-in directory or lies below one.
func (d *dirMap) translate(p string) string {
	d.mu.RLock()
	defer d.mu.RUnlock()
	for prefix := p; ; {
		if remote, ok := d.m[prefix]; ok {
			return remote + p[len(prefix):]
		}
		i := strings.LastIndexByte(prefix, '/')
		if i <= 0 {
			return p
		}
		prefix = prefix[:i]
	}
}
