package launcher

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"time"

	"github.com/kwarp-dev/kwarp/layer/seccomp"
	"golang.org/x/sys/unix"
)

// ErrLauncherExited means the launcher ended before handing over a listener: the command was
// not found or not executable (the launcher said so on stderr and exits 127 or 126). Wait for
// it and exit with its status.
var ErrLauncherExited = errors.New("launcher: exited before installing the filter")

// Handoff is the parent's end of the launcher's socket.
type Handoff struct {
	conn  *net.UnixConn
	child *os.File
}

// Prepare gives cmd (the re-executed kwarp launcher) its end of a fresh socketpair as an extra
// file and names it in FDEnv. Call it before cmd.Start, then Listener, then Release.
func Prepare(cmd *exec.Cmd) (*Handoff, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("launcher: socketpair: %w", err)
	}
	parent := os.NewFile(uintptr(fds[0]), "kwarp-launcher-parent")
	child := os.NewFile(uintptr(fds[1]), "kwarp-launcher-child")
	c, err := net.FileConn(parent)
	parent.Close()
	if err != nil {
		child.Close()
		return nil, fmt.Errorf("launcher: socket: %w", err)
	}
	cmd.ExtraFiles = append(cmd.ExtraFiles, child)
	if cmd.Env == nil {
		cmd.Env = os.Environ()
	}
	cmd.Env = append(WithoutLauncherEnv(cmd.Env), FDEnv+"="+strconv.Itoa(2+len(cmd.ExtraFiles)))
	return &Handoff{conn: c.(*net.UnixConn), child: child}, nil
}

// SendEnv gives the started launcher the environment the command gets, for a launcher started
// before it was known (the command otherwise gets the launcher's own). Call it before Listener.
func (h *Handoff) SendEnv(env []string) error {
	h.dropChild()
	b := encodeEnv(env)
	for len(b) > 0 {
		n := min(len(b), envChunk)
		if _, _, err := h.conn.WriteMsgUnix(append([]byte{msgEnv}, b[:n]...), nil, nil); err != nil {
			if errors.Is(err, unix.EPIPE) || errors.Is(err, unix.ECONNRESET) {
				return ErrLauncherExited
			}
			return fmt.Errorf("launcher: sending the environment: %w", err)
		}
		b = b[n:]
	}
	return nil
}

// Listener sends the filter to the started launcher and returns the seccomp listener it
// installed. waitKillable asks for SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV (use it when
// layer.Probe found it). It returns ErrLauncherExited when the launcher ended first. The
// launcher waits after this until Release: start serving the listener, then Release.
func (h *Handoff) Listener(ctx context.Context, f *seccomp.Filter, waitKillable bool) (*os.File, error) {
	h.dropChild()
	if d, ok := ctx.Deadline(); ok {
		h.conn.SetDeadline(d)
	}
	stop := context.AfterFunc(ctx, func() { h.conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	defer h.conn.SetDeadline(time.Time{})

	if _, _, err := h.conn.WriteMsgUnix(encodeSetup(setup{program: f.Program, waitKillable: waitKillable}), nil, nil); err != nil {
		if errors.Is(err, unix.EPIPE) || errors.Is(err, unix.ECONNRESET) {
			return nil, ErrLauncherExited
		}
		return nil, h.ctxErr(ctx, fmt.Errorf("launcher: sending the filter: %w", err))
	}
	buf := make([]byte, 4096)
	oob := make([]byte, unix.CmsgSpace(4))
	n, oobn, _, _, err := h.conn.ReadMsgUnix(buf, oob)
	if err != nil && !errors.Is(err, io.EOF) {
		if errors.Is(err, unix.ECONNRESET) {
			return nil, ErrLauncherExited
		}
		return nil, h.ctxErr(ctx, fmt.Errorf("launcher: waiting for the listener: %w", err))
	}
	if n == 0 {
		return nil, ErrLauncherExited
	}
	switch buf[0] {
	case msgFailed:
		return nil, fmt.Errorf("launcher: installing the seccomp filter: %s", buf[1:n])
	case msgListener:
	default:
		return nil, fmt.Errorf("launcher: unexpected message %q", buf[:n])
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		return nil, fmt.Errorf("launcher: the listener message carries no fd")
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) != 1 {
		for _, fd := range fds {
			unix.Close(fd)
		}
		return nil, fmt.Errorf("launcher: the listener message carries %d fds", len(fds))
	}
	unix.CloseOnExec(fds[0])
	return os.NewFile(uintptr(fds[0]), "seccomp-listener"), nil
}

// dropChild closes our copy of the started launcher's end: it would keep the socket open
// after the launcher died, and a write would wait for a reader that is gone.
func (h *Handoff) dropChild() {
	if h.child != nil {
		h.child.Close()
		h.child = nil
	}
}

func (h *Handoff) ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("%w (%w)", err, ctx.Err())
	}
	return err
}

// Release tells the launcher that the supervisor serves: it execs the command now.
func (h *Handoff) Release() error {
	defer h.Close()
	if _, err := h.conn.Write([]byte{msgGo}); err != nil {
		return fmt.Errorf("launcher: releasing the command: %w", err)
	}
	return nil
}

// Close drops the socket; a launcher still waiting then exits 3 without running the command.
func (h *Handoff) Close() error {
	if h.child != nil {
		h.child.Close()
		h.child = nil
	}
	return h.conn.Close()
}
