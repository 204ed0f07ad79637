// Package fsserver is the agent's fs capability (agentv1.Fs): the target container's filesystem
// as its main process sees it, for the layer to hand to the user's process.
//
// Two rules make the answers the ones the pod's process would get:
//
//   - Every path resolves inside the container's root and never outside it: each request opens
//     /proc/PID/root and resolves the path from it with openat2(RESOLVE_IN_ROOT |
//     RESOLVE_NO_MAGICLINKS) (package inroot). An absolute symlink in the container
//     ("/etc/link -> /etc/app.conf") lands in the container; ".." stops at its root; a
//     ConfigMap's "..data" symlink farm works; /proc/self/root and other magic links are ELOOP.
//     Calls that act on a name (mkdir, unlink, rename) resolve the parent that way and pass the
//     one last name to the *at call, which never follows it.
//   - Every operation runs with the target process's credentials (package creds), so the kernel
//     gives EACCES where the target's uid would get it, creates files owned by the target's uid
//     and gid with its umask, and says EROFS on a read-only mount.
//
// A failure the user's process should see travels as an errno in the response (ENOENT, EACCES,
// ENOTDIR, EISDIR, ELOOP, EXDEV…), never as a gRPC error. gRPC errors are for the agent's own
// trouble: FailedPrecondition when there is no target (targetless agent, target gone),
// Unimplemented on a node kernel without openat2 (before 5.6), Internal when the agent could not
// do its part (e.g. take the target's credentials).
//
// Read streams the file in 256 KiB chunks, the first message carrying its FileInfo (and the first
// bytes). A read error after the first message (EIO, say) is sent as one more message with the
// errno set and no data.
package fsserver

