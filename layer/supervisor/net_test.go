package supervisor_test

import (
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// netProbe is a static Go program (CGO_ENABLED=0) making socket calls.
func netProbe(tb testing.TB) string {
	return build(tb, "netprobe", func(out string) *exec.Cmd {
		cmd := exec.Command("go", "build", "-o", out, "./testdata/netprobe")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=-buildvcs=false")
		return cmd
	})
}

// cNetProbe is a C program (glibc) for what Go does not do: sendmmsg, recvmmsg, MSG_PEEK,
// MSG_TRUNC, short address buffers, SO_RCVTIMEO, Fast Open.
func cNetProbe(tb testing.TB) string {
	if _, err := exec.LookPath("gcc"); err != nil {
		tb.Skip("gcc not found: the glibc test program cannot be built")
	}
	return build(tb, "cnetprobe", func(out string) *exec.Cmd {
		return exec.Command("gcc", "-O2", "-Wall", "-o", out, "testdata/cnetprobe.c")
	})
}

func TestNetGoProgram(t *testing.T) {
	requireLayer(t)
	prog := netProbe(t)
	fn := newFakeNet(t)
	local := localServer(t)

	r := runUnder(t, newFakeFS(t.TempDir()), []string{prog,
		"dial:10.255.0.1:80",
		"dialmptcp:10.255.0.1:80",
		"dial:10.255.0.9:80",
		"dial:10.255.0.13:80",
		"dialblock:10.255.0.2:8080",
		"dialblock:10.255.0.9:80",
		"dial:[fd00:ff::1]:443",
		"dial:" + local.String(),
		"udp:10.255.0.7:53",
		"udp:[fd00:ff::7]:53",
		"udpfrom:10.255.0.8:53",
		"udpfrom4:10.255.0.8:53",
		"udpfrom:[fd00:ff::8]:5353",
		"sendmsg:10.255.0.10:123",
		"sendmsg:[fd00:ff::10]:123",
	}, runOpts{net: fn})
	if r.code() != 0 {
		t.Fatalf("exit %v; stderr: %s", r.state, r.stderr)
	}
	expect(t, lines(r.stdout), map[string]string{
		"dial:10.255.0.1:80":        `remote=10.255.0.1:80 localip=10.1.0.9 got="hello 10.255.0.1:80"`,
		"dialmptcp:10.255.0.1:80":   `remote=10.255.0.1:80 localip=10.1.0.9 got="hello 10.255.0.1:80"`,
		"dial:10.255.0.9:80":        errnoText(unix.ECONNREFUSED),
		"dial:10.255.0.13:80":       errnoText(unix.ECONNREFUSED), // not an errno: ECONNREFUSED, logged
		"dialblock:10.255.0.2:8080": `peer=10.255.0.2:8080 got="hello 10.255.0.2:8080"`,
		"dialblock:10.255.0.9:80":   errnoText(unix.ECONNREFUSED),
		"dial:[fd00:ff::1]:443":     `remote=[fd00:ff::1]:443 localip=fd00:1::9 got="hello [fd00:ff::1]:443"`,
		"dial:" + local.String():    `remote=` + local.String() + ` localip=127.0.0.1 got="local hello"`,
		"udp:10.255.0.7:53":         `remote=10.255.0.7:53 got="echo 10.255.0.7:53 ping" from=10.255.0.7:53 got="echo 10.255.0.7:53 again"`,
		"udp:[fd00:ff::7]:53":       `remote=[fd00:ff::7]:53 got="echo [fd00:ff::7]:53 ping" from=[fd00:ff::7]:53 got="echo [fd00:ff::7]:53 again"`,
		"udpfrom:10.255.0.8:53":     `from=[::ffff:10.255.0.8]:53 got="echo 10.255.0.8:53 hi"`, // a dual-stack socket sees IPv4 mapped
		"udpfrom4:10.255.0.8:53":    `from=10.255.0.8:53 got="echo 10.255.0.8:53 hi"`,
		"udpfrom:[fd00:ff::8]:5353": `from=[fd00:ff::8]:5353 got="echo [fd00:ff::8]:5353 hi"`,
		"sendmsg:10.255.0.10:123":   `from=[::ffff:10.255.0.10]:123 got="echo 10.255.0.10:123 msg" oobn=0 flags=0`,
		"sendmsg:[fd00:ff::10]:123": `from=[fd00:ff::10]:123 got="echo [fd00:ff::10]:123 msg" oobn=0 flags=0`,
	}, r.stdout)
	// Connect: the seven remote TCP dials and the two connected UDP sockets
	if n := fn.connects.Load(); n != 9 {
		t.Errorf("Connect called %d times, want 9 (never for the local server)", n)
	}
	st := r.stats
	if st.NetRemote == 0 || st.NetLocal == 0 || st.NetRecv == 0 || st.NetNamed == 0 || st.NetFailed < 3 {
		t.Errorf("stats do not add up: %+v", st)
	}
	t.Logf("stats: %+v", st)
}

// TestNetSignalsDuringConnect: a Go program whose connect waits 300 ms for the remote side
// while it gets SIGURG and SIGALRM every 500 µs. With WAIT_KILLABLE_RECV the call is not
// restarted: Connect runs once and the dial completes.
func TestNetSignalsDuringConnect(t *testing.T) {
	feat := requireLayer(t)
	if !feat.WaitKillableRecv {
		t.Skip("kernel without WAIT_KILLABLE_RECV: signals restart a slow call")
	}
	prog := netProbe(t)
	fn := newFakeNet(t)
	r := runUnder(t, newFakeFS(t.TempDir()), []string{prog, "dialsig:10.255.0.3:80"}, runOpts{net: fn, quiet: true})
	if r.code() != 0 {
		t.Fatalf("exit %v; stderr: %s", r.state, r.stderr)
	}
	expect(t, lines(r.stdout), map[string]string{
		"dialsig:10.255.0.3:80": `signals>100=true remote=10.255.0.3:80 localip=10.1.0.9 got="hello 10.255.0.3:80"`,
	}, r.stdout)
	if n := fn.connects.Load(); n != 1 {
		t.Errorf("Connect called %d times, want 1", n)
	}
}

func TestNetGlibcProgram(t *testing.T) {
	feat := requireLayer(t)
	prog := cNetProbe(t)
	fn := newFakeNet(t)
	args := []string{prog,
		"mmsg:10.255.0.20:53",
		"peek:10.255.0.21:53",
		"shortname:10.255.0.1:80",
		"nonblock:10.255.0.22:53",
		"rcvtimeo:10.255.0.99:53",
		"fastopen:10.255.0.1:80",
		"connectudp:10.255.0.23:53",
		"relayfail:10.255.0.13:53",
		"unix",
	}
	want := map[string]string{
		"mmsg:10.255.0.20:53":       "sent=3 len=1,2,3 got=3 from=10.255.0.20:53,10.255.0.20:53,10.255.0.20:53 data=echo 10.255.0.20:53 a|echo 10.255.0.20:53 bb|echo 10.255.0.20:53 ccc",
		"peek:10.255.0.21:53":       "peek=28 peekfrom=10.255.0.21:53 read=4 flags_trunc=1 namelen=16 partial=10.255 untouched=1 data=echo",
		"shortname:10.255.0.1:80":   "peerlen=16 peer4=02000050 untouched=1 sockname=10.1.0.9",
		"nonblock:10.255.0.22:53":   "got=echo 10.255.0.22:53 nb then=EAGAIN",
		"rcvtimeo:10.255.0.99:53":   "error: " + unix.EAGAIN.Error() + " waited>=150ms=1",
		"fastopen:10.255.0.1:80":    "sent=5 got=hello 10.255.0.1:80|tfo!|",
		"connectudp:10.255.0.23:53": "peer=10.255.0.23:53 got=echo 10.255.0.23:53 cu from=10.255.0.23:53",
		"relayfail:10.255.0.13:53":  errnoText(unix.ENETUNREACH),
		"unix":                      "ok",
	}
	if feat.WaitKillableRecv { // the livelock guard: without it signals restart the slow connect
		args = append(args, "alarmconnect:10.255.0.3:80")
		want["alarmconnect:10.255.0.3:80"] = "alarms>0=1 got=hello 10.255.0.3:80"
	}
	r := runUnder(t, newFakeFS(t.TempDir()), args, runOpts{net: fn})
	if r.code() != 0 {
		t.Fatalf("exit %v; stderr: %s", r.state, r.stderr)
	}
	expect(t, lines(r.stdout), want, r.stdout)
	// shortname, fastopen, connectudp, and alarmconnect once however often it restarted
	wantConnects := int64(3)
	if feat.WaitKillableRecv {
		wantConnects++
	}
	if n := fn.connects.Load(); n != wantConnects {
		t.Errorf("Connect called %d times, want %d", n, wantConnects)
	}
	t.Logf("stats: %+v", r.stats)
}

func TestNetPython(t *testing.T) {
	requireLayer(t)
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 not found")
	}
	out, err := exec.Command(py, "-c", "import sys; print(sys.executable)").Output()
	if err != nil {
		t.Skipf("python3 does not run: %v", err)
	}
	py = strings.TrimSpace(string(out))
	script := `import socket
s = socket.create_connection(("10.255.0.1", 80), timeout=10)
print("tcp", s.getpeername(), s.getsockname()[0], s.recv(100))
s.close()
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.settimeout(10)
u.sendto(b"py", ("10.255.0.30", 53))
print("udp", *reversed(u.recvfrom(100)))
u.sendmsg([b"m1", b"-m2"], [], 0, ("10.255.0.30", 53))
data, anc, flags, src = u.recvmsg(100)
print("msg", src, data, anc, flags)
try:
    socket.create_connection(("10.255.0.9", 80), timeout=10)
except ConnectionRefusedError as e:
    print("refused", e.errno)
`
	fn := newFakeNet(t)
	r := runUnder(t, newFakeFS(t.TempDir()), []string{py, "-S", "-c", script}, runOpts{net: fn})
	if r.code() != 0 {
		t.Fatalf("exit %v; stderr: %s", r.state, r.stderr)
	}
	want := "tcp ('10.255.0.1', 80) 10.1.0.9 b'hello 10.255.0.1:80\\n'\n" +
		"udp ('10.255.0.30', 53) b'echo 10.255.0.30:53 py'\n" +
		"msg ('10.255.0.30', 53) b'echo 10.255.0.30:53 m1-m2' [] 0\n" +
		"refused 111\n"
	if r.stdout != want {
		t.Errorf("stdout:\n%s\nwant:\n%s\nstderr: %s", r.stdout, want, r.stderr)
	}
	t.Logf("stats: %+v", r.stats)
}

