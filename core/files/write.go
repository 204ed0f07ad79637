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
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	agentv1 "github.com/kwarp-dev/kwarp/agent/api/v1"
)

// writeBack gives the process a local file for a remote one it writes, and sends the content
// to the pod each time the process closes it after writing (inotify IN_CLOSE_WRITE). Nothing
// traps close or write: the process works on a real file at full speed.
type writeBack struct {
	agent agentv1.FsClient
	dir   string
	log   func(error)

	once     sync.Once
	initErr  error
	ifd      int
	mu       sync.Mutex
	byWD     map[int32]*pending
	byRemote map[string]*pending // the session's copy of each remote file it wrote
	wg       sync.WaitGroup      // uploads in flight
	done     chan struct{}
}

type pending struct {
	remote, local string
	mode          uint32
}

func newWriteBack(agent agentv1.FsClient, dir string, log func(error)) *writeBack {
	return &writeBack{agent: agent, dir: dir, log: log, byWD: map[int32]*pending{}, byRemote: map[string]*pending{},
		done: make(chan struct{})}
}

func (w *writeBack) init() error {
	w.once.Do(func() {
		fd, err := unix.InotifyInit1(unix.IN_CLOEXEC)
		if err != nil {
			w.initErr = fmt.Errorf("inotify for written files: %w", err)
			return
		}
		w.ifd = fd
		go w.watch()
	})
	return w.initErr
}

// local is the session's copy of a remote file the process wrote: later opens and stats of
// that path use it, so a process reads what it wrote even before the upload lands.
func (w *writeBack) local(remote string) (string, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	p, ok := w.byRemote[remote]
	if !ok {
		return "", false
	}
	return p.local, true
}

// reopen opens the session's copy again with the process's flags (O_TRUNC included), for a
// write; the close that follows uploads it again.
func (w *writeBack) reopen(local string, flags int) (*os.File, error) {
	return os.OpenFile(local, flags&(unix.O_ACCMODE|unix.O_APPEND|unix.O_TRUNC), 0)
}

// open prepares the local copy of remote and opens it with the process's flags.
func (w *writeBack) open(ctx context.Context, remote string, flags int, mode uint32, exists bool, remoteMode uint32,
	download func(context.Context, string) (*os.File, error)) (*os.File, error) {
	if err := w.init(); err != nil {
		return nil, err
	}
	sum := sha256.Sum256([]byte(remote))
	local := filepath.Join(w.dir, "writes", hex.EncodeToString(sum[:8])+"-"+filepath.Base(remote))
	if err := os.MkdirAll(filepath.Dir(local), 0o700); err != nil {
		return nil, err
	}
	perm := mode & 0o7777
	if exists {
		perm = remoteMode & 0o7777
	}
	if exists && flags&unix.O_TRUNC == 0 {
		src, err := download(ctx, remote)
		if err != nil {
			return nil, err
		}
		dst, err := os.OpenFile(local, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
		if err == nil {
			_, err = io.Copy(dst, src)
			dst.Close()
		}
		src.Close()
		if err != nil {
			return nil, fmt.Errorf("local copy of %s: %w", remote, err)
		}
	} else if err := os.WriteFile(local, nil, 0o600); err != nil {
		return nil, err
	}
	wd, err := unix.InotifyAddWatch(w.ifd, local, unix.IN_CLOSE_WRITE)
	if err != nil {
		return nil, fmt.Errorf("watch %s: %w", local, err)
	}
	p := &pending{remote: remote, local: local, mode: perm}
	w.mu.Lock()
	w.byWD[int32(wd)] = p
	w.byRemote[remote] = p
	w.mu.Unlock()
	keep := flags & (unix.O_ACCMODE | unix.O_APPEND)
	return os.OpenFile(local, keep, 0)
}

func (w *writeBack) watch() {
	buf := make([]byte, 64*(unix.SizeofInotifyEvent+unix.PathMax))
	for {
		n, err := unix.Read(w.ifd, buf)
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			close(w.done)
			return
		}
		for off := 0; off+unix.SizeofInotifyEvent <= n; {
			ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
			off += unix.SizeofInotifyEvent + int(ev.Len)
			if ev.Mask&unix.IN_CLOSE_WRITE == 0 {
				continue
			}
			w.mu.Lock()
			p := w.byWD[ev.Wd]
			w.mu.Unlock()
			if p != nil {
				w.wg.Add(1)
				go func() {
					defer w.wg.Done()
					if err := w.upload(p); err != nil {
						w.log(err)
					}
				}()
			}
		}
	}
}

// upload sends the local copy's content to the pod, replacing the remote file.
func (w *writeBack) upload(p *pending) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	f, err := os.Open(p.local)
	if err != nil {
		return err
	}
	defer f.Close()
	stream, err := w.agent.Write(ctx)
	if err != nil {
		return fmt.Errorf("write %s back to the target: %w", p.remote, err)
	}
	if err := stream.Send(&agentv1.WriteChunk{Path: p.remote, Mode: p.mode}); err != nil {
		return fmt.Errorf("write %s back to the target: %w", p.remote, err)
	}
	buf := make([]byte, 256<<10)
	for {
		n, err := f.Read(buf)
		if n > 0 {
			if err := stream.Send(&agentv1.WriteChunk{Data: buf[:n]}); err != nil {
				return fmt.Errorf("write %s back to the target: %w", p.remote, err)
			}
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
	}
	resp, err := stream.CloseAndRecv()
	if err != nil {
		return fmt.Errorf("write %s back to the target: %w", p.remote, err)
	}
	if resp.Errno != 0 {
		return fmt.Errorf("write %s back to the target: %w", p.remote, unix.Errno(resp.Errno))
	}
	return nil
}

// flush waits for the uploads of files already closed; call it after the process tree ended.
func (w *writeBack) flush() {
	if w.ifd == 0 {
		return
	}
	// let the kernel deliver the last close events before waiting for their uploads
	time.Sleep(50 * time.Millisecond)
	w.wg.Wait()
	unix.Close(w.ifd)
}
