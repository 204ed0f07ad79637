package supervisor_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kwarp-dev/kwarp/internal/syncbuf"
	"github.com/kwarp-dev/kwarp/layer"
	"github.com/kwarp-dev/kwarp/layer/launcher"
	"github.com/kwarp-dev/kwarp/layer/seccomp"
	"github.com/kwarp-dev/kwarp/layer/supervisor"
	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"
)

// The test binary doubles as the launcher (the role kwarp's re-executed self plays) and as a
// benchmark helper, chosen by these variables.
const (
	roleLaunch = "KWARP_TEST_LAUNCH" // run launcher.Run with the arguments after "--"
	roleHelper = "KWARP_TEST_HELPER" // run a helper loop (benchmarks)
)

var buildDir string

func TestMain(m *testing.M) {
	if os.Getenv(roleLaunch) != "" {
		sock, err := launcher.FromEnv()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(launcher.ExitSetup)
		}
		var env []string
		for _, kv := range launcher.WithoutLauncherEnv(os.Environ()) {
			if !strings.HasPrefix(kv, roleLaunch+"=") {
				env = append(env, kv)
			}
		}
		launcher.Run(sock, os.Args[2:], env) // os.Args[1] is "--"
	}
	if h := os.Getenv(roleHelper); h != "" {
		os.Exit(helper(h, os.Args[1:]))
	}
	dir, err := os.MkdirTemp("", "kwarp-layer-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	buildDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// helper runs inside the launched process for the benchmarks: "openloop PATH N" opens and
// closes PATH N times with raw syscalls and prints the elapsed nanoseconds; "connectloop"
// does the same with TCP connections, "acceptloop" with connections to its own listener.
func helper(name string, args []string) int {
	switch name {
	case "openloop":
		n, _ := strconv.Atoi(args[1])
		start := time.Now()
		for range n {
			fd, err := syscall.Open(args[0], syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
			if err != nil {
				fmt.Fprintln(os.Stderr, "open:", err)
				return 1
			}
			syscall.Close(fd)
		}
		fmt.Println(time.Since(start).Nanoseconds())
		return 0
	case "connectloop":
		// "connectloop IP PORT N": a blocking TCP connect to a local listener, then close
		ip, port, n := net.ParseIP(args[0]).To4(), 0, 0
		port, _ = strconv.Atoi(args[1])
		n, _ = strconv.Atoi(args[2])
		sa := &syscall.SockaddrInet4{Port: port}
		copy(sa.Addr[:], ip)
		start := time.Now()
		for range n {
			fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
			if err != nil {
				fmt.Fprintln(os.Stderr, "socket:", err)
				return 1
			}
			if err := syscall.Connect(fd, sa); err != nil {
				fmt.Fprintln(os.Stderr, "connect:", err)
				return 1
			}
			syscall.Close(fd)
		}
		fmt.Println(time.Since(start).Nanoseconds())
		return 0
	case "acceptloop":
		// "acceptloop N": a TCP connection to a listener of this process from 127.0.0.2 (a
		// delivery, to the test's IncomingHandler), accepted with accept4 and an address
		// buffer, checked to be a new socket, then both ends closed; the time is accept4's
		n, _ := strconv.Atoi(args[0])
		lfd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
		if err != nil {
			fmt.Fprintln(os.Stderr, "socket:", err)
			return 1
		}
		if err := syscall.Bind(lfd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
			fmt.Fprintln(os.Stderr, "bind:", err)
			return 1
		}
		if err := syscall.Listen(lfd, 128); err != nil {
			fmt.Fprintln(os.Stderr, "listen:", err)
			return 1
		}
		sa, _ := syscall.Getsockname(lfd)
		from := &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 2}}
		var took time.Duration // in accept4 only: a loopback connect now and then waits 1 s for a SYN retransmission
		for range n {
			c, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
			if err == nil {
				err = syscall.Bind(c, from)
			}
			if err == nil {
				err = syscall.Connect(c, sa)
			}
			if err != nil {
				fmt.Fprintln(os.Stderr, "client:", err)
				return 1
			}
			start := time.Now()
			a, _, err := syscall.Accept4(lfd, syscall.SOCK_CLOEXEC)
			took += time.Since(start)
			if err != nil {
				fmt.Fprintln(os.Stderr, "accept4:", err)
				return 1
			}
			var st syscall.Stat_t
			if syscall.Fstat(a, &st) != nil || st.Mode&syscall.S_IFMT != syscall.S_IFSOCK || a <= 2 {
				fmt.Fprintln(os.Stderr, "accept4 returned", a, "which is not a new socket")
				return 1
			}
			// a reset, not a FIN: no TIME_WAIT left behind to run out of ports
			syscall.SetsockoptLinger(c, syscall.SOL_SOCKET, syscall.SO_LINGER, &syscall.Linger{Onoff: 1})
			syscall.Close(c)
			syscall.Close(a)
		}
		fmt.Println(took.Nanoseconds())
		return 0
	}
	fmt.Fprintln(os.Stderr, "unknown helper", name)
	return 2
}