// TestNetNotTrappedWithoutHandler: with no NetHandler the filter traps no socket call, and
// the supervisor passes any it is handed.
func TestNetNotTrappedWithoutHandler(t *testing.T) {
	requireLayer(t)
	prog := netProbe(t)
	local := localServer(t)
	r := runUnder(t, newFakeFS(t.TempDir()), []string{prog, "dial:" + local.String()}, runOpts{})
	if r.code() != 0 {
		t.Fatalf("exit %v; stderr: %s", r.state, r.stderr)
	}
	expect(t, lines(r.stdout), map[string]string{
		"dial:" + local.String(): `remote=` + local.String() + ` localip=127.0.0.1 got="local hello"`,
	}, r.stdout)
	if st := r.stats; st.NetLocal+st.NetRemote+st.NetPassed != 0 {
		t.Errorf("socket calls trapped without a NetHandler: %+v", st)
	}
}

// waitReady waits until the probe said "ready" n times on stderr, then a little longer, so
// that the call it announced is waiting in the supervisor.
func waitReady(t *testing.T, cmd *exec.Cmd, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for strings.Count(cmd.Stderr.(interface{ String() string }).String(), "ready") < n {
		if time.Now().After(deadline) {
			t.Fatalf("the probe never got ready (%d)", n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
}

// TestNetSignalDuringWait: a handled signal ends a receive or a connect that waits in the
// supervisor, as it ends them in the kernel (EINTR, or a restart with SA_RESTART), although
// WAIT_KILLABLE_RECV would hold the signal until the call is answered.
func TestNetSignalDuringWait(t *testing.T) {
	feat := requireLayer(t)
	if !feat.WaitKillableRecv {
		t.Skip("kernel without WAIT_KILLABLE_RECV: signals interrupt the wait by themselves")
	}
	prog := cNetProbe(t)
	fn := newFakeNet(t)
	start := time.Now()
	r := runUnder(t, newFakeFS(t.TempDir()), []string{prog, "sigrecv:10.255.0.99:53", "sigrecvrestart:10.255.0.99:53", "sigconnect:10.255.0.4:80"}, runOpts{
		net: fn,
		during: func(cmd *exec.Cmd, stop func() error) {
			for k := 1; k <= 3; k++ {
				waitReady(t, cmd, k)
				cmd.Process.Signal(syscall.SIGUSR1)
			}
		},
	})
	if r.code() != 0 {
		t.Fatalf("exit %v; stderr: %s", r.state, r.stderr)
	}
	expect(t, lines(r.stdout), map[string]string{
		"sigrecv:10.255.0.99:53":        "error: " + unix.EINTR.Error() + " handled=1",
		"sigrecvrestart:10.255.0.99:53": "got=self handled=1 from=127.0.0.1",
		"sigconnect:10.255.0.4:80":      "error: " + unix.EINTR.Error() + " handled=1 fast=1",
	}, r.stdout)
	if d := time.Since(start); d > 15*time.Second {
		t.Errorf("took %v: the slow Connect was waited for", d)
	}
}

// TestNetKillWhileReceiving: a process killed while its receive waits in the supervisor
// dies at once, and the supervisor's wait ends with it (Serve returns).
func TestNetKillWhileReceiving(t *testing.T) {
	requireLayer(t)
	prog := cNetProbe(t)
	r := runUnder(t, newFakeFS(t.TempDir()), []string{prog, "blockrecv:10.255.0.99:53"}, runOpts{
		net: newFakeNet(t),
		during: func(cmd *exec.Cmd, stop func() error) {
			waitReady(t, cmd, 1)
			cmd.Process.Kill()
		},
	})
	ws := r.state.Sys().(syscall.WaitStatus)
	if !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Errorf("status %v, want killed by SIGKILL", r.state)
	}
	if r.stats.NetRecv != 1 {
		t.Errorf("stats %+v: the receive was not served", r.stats)
	}
}
