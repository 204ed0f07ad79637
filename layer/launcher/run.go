package launcher

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"unsafe"

	"github.com/kwarp-dev/kwarp/layer/seccomp"
	"golang.org/x/sys/unix"
)

// Run is the launcher: the re-executed kwarp calls it with its end of the socket (see
// FromEnv), the command and the environment the command gets. It looks the command up in
// env's PATH, installs the filter the parent sends, hands the listener over, waits for the
// parent's ack and execs. It never returns: on failure it prints "kwarp: …" on stderr and
// exits 127 (not found), 126 (not executable) or 3 (no filter).
func Run(sock *os.File, argv []string, env []string) {
	code, err := run(sock, argv, env)
	if !errors.Is(err, errAbandoned) {
		fmt.Fprintf(os.Stderr, "kwarp: %v\n", err)
	}
	os.Exit(code)
}

// errAbandoned is a parent that closed the socket before the setup: its session failed before
// the command was to run, and it has said why.
var errAbandoned = errors.New("launcher: the parent closed the socket before the setup")

// FromEnv returns the socket named by FDEnv, the launcher's end of the handshake.
func FromEnv() (*os.File, error) {
	v := os.Getenv(FDEnv)
	fd, err := strconv.Atoi(v)
	if err != nil || fd < 3 {
		return nil, fmt.Errorf("launcher: %s=%q does not name an inherited socket", FDEnv, v)
	}
	return os.NewFile(uintptr(fd), "kwarp-launcher"), nil
}

// WithoutLauncherEnv returns env without FDEnv, so the command does not inherit it.
func WithoutLauncherEnv(env []string) []string {
	out := make([]string, 0, len(env))
	for _, kv := range env {
		if !strings.HasPrefix(kv, FDEnv+"=") {
			out = append(out, kv)
		}
	}
	return out
}

func run(sock *os.File, argv []string, env []string) (int, error) {
	if len(argv) == 0 {
		return ExitSetup, errors.New("launcher: no command")
	}
	raw, err := sock.SyscallConn()
	if err != nil {
		return ExitSetup, fmt.Errorf("launcher: socket: %w", err)
	}
	var fd int
	raw.Control(func(f uintptr) { fd = int(f) })
	// The command must not inherit the socket.
	unix.CloseOnExec(fd)

	// The command's environment, when the parent sends it (it started the launcher before the
	// environment was known, so that this process's start overlaps the session's), comes in
	// envChunk messages before the setup.
	var sent []byte
	envSent := false
	buf := make([]byte, maxSetup)
	var n int
	for {
		n, _, _, _, err = unix.Recvmsg(fd, buf, nil, 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return ExitSetup, fmt.Errorf("launcher: reading the setup: %w", err)
		}
		if n == 0 {
			return ExitSetup, errAbandoned
		}
		if buf[0] != msgEnv {
			break
		}
		sent, envSent = append(sent, buf[1:n]...), true
	}
	st, err := decodeSetup(buf[:n])
	if err != nil {
		return ExitSetup, err
	}
	if envSent {
		env = decodeEnv(sent)
	}
	// The lookup runs before the filter: its stats are the launcher's business, not the
	// session's. A missing command ends here, with the socket closed: the parent sees the
	// launcher exit and takes its status.
	path, err := lookPath(argv[0], envValue(env, "PATH"))
	if err != nil {
		var le *lookupError
		errors.As(err, &le)
		return le.code, err
	}

	// From here this goroutine owns its OS thread for good: the filter is installed on this
	// thread only, and the exec must happen on it. Nothing else runs on it in between but a
	// channel wait.
	runtime.LockOSThread()
	listener, err := install(st)
	if err != nil {
		msg := append([]byte{msgFailed}, err.Error()...)
		_ = unix.Sendmsg(fd, msg, nil, nil, 0)
		return ExitSetup, err
	}
	// The handover runs on another goroutine, hence another thread, one without the filter.
	handed := make(chan error, 1)
	go func() { handed <- handOver(fd, listener) }()
	err = <-handed
	// The socket's *os.File must outlive its raw fd's use: its finalizer would close it.
	runtime.KeepAlive(sock)
	if err != nil {
		return ExitSetup, err
	}
	// The command is started from this thread (a fork inherits the forking thread's filter)
	// rather than exec'd in place: the launcher stays its parent, so kwarp, which may ptrace
	// the command for a moment (see supervisor.restartCall), is never also the parent whose
	// wait would take the ptrace stop for an exit status.
	pid, err := syscall.ForkExec(path, argv, &syscall.ProcAttr{
		Env:   env,
		Files: []uintptr{0, 1, 2},
		Sys:   &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL},
	})
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return ExitNotFound, fmt.Errorf("%s: %s", argv[0], errText(err))
		}
		return ExitNotExecutable, fmt.Errorf("%s: %s", argv[0], errText(err))
	}
	mirror(pid)
	return ExitSetup, errors.New("launcher: unreachable")
}