// requireLayer skips a test that needs the real kernel features.
func requireLayer(tb testing.TB) layer.Features {
	tb.Helper()
	if os.Geteuid() != 0 && os.Getenv("KWARP_TEST_UNPRIVILEGED") == "" {
		tb.Skip("supervisor tests need root (set KWARP_TEST_UNPRIVILEGED=1 to try without: no_new_privs and a same-uid child are enough where Yama allows process_vm_readv on children)")
	}
	f := layer.Probe()
	if err := f.Check(); err != nil {
		tb.Skipf("seccomp user notification unavailable: %v", err)
	}
	return f
}

var builds sync.Map // name → *buildResult

type buildResult struct {
	once sync.Once
	path string
	err  error
}

// build compiles a test program once per test binary.
func build(tb testing.TB, name string, do func(out string) *exec.Cmd) string {
	tb.Helper()
	v, _ := builds.LoadOrStore(name, &buildResult{})
	b := v.(*buildResult)
	b.once.Do(func() {
		b.path = filepath.Join(buildDir, name)
		cmd := do(b.path)
		if out, err := cmd.CombinedOutput(); err != nil {
			b.err = fmt.Errorf("building %s: %v\n%s", name, err, out)
		}
	})
	if b.err != nil {
		tb.Fatal(b.err)
	}
	return b.path
}

// goProbe is a static Go program (CGO_ENABLED=0): no libc, raw syscalls from the Go runtime.
func goProbe(tb testing.TB) string {
	return build(tb, "goprobe", func(out string) *exec.Cmd {
		cmd := exec.Command("go", "build", "-o", out, "./testdata/goprobe")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=-buildvcs=false")
		return cmd
	})
}

// cProbe is a C program linked dynamically against glibc.
func cProbe(tb testing.TB) string {
	if _, err := exec.LookPath("gcc"); err != nil {
		tb.Skip("gcc not found: the glibc test program cannot be built")
	}
	return build(tb, "cprobe", func(out string) *exec.Cmd {
		return exec.Command("gcc", "-O2", "-Wall", "-o", out, "testdata/cprobe.c")
	})
}

// result is what a launched command did.
type result struct {
	stdout, stderr string
	state          *os.ProcessState
	serveErr       error
	stats          supervisor.Stats
	elapsed        time.Duration
	exited         time.Time // when Wait returned
}

func (r result) code() int { return r.state.ExitCode() }

// runOpts shapes one launch.
type runOpts struct {
	trap []string         // default: seccomp.FileSyscalls
	net  layer.NetHandler // when set, seccomp.NetRules are trapped too and served by it
	// incoming, when set, has seccomp.IncomingRules trapped too and served by it
	incoming layer.IncomingHandler
	onExec   func(pid int, path string, argv, envp []string)
	stdin    io.Reader
	env      []string // added to the command's environment
	// sendEnv, when set, is sent to the started launcher as the command's whole environment
	// (as kwarp exec does with a launcher it started before the environment was known)
	sendEnv []string
	quiet   bool // log warnings only (benchmarks: a debug line per call would be measured too)
	// during runs while the command runs, with a way to stop the supervisor early.
	during func(cmd *exec.Cmd, stopSupervisor func() error)
}

