package sdk

import (
	"context"
	"time"
)

// FsRules is the files plugin's table. The core matches every path the user's process touches
// against it without calling the plugin; a path that routes Remote costs a call to the plugin
// (and the agent) only for metadata and for the decision to open, never for the content.
//
// Precedence, first match wins: NotFound, Local, ReadWrite, ReadOnly, then Default.
type FsRules struct {
	// Mode is the fs mode: local, localwithoverrides, read or write.
	Mode      string
	NotFound  []string // path globs: ENOENT without asking anyone
	Local     []string // path globs served by this machine
	ReadWrite []string // path globs served by the pod, writable
	ReadOnly  []string // path globs served by the pod, read-only
	// Default is where a path matching none of the globs goes: "local" or "remote".
	Default string
}

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
