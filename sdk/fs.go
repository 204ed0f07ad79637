package sdk

import (
	"context"
	"time"
)

// FsRules is the files plugin's table. The core matches every path the user's process touches
// against it without calling the plugin; a path that routes remote costs a call to the plugin
// (and the agent) only for metadata and for the decision to open, never for the content.
type FsRules struct {
	// Mode is the fs mode: local, localwithoverrides, read or write.
	Mode string
	// Rules are tried in order; the first whose glob matches decides.
	Rules []FsRule
	// Default is where a path matching no rule goes: RouteLocal or RouteRemote.
	Default string
}

// FsRule routes the paths its glob matches (a path glob: "*" within a segment, "**" across).
type FsRule struct {
	Glob  string
	Route string // RouteLocal, RouteRemote or RouteNotFound
}

// Routes of an FsRule.
const (
	RouteLocal    = "local"
	RouteRemote   = "remote"
	RouteNotFound = "not_found"
)

// FileInfo mirrors the struct stat fields programs read.
type FileInfo struct {
	Mode                uint32
	Size                int64
	UID, GID            uint32
	Nlink, Ino, Dev     uint64
	Rdev                uint64
	Blksize, Blocks     int64
	Atime, Mtime, Ctime time.Time
}

// OpenAction is what the core does after a remote open was allowed.
type OpenAction int

const (
	// OpenRead: the core reads the remote file into a local file and hands it to the process.
	OpenRead OpenAction = iota
	// OpenReadDir: the core lists the remote directory into a local directory.
	OpenReadDir
	// OpenWrite: the core gives the process a local file and writes it back to the pod.
	OpenWrite
	// OpenLocal: the call runs locally after all.
	OpenLocal
)

// OpenDecision answers an open of a remote path. Errno, when not zero, is what the process gets.
type OpenDecision struct {
	Errno  int
	Action OpenAction
	Info   FileInfo
}

// FsPlugin decides remote file operations.
type FsPlugin interface {
	Plugin
	Open(ctx context.Context, path string, flags int, mode uint32) (OpenDecision, error)
	// Stat returns the file's info or an errno (ENOENT…).
	Stat(ctx context.Context, path string, noFollow bool) (FileInfo, int, error)
	Readlink(ctx context.Context, path string) (string, int, error)
	Access(ctx context.Context, path string, mode uint32) (int, error)
}