// runUnder launches argv through the test launcher with h serving its trapped calls, as
// kwarp exec will: Prepare, Start, Listener, Serve, Release, Wait.
func runUnder(tb testing.TB, h layer.Handler, argv []string, o runOpts) result {
	tb.Helper()
	feat := requireLayer(tb)
	trap := o.trap
	if trap == nil {
		trap = seccomp.FileSyscalls
	}
	var rules []seccomp.Rule
	if o.net != nil {
		rules = append(rules, seccomp.NetRules...)
	}
	if o.incoming != nil {
		rules = append(rules, seccomp.IncomingRules...)
	}
	filter, err := seccomp.NewFilter(trap, rules...)
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	var stdout, stderr syncbuf.Buffer
	cmd := exec.Command(os.Args[0], append([]string{"--"}, argv...)...)
	cmd.Env = append(append(os.Environ(), roleLaunch+"=1"), o.env...)
	cmd.Stdout, cmd.Stderr, cmd.Stdin = &stdout, &stderr, o.stdin
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	ho, err := launcher.Prepare(cmd)
	if err != nil {
		tb.Fatal(err)
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	// Whatever happens, the tree dies with the test.
	defer syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)

	if o.sendEnv != nil {
		if err := ho.SendEnv(o.sendEnv); err != nil {
			tb.Fatal(err)
		}
	}
	lis, err := ho.Listener(ctx, filter, feat.WaitKillableRecv)
	if errors.Is(err, launcher.ErrLauncherExited) {
		ho.Close()
		cmd.Wait()
		return result{stdout: stdout.String(), stderr: stderr.String(), state: cmd.ProcessState, elapsed: time.Since(start)}
	}
	if err != nil {
		ho.Close()
		cmd.Wait()
		tb.Fatalf("listener: %v (stderr: %s)", err, stderr.String())
	}
	level := zerolog.DebugLevel
	if o.quiet {
		level = zerolog.WarnLevel
	}
	sup := supervisor.New(lis, h, zerolog.New(zerolog.NewTestWriter(tb)).Level(level))
	sup.OnExec = o.onExec
	sup.Net = o.net
	sup.Incoming = o.incoming
	supCtx, stopSup := context.WithCancel(ctx)
	defer stopSup()
	served := make(chan error, 1)
	go func() { served <- sup.Serve(supCtx) }()
	if err := ho.Release(); err != nil {
		tb.Fatal(err)
	}
	stopped := false
	var serveErr error
	if o.during != nil {
		o.during(cmd, func() error {
			stopSup()
			stopped = true
			serveErr = <-served
			return serveErr
		})
	}
	var exited time.Time
	waitErr := make(chan error, 1)
	go func() { waitErr <- cmd.Wait() }()
	select {
	case <-waitErr:
		exited = time.Now()
	case <-ctx.Done():
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-waitErr
		tb.Fatalf("%v did not finish in time; stdout: %s stderr: %s", argv, stdout.String(), stderr.String())
	}
	elapsed := time.Since(start)
	if !stopped {
		// The command was reaped, so no task carries the filter: Serve sees POLLHUP.
		select {
		case serveErr = <-served:
		case <-time.After(10 * time.Second):
			tb.Fatal("Serve did not return after the process tree exited")
		}
	}
	return result{
		stdout: stdout.String(), stderr: stderr.String(), state: cmd.ProcessState,
		serveErr: serveErr, stats: sup.Stats(), elapsed: elapsed, exited: exited,
	}
}

// lines maps each output line "op:arg result" of a probe program to its result.
func lines(out string) map[string]string {
	m := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if k, v, ok := strings.Cut(l, " "); ok {
			m[k] = v
		}
	}
	return m
}

// localFixture is a local file the fake never serves, with its content.
func localFixture(tb testing.TB) (string, string) {
	b, err := os.ReadFile("/etc/hostname")
	if err != nil {
		tb.Skip("no /etc/hostname on this machine")
	}
	return "/etc/hostname", string(b)
}

func errnoText(e unix.Errno) string { return "error: " + e.Error() }

// procState is the state letter of /proc/<pid>/stat (S, D, Z, …), "" when the process is gone.
func procState(pid int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return ""
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return ""
	}
	return string(b[i+2])
}

var launcherPrepare = launcher.Prepare
