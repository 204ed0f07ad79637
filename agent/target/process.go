package target

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// ErrExited is wrapped when the target process is gone.
var ErrExited = errors.New("target process exited")

// Process is one target process, pinned by a pidfd: once it has exited, every method fails with
// ErrExited even if the kernel has given its PID to another process. On kernels without
// pidfd_open (before 5.3) the process's start time stands in for the pidfd.
type Process struct {
	PID      int
	procRoot string
	pidfd    *os.File // an *os.File so a concurrent Close waits for calls in flight
	start    uint64   // start time (clock ticks after boot), when there is no pidfd
}

// Open pins the process pid (a PID in procRoot's namespace, which must be the real /proc of the
// agent's PID namespace: pidfds name PIDs of the caller's namespace).
func Open(procRoot string, pid int) (*Process, error) {
	fd, err := unix.PidfdOpen(pid, 0)
	if errors.Is(err, unix.ENOSYS) {
		_, start, err := readStat(procRoot, pid)
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("pin process %d: %w", pid, ErrExited)
		}
		if err != nil {
			return nil, fmt.Errorf("pin process %d: %w", pid, err)
		}
		return &Process{PID: pid, procRoot: procRoot, start: start}, nil
	}
	if err != nil {
		if errors.Is(err, unix.ESRCH) {
			return nil, fmt.Errorf("pin process %d: %w", pid, ErrExited)
		}
		return nil, fmt.Errorf("pin process %d (pidfd_open, Linux 5.3+): %w", pid, err)
	}
	return &Process{PID: pid, procRoot: procRoot, pidfd: os.NewFile(uintptr(fd), "pidfd:"+strconv.Itoa(pid))}, nil
}

// Close releases the pidfd.
func (p *Process) Close() error {
	if p.pidfd == nil {
		return nil
	}
	return p.pidfd.Close()
}

// Alive is nil while the process exists (a zombie counts: its /proc entries are still its own).
func (p *Process) Alive() error {
	if p.pidfd == nil {
		_, start, err := readStat(p.procRoot, p.PID)
		if errors.Is(err, os.ErrNotExist) || (err == nil && start != p.start) {
			return fmt.Errorf("process %d: %w", p.PID, ErrExited)
		}
		return err
	}
	rc, err := p.pidfd.SyscallConn()
	if err != nil {
		return fmt.Errorf("process %d: %w", p.PID, ErrExited)
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.PidfdSendSignal(int(fd), 0, nil, 0)
	}); err != nil {
		return fmt.Errorf("process %d: %w", p.PID, ErrExited)
	}
	if errors.Is(serr, unix.ESRCH) {
		return fmt.Errorf("process %d: %w", p.PID, ErrExited)
	}
	if serr != nil {
		return fmt.Errorf("process %d: signal 0 through its pidfd: %w", p.PID, serr)
	}
	return nil
}

// Path is a path under the process's /proc directory.
func (p *Process) Path(elem ...string) string {
	return filepath.Join(append([]string{p.procRoot, strconv.Itoa(p.PID)}, elem...)...)
}

// ReadFile reads a file of the process's /proc directory ("environ", "status") and checks
// afterwards that the process was alive, so the content is this process's and not that of a
// newer process that got its PID.
func (p *Process) ReadFile(name string) ([]byte, error) {
	b, err := os.ReadFile(p.Path(name))
	if aerr := p.Alive(); aerr != nil {
		return nil, aerr
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", p.Path(name), err)
	}
	return b, nil
}

// OpenRoot opens the process's root directory (an O_PATH fd), checked like ReadFile. The fd is
// opened per request rather than held: a held fd would keep a dead container's root filesystem
// busy and would not follow a restart.
func (p *Process) OpenRoot() (*os.File, error) {
	path := p.Path("root")
	fd, err := unix.Open(path, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if aerr := p.Alive(); aerr != nil {
		if err == nil {
			unix.Close(fd)
		}
		return nil, aerr
	}
	if err != nil {
		return nil, fmt.Errorf("open the target's root %s: %w", path, err)
	}
	return os.NewFile(uintptr(fd), path), nil
}

// Locator gives the current target process. The agent's is a *Tracker.
type Locator interface {
	Process() (*Process, error)
}

// Current is what a capability calls at the start of a request: the target process, or a gRPC
// FailedPrecondition status the CLI can show as is (loc nil means a targetless agent).
func Current(loc Locator) (*Process, error) {
	if loc == nil {
		return nil, status.Error(codes.FailedPrecondition, "targetless session: no target container")
	}
	p, err := loc.Process()
	if err != nil {
		return nil, status.Error(codes.FailedPrecondition, err.Error())
	}
	return p, nil
}

// refindInterval bounds how often a Tracker rescans /proc while the target is gone (a
// crash-looping container), so a burst of requests does not become a burst of scans.
const refindInterval = time.Second

// Tracker follows the target container's main process: when it exits (the container
// restarted), the next call finds the new one with find.
type Tracker struct {
	procRoot string
	find     func() (int, error)

	mu       sync.Mutex
	cur      *Process
	lastErr  error
	lastScan time.Time
}

// NewTracker finds the target once, failing when it cannot.
func NewTracker(procRoot string, find func() (int, error)) (*Tracker, error) {
	t := &Tracker{procRoot: procRoot, find: find}
	if _, err := t.Process(); err != nil {
		return nil, err
	}
	return t, nil
}

// Process returns the live target process.
func (t *Tracker) Process() (*Process, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.cur != nil && t.cur.Alive() == nil {
		return t.cur, nil
	}
	if t.lastErr != nil && time.Since(t.lastScan) < refindInterval {
		return nil, t.lastErr
	}
	old := t.cur
	p, err := t.locate()
	t.lastScan = time.Now()
	if err != nil {
		if old != nil {
			err = fmt.Errorf("target process %d exited and its replacement was not found: %w", old.PID, err)
		}
		t.lastErr = err
		return nil, err
	}
	// The old pidfd is not closed here: a request may still hold the old *Process; its
	// finalizer closes it once unreferenced.
	t.cur, t.lastErr = p, nil
	return p, nil
}

func (t *Tracker) locate() (*Process, error) {
	pid, err := t.find()
	if err != nil {
		return nil, err
	}
	return Open(t.procRoot, pid)
}

// Close releases the current process's pidfd.
func (t *Tracker) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.cur == nil {
		return nil
	}
	return t.cur.Close()
}