import (
	"context"
	"errors"
	"io"
	"os"
	"sync"

	agentv1 "github.com/kwarp-dev/kwarp/agent/api/v1"
	"github.com/kwarp-dev/kwarp/agent/creds"
	"github.com/kwarp-dev/kwarp/agent/internal/inroot"
	"github.com/kwarp-dev/kwarp/agent/target"
	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// ChunkSize is the size of a Read message's data: large enough that a file's bytes cross the
// port-forward in few messages, small enough to stay far below gRPC's 4 MiB message limit.
const ChunkSize = 256 << 10

var chunks = sync.Pool{New: func() any { b := make([]byte, ChunkSize); return &b }}

// Server is the Fs service of the target loc gives; a nil loc is a targetless agent.
type Server struct {
	agentv1.UnimplementedFsServer
	loc target.Locator
	log zerolog.Logger
}

// New returns the fs service.
func New(log zerolog.Logger, loc target.Locator) *Server {
	return &Server{loc: loc, log: log}
}

// run runs op on a thread with the target's credentials, giving it the fd of the target's root.
// It returns op's errno (0 for success) or a gRPC status for the agent's own failures.
func (s *Server) run(what string, op func(root int) error) (int32, error) {
	p, err := target.Current(s.loc)
	if err != nil {
		return 0, err
	}
	root, err := p.OpenRoot()
	if err != nil {
		return 0, status.Errorf(codes.FailedPrecondition, "%s: %v", what, err)
	}
	defer root.Close()
	c, err := creds.Of(p)
	if err != nil {
		return 0, status.Errorf(codes.FailedPrecondition, "%s: %v", what, err)
	}
	var opErr error
	if err := c.Do(func() { opErr = op(int(root.Fd())) }); err != nil {
		s.log.Error().Err(err).Str("op", what).Msg("fs operation could not run as the target")
		return 0, status.Errorf(codes.Internal, "%s: %v", what, err)
	}
	return errnoOf(s.log, what, opErr)
}

// errnoOf turns an operation's error into the errno for the response.
func errnoOf(log zerolog.Logger, what string, err error) (int32, error) {
	if err == nil {
		return 0, nil
	}
	if errors.Is(err, inroot.ErrNoOpenat2) {
		return 0, status.Error(codes.Unimplemented, err.Error())
	}
	var e unix.Errno
	if errors.As(err, &e) {
		return int32(e), nil
	}
	log.Error().Err(err).Str("op", what).Msg("fs operation failed without an errno")
	return 0, status.Errorf(codes.Internal, "%s: %v", what, err)
}

// Stat is stat(2), or lstat(2) with no_follow.
func (s *Server) Stat(ctx context.Context, req *agentv1.StatRequest) (*agentv1.StatResponse, error) {
	if e := checkPath(req.Path); e != 0 {
		return &agentv1.StatResponse{Errno: int32(e)}, nil
	}
	var info *agentv1.FileInfo
	errno, err := s.run("stat", func(root int) error {
		var err error
		info, err = stat(root, req.Path, req.NoFollow)
		return err
	})
	if err != nil {
		return nil, err
	}
	return &agentv1.StatResponse{Errno: errno, Info: info}, nil
}

// Read streams a regular file.
func (s *Server) Read(req *agentv1.ReadRequest, stream agentv1.Fs_ReadServer) error {
	if e := checkPath(req.Path); e != 0 {
		return stream.Send(&agentv1.ReadChunk{Errno: int32(e)})
	}
	var f *os.File
	var info *agentv1.FileInfo
	errno, err := s.run("read", func(root int) error {
		var err error
		f, info, err = openRead(root, req.Path, req.MaxBytes)
		return err
	})
	if err != nil {
		return err
	}
	if errno != 0 {
		return stream.Send(&agentv1.ReadChunk{Errno: errno})
	}
	defer f.Close()

	// The bytes are read here, off the credential thread: the open was the permission check.
	// The usual small file gets a buffer of its size plus one byte (one read sees its end, one
	// message carries it); a file that reports no size (procfs, sysfs) or a big one gets a
	// pooled ChunkSize buffer. A fresh ChunkSize buffer per read cost more than the read.
	var buf []byte
	if info.Size > 0 && info.Size < ChunkSize {
		buf = make([]byte, info.Size+1)
	} else {
		pb := chunks.Get().(*[]byte)
		defer chunks.Put(pb)
		buf = *pb
	}
	var total int64
	first := true
	for {
		n, rerr := io.ReadFull(f, buf)
		total += int64(n)
		if req.MaxBytes > 0 && total > req.MaxBytes {
			// The file grew past the limit while we read it.
			return stream.Send(&agentv1.ReadChunk{Errno: int32(unix.EFBIG)})
		}
		if n > 0 || first {
			msg := &agentv1.ReadChunk{Data: buf[:n]}
			if first {
				msg.Info, first = info, false
			}
			// Send marshals before it returns, so buf can be reused.
			if err := stream.Send(msg); err != nil {
				return err
			}
		}
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			return nil
		}
		if rerr != nil {
			errno, err := errnoOf(s.log, "read", rerr)
			if err != nil {
				return err
			}
			return stream.Send(&agentv1.ReadChunk{Errno: errno})
		}
	}
}

// ReadDir lists a directory without "." and "..".
func (s *Server) ReadDir(ctx context.Context, req *agentv1.ReadDirRequest) (*agentv1.ReadDirResponse, error) {
	if e := checkPath(req.Path); e != 0 {
		return &agentv1.ReadDirResponse{Errno: int32(e)}, nil
	}
	var entries []*agentv1.DirEntry
	var skipped int
	errno, err := s.run("readdir", func(root int) error {
		var err error
		entries, skipped, err = readDir(root, req.Path)
		return err
	})
	if err != nil {
		return nil, err
	}
	if skipped > 0 {
		s.log.Warn().Str("path", req.Path).Int("skipped", skipped).Msg("readdir: names that are not UTF-8 left out")
	}
	return &agentv1.ReadDirResponse{Errno: errno, Entries: entries}, nil
}

// ReadLink is readlink(2).
func (s *Server) ReadLink(ctx context.Context, req *agentv1.ReadLinkRequest) (*agentv1.ReadLinkResponse, error) {
	if e := checkPath(req.Path); e != 0 {
		return &agentv1.ReadLinkResponse{Errno: int32(e)}, nil
	}
	var t string
	errno, err := s.run("readlink", func(root int) error {
		var err error
		t, err = readLink(root, req.Path)
		return err
	})
	if err != nil {
		return nil, err
	}
	return &agentv1.ReadLinkResponse{Errno: errno, Target: t}, nil
}