// mirror waits for the command and ends the launcher the same way: the same exit code, or
// death by the same signal, so kwarp reports the command's status as a shell would. Signals
// meant for the command reach it: the terminal's (SIGINT, SIGQUIT) go to the whole
// foreground group already, so the launcher ignores them; SIGTERM and SIGHUP sent to the
// launcher are passed on.
func mirror(pid int) {
	signal.Ignore(syscall.SIGINT, syscall.SIGQUIT, syscall.SIGTSTP)
	fwd := make(chan os.Signal, 4)
	signal.Notify(fwd, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGUSR1, syscall.SIGUSR2)
	go func() {
		for s := range fwd {
			_ = syscall.Kill(pid, s.(syscall.Signal))
		}
	}()
	var ws syscall.WaitStatus
	for {
		_, err := syscall.Wait4(pid, &ws, 0, nil)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			os.Exit(ExitSetup)
		}
		if ws.Exited() || ws.Signaled() {
			break
		}
	}
	if ws.Signaled() {
		dieBy(ws.Signal())
	}
	os.Exit(ws.ExitStatus())
}

// dieBy ends the launcher by sig with the kernel's default action (not Go's handler, which
// turns SIGSYS or SIGSEGV into an exit code), so its parent sees the same death.
func dieBy(sig syscall.Signal) {
	var act [4]uint64 // struct sigaction: handler SIG_DFL (0), flags, restorer, mask
	_, _, _ = syscall.RawSyscall6(syscall.SYS_RT_SIGACTION, uintptr(sig), uintptr(unsafe.Pointer(&act[0])), 0, 8, 0, 0)
	var set [1]uint64
	set[0] = 1 << (uint(sig) - 1)
	_, _, _ = syscall.RawSyscall6(syscall.SYS_RT_SIGPROCMASK, 1 /* SIG_UNBLOCK */, uintptr(unsafe.Pointer(&set[0])), 0, 8, 0, 0)
	_ = syscall.Kill(syscall.Getpid(), sig)
	_ = syscall.Tgkill(syscall.Getpid(), syscall.Gettid(), sig)
	// a signal whose default is not to terminate: report it as a shell would
	os.Exit(128 + int(sig))
}

func install(st setup) (int, error) {
	if err := seccomp.SetNoNewPrivs(); err != nil {
		return -1, err
	}
	f := &seccomp.Filter{Program: st.program}
	return seccomp.Install(f, st.waitKillable)
}

// handOver sends the listener to the parent and waits for its go-ahead.
func handOver(sock, listener int) error {
	defer unix.Close(listener)
	if err := unix.Sendmsg(sock, []byte{msgListener}, unix.UnixRights(listener), nil, 0); err != nil {
		return fmt.Errorf("launcher: sending the seccomp listener: %w", err)
	}
	var ack [1]byte
	for {
		n, _, _, _, err := unix.Recvmsg(sock, ack[:], nil, 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("launcher: waiting for the supervisor: %w", err)
		}
		if n != 1 || ack[0] != msgGo {
			return errors.New("launcher: the parent went away before its supervisor was ready")
		}
		return unix.Close(sock)
	}
}

// envValue is the value of name in env, the last one winning as in getenv.
func envValue(env []string, name string) string {
	v := ""
	for _, kv := range env {
		if strings.HasPrefix(kv, name+"=") {
			v = kv[len(name)+1:]
		}
	}
	return v
}
