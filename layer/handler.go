package layer

import (
	"context"
	"os"

	"golang.org/x/sys/unix"
)

// Route is where a path lives, decided from the rule tables without I/O.
type Route int

const (
	// Local: the call runs on this machine, untouched (the supervisor answers CONTINUE).
	Local Route = iota
	// Remote: the call is served from the target container through the Handler.
	Remote
	// NotFound: the process gets ENOENT without anything being asked (credentials under the
	// user's home when the policy says not_found).
	NotFound
)

func (r Route) String() string {
	switch r {
	case Local:
		return "local"
	case Remote:
		return "remote"
	case NotFound:
		return "not_found"
	}
	return "unknown"
}

// Handler answers the trapped calls of the user's process tree. The core implements it; the
// layer knows nothing of agents or plugins. Paths are absolute and lexically clean (the layer
// resolves relative paths against the calling thread's cwd or dirfd first). Errors a process
// must see are returned as unix.Errno (ENOENT, EACCES, EROFS…); any other error becomes EIO.
type Handler interface {
	// Route must be fast and must not block: it runs for every trapped path call, local ones
	// included.
	Route(path string) Route
	// Open returns a real file to install in the process with ADDFD: a memfd or temp file with
	// a remote file's content, or a directory holding a remote directory's entries. The layer
	// closes its copy after installing it.
	Open(ctx context.Context, path string, flags int, mode uint32) (*os.File, error)
	// Stat answers stat, lstat (nofollow), newfstatat and statx for a remote path.
	Stat(ctx context.Context, path string, nofollow bool) (unix.Stat_t, error)
	// Readlink answers readlink and readlinkat for a remote path.
	Readlink(ctx context.Context, path string) (string, error)
	// Access answers access, faccessat and faccessat2 for a remote path.
	Access(ctx context.Context, path string, mode uint32) error
}