// Access is access(2) as the target process.
func (s *Server) Access(ctx context.Context, req *agentv1.AccessRequest) (*agentv1.AccessResponse, error) {
	if e := checkPath(req.Path); e != 0 {
		return &agentv1.AccessResponse{Errno: int32(e)}, nil
	}
	errno, err := s.run("access", func(root int) error { return access(root, req.Path, req.Mode) })
	if err != nil {
		return nil, err
	}
	return &agentv1.AccessResponse{Errno: errno}, nil
}

// Write creates or replaces a file (or appends to it) with the bytes of the stream.
func (s *Server) Write(stream agentv1.Fs_WriteServer) error {
	first, err := stream.Recv()
	if err == io.EOF {
		return stream.SendAndClose(&agentv1.WriteResponse{Errno: int32(unix.EINVAL)})
	}
	if err != nil {
		return err
	}
	if e := checkPath(first.Path); e != 0 {
		return stream.SendAndClose(&agentv1.WriteResponse{Errno: int32(e)})
	}
	var f *os.File
	errno, err := s.run("write", func(root int) error {
		var err error
		f, err = openWrite(root, first.Path, first.Mode, first.Append)
		return err
	})
	if err != nil {
		return err
	}
	if errno != 0 {
		return stream.SendAndClose(&agentv1.WriteResponse{Errno: errno})
	}
	written, werr := writeStream(f, first.Data, stream)
	if cerr := f.Close(); werr == nil {
		werr = cerr // NFS and quotas may report a failed write only at close
	}
	if werr != nil {
		var st interface{ GRPCStatus() *status.Status }
		if errors.As(werr, &st) {
			return werr // the stream broke: nobody to answer
		}
		errno, err := errnoOf(s.log, "write", werr)
		if err != nil {
			return err
		}
		return stream.SendAndClose(&agentv1.WriteResponse{Errno: errno, Written: written})
	}
	return stream.SendAndClose(&agentv1.WriteResponse{Written: written})
}

// writeStream writes data, then every later message's data, to f.
func writeStream(f *os.File, data []byte, stream agentv1.Fs_WriteServer) (int64, error) {
	var written int64
	for {
		if len(data) > 0 {
			n, err := f.Write(data)
			written += int64(n)
			if err != nil {
				return written, err
			}
		}
		msg, err := stream.Recv()
		if err == io.EOF {
			return written, nil
		}
		if err != nil {
			return written, status.Convert(err).Err()
		}
		data = msg.Data
	}
}

// Mkdir is mkdir(2) as the target.
func (s *Server) Mkdir(ctx context.Context, req *agentv1.MkdirRequest) (*agentv1.ErrnoResponse, error) {
	if e := checkPath(req.Path); e != 0 {
		return &agentv1.ErrnoResponse{Errno: int32(e)}, nil
	}
	errno, err := s.run("mkdir", func(root int) error { return mkdir(root, req.Path, req.Mode) })
	if err != nil {
		return nil, err
	}
	return &agentv1.ErrnoResponse{Errno: errno}, nil
}

// Unlink is unlink(2), or rmdir(2) when req.Dir.
func (s *Server) Unlink(ctx context.Context, req *agentv1.UnlinkRequest) (*agentv1.ErrnoResponse, error) {
	if e := checkPath(req.Path); e != 0 {
		return &agentv1.ErrnoResponse{Errno: int32(e)}, nil
	}
	errno, err := s.run("unlink", func(root int) error { return unlink(root, req.Path, req.Dir) })
	if err != nil {
		return nil, err
	}
	return &agentv1.ErrnoResponse{Errno: errno}, nil
}

// Rename is rename(2) within the container.
func (s *Server) Rename(ctx context.Context, req *agentv1.RenameRequest) (*agentv1.ErrnoResponse, error) {
	if e := checkPath(req.From); e != 0 {
		return &agentv1.ErrnoResponse{Errno: int32(e)}, nil
	}
	if e := checkPath(req.To); e != 0 {
		return &agentv1.ErrnoResponse{Errno: int32(e)}, nil
	}
	errno, err := s.run("rename", func(root int) error { return rename(root, req.From, req.To) })
	if err != nil {
		return nil, err
	}
	return &agentv1.ErrnoResponse{Errno: errno}, nil
}
