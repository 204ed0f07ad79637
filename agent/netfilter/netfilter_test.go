package netfilter

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kwarp-dev/kwarp/agent/netns/netnstest"
	"golang.org/x/sys/unix"
)

var (
	app4   = podIP4 + ":8080"
	app6   = "[" + podIP6 + "]:8080"
	agent4 = podIP4 + ":18080"
)

// A redirect takes the port from clients outside the pod, over IPv4 and IPv6, and giving it
// back returns it to the app; the namespace's rules end as they began. Both backends.
// appAndAgent is a pod with the app on 8080 and the agent on 18080, its rules before any
// redirect, and a Redirector for backend b in it (closed when the test ends).
func appAndAgent(t *testing.T, b Backend) (*topo, *Redirector, string) {
	t.Helper()
	tp := newTopo(t)
	serve(t, tp.pod, ":8080", "app")
	serve(t, tp.pod, ":18080", "agent")
	before := snapshot(t, tp.pod)
	r, err := New(ctxT(t), runnerFor(t, tp.pod), NewID(), Options{Log: testLog(t), Backend: b})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return tp, r, before
}

func TestRedirectAndGiveBack(t *testing.T) {
	needNetfilter(t)
	for _, b := range backends(t) {
		t.Run(string(b), func(t *testing.T) {
			tp, r, before := appAndAgent(t, b)
			if r.Backend() != b {
				t.Fatalf("backend %s, want %s", r.Backend(), b)
			}
			if got := snapshot(t, tp.pod); got != before {
				t.Fatalf("New changed the rules:\n%s", got)
			}
			if got := tp.who(t, app4); got != "app" {
				t.Fatalf("before the redirect %s answered", got)
			}

			remove, err := r.Add(8080, 18080, "s1")
			if err != nil {
				t.Fatal(err)
			}
			for _, addr := range []string{app4, app6} {
				if got := tp.who(t, addr); got != "agent" {
					t.Errorf("redirected, %s is answered by %s", addr, got)
				}
			}
			// Other ports are untouched, and the agent's chain is jumped to first.
			if got := tp.who(t, agent4); got != "agent" {
				t.Errorf("port 18080 answered by %s", got)
			}
			rules := snapshot(t, tp.pod)
			wantJump := fmt.Sprintf("  -A PREROUTING -p tcp -m comment --comment kwarp:%s: -j %s\n", r.ID(), r.Chain())
			if !strings.Contains(rules, string(b)+" ipv4 *nat\n  :"+r.Chain()+"\n"+wantJump) {
				t.Errorf("the jump is not the first rule of PREROUTING:\n%s", rules)
			}
			if !strings.Contains(rules, "--comment kwarp:"+r.ID()+":s1 -j REDIRECT --to-ports 18080") {
				t.Errorf("no commented redirect:\n%s", rules)
			}

			if err := remove(); err != nil {
				t.Fatal(err)
			}
			if err := remove(); err != nil {
				t.Errorf("remove twice: %v", err)
			}
			for _, addr := range []string{app4, app6} {
				if got := tp.who(t, addr); got != "app" {
					t.Errorf("given back, %s is answered by %s", addr, got)
				}
			}
			if got := snapshot(t, tp.pod); got != before {
				t.Errorf("rules after the last redirect was removed:\n%s\nwant:\n%s", got, before)
			}

			// Sessions: removing one leaves the other's.
			if _, err := r.Add(8080, 18080, "s2"); err != nil {
				t.Fatal(err)
			}
			if _, err := r.Add(9090, 18080, "s3"); err != nil {
				t.Fatal(err)
			}
			if err := r.RemoveSession("s2"); err != nil {
				t.Fatal(err)
			}
			if got := tp.who(t, app4); got != "app" {
				t.Errorf("session s2 removed, 8080 answered by %s", got)
			}
			if s := snapshot(t, tp.pod); !strings.Contains(s, "kwarp:"+r.ID()+":s3") || strings.Contains(s, ":s2 ") {
				t.Errorf("after RemoveSession(s2):\n%s", s)
			}
			if err := r.Close(); err != nil {
				t.Fatal(err)
			}
			if got := snapshot(t, tp.pod); got != before {
				t.Errorf("rules after Close:\n%s\nwant:\n%s", got, before)
			}
			if _, err := r.Add(8080, 18080, "s4"); !errors.Is(err, ErrClosed) {
				t.Errorf("Add after Close: %v", err)
			}
		})
	}
}

// TestHoldKeepsTheChain: with a connection held, removing the last redirect leaves the chain
// (whose keeper rule keeps the namespace's connection tracking, so the connection's address
// translation goes on); the chain goes when the last hold is released.
func TestHoldKeepsTheChain(t *testing.T) {
	needNetfilter(t)
	for _, b := range backends(t) {
		t.Run(string(b), func(t *testing.T) {
			tp, r, before := appAndAgent(t, b)
			remove, err := r.Add(8080, 18080, "s1")
			if err != nil {
				t.Fatal(err)
			}
			if rules := snapshot(t, tp.pod); !strings.Contains(rules, "-m conntrack --ctstate INVALID -m comment --comment kwarp:"+r.ID()+": -j RETURN") {
				t.Errorf("no conntrack keeper in the chain:\n%s", rules)
			}
			release := r.Hold()
			release2 := r.Hold()
			if err := remove(); err != nil {
				t.Fatal(err)
			}
			if got := tp.who(t, app4); got != "app" {
				t.Errorf("redirect removed, 8080 answered by %s", got)
			}
			if s := snapshot(t, tp.pod); s == before || !strings.Contains(s, r.Chain()) || strings.Contains(s, "REDIRECT") {
				t.Errorf("held: want the chain without redirects:\n%s", s)
			}
			release()
			release() // twice: counts once
			if s := snapshot(t, tp.pod); !strings.Contains(s, r.Chain()) {
				t.Errorf("one hold left, the chain went:\n%s", s)
			}
			release2()
			if got := snapshot(t, tp.pod); got != before {
				t.Errorf("rules after the last hold:\n%s\nwant:\n%s", got, before)
			}
		})
	}
}

// meshRules is what istio-init installs, in short: every inbound TCP port to the proxy's 15006.
func meshRules(t *testing.T, pid int, b Backend) {
	multi := newXtables(b, DefaultBinDir, Here).multi
	netnstest.Run(t, pid, multi, "iptables", "-t", "nat", "-N", "ISTIO_INBOUND")
	netnstest.Run(t, pid, multi, "iptables", "-t", "nat", "-A", "PREROUTING", "-p", "tcp", "-j", "ISTIO_INBOUND")
	netnstest.Run(t, pid, multi, "iptables", "-t", "nat", "-A", "ISTIO_INBOUND", "-p", "tcp", "--dport", "8080", "-j", "REDIRECT", "--to-ports", "15006")
}

// With a mesh's redirect already in the namespace, New picks the mesh's backend and the steal
// still wins (our jump comes first); given back, the port is the mesh's again, its rules intact.
func TestStealAheadOfAMesh(t *testing.T) {
	needNetfilter(t)
	for _, b := range backends(t) {
		t.Run(string(b), func(t *testing.T) {
			tp := newTopo(t)
			serve(t, tp.pod, ":8080", "app")
			serve(t, tp.pod, ":15006", "mesh")
			serve(t, tp.pod, ":18080", "agent")
			meshRules(t, tp.pod, b)
			before := snapshot(t, tp.pod)
			if got := tp.who(t, app4); got != "mesh" {
				t.Fatalf("the mesh's redirect: %s answered", got)
			}
			r, err := New(ctxT(t), runnerFor(t, tp.pod), NewID(), Options{Log: testLog(t)})
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			if r.Backend() != b {
				t.Fatalf("the mesh's rules are in %s, New picked %s", b, r.Backend())
			}
			remove, err := r.Add(8080, 18080, "s")
			if err != nil {
				t.Fatal(err)
			}
			if got := tp.who(t, app4); got != "agent" {
				t.Errorf("stolen, 8080 answered by %s", got)
			}
			if err := remove(); err != nil {
				t.Fatal(err)
			}
			if got := tp.who(t, app4); got != "mesh" {
				t.Errorf("given back, 8080 answered by %s", got)
			}
			if err := r.Close(); err != nil {
				t.Fatal(err)
			}
			if got := snapshot(t, tp.pod); got != before {
				t.Errorf("rules after Close:\n%s\nwant the mesh's:\n%s", got, before)
			}
		})
	}
}

// A namespace with no rules gets nf_tables; New adds nothing and needs no guard.
func TestNoRulesMeansNFT(t *testing.T) {
	needNetfilter(t, NFT)
	pid := netnstest.Start(t)
	r, err := New(ctxT(t), runnerFor(t, pid), NewID(), Options{Log: testLog(t)})
	if err != nil {
		t.Fatal(err)
	}
	if r.Backend() != NFT {
		t.Errorf("backend %s, want nft", r.Backend())
	}
	if r.guard != nil {
		t.Error("New started a guard")
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if s := snapshot(t, pid); s != "" {
		t.Errorf("rules after New and Close:\n%s", s)
	}
}

// A connection established before the redirect leaves the app: the conntrack flush makes its
// next packet from the client go through the new redirect, to a listener that does not know
// it, which resets it; the client's next connection is stolen. Without the flush the old
// connection would stay with the app (checked too, so the test proves the flush does it).
func TestEstablishedConnectionsLeaveTheApp(t *testing.T) {
	needNetfilter(t, NFT)
	for _, flush := range []bool{true, false} {
		t.Run(fmt.Sprintf("flush=%v", flush), func(t *testing.T) {
			tp := newTopo(t)
			serve(t, tp.pod, ":8080", "app")
			serve(t, tp.pod, ":18080", "agent")
			serve(t, tp.client, ":8080", "elsewhere")
			// Any nat rule turns connection tracking on in the namespace, as a mesh's do; a
			// namespace without any would track nothing before the redirect.
			netnstest.Run(t, tp.pod, newXtables(NFT, DefaultBinDir, Here).multi, "iptables", "-t", "nat", "-A", "PREROUTING", "-p", "tcp", "--dport", "9999", "-j", "REDIRECT", "--to-ports", "9998")

			old, err := dial(tp.client, app4)
			if err != nil {
				t.Fatal(err)
			}
			defer old.Close()
			if s, err := ask(old); s != "app" || err != nil {
				t.Fatalf("before: %q %v", s, err)
			}
			// The pod's own connection to port 8080 elsewhere must not be touched.
			out, err := dial(tp.pod, clientIP4+":8080")
			if err != nil {
				t.Fatal(err)
			}
			defer out.Close()
			if s, err := ask(out); s != "elsewhere" || err != nil {
				t.Fatalf("outgoing: %q %v", s, err)
			}
			if n := countCt(t, tp.pod, 8080); n != 2 {
				t.Fatalf("%d conntrack entries on port 8080, want 2 (in and out)", n)
			}

			r, err := New(ctxT(t), runnerFor(t, tp.pod), NewID(), Options{Log: testLog(t), Backend: NFT})
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			r.skipFlush = !flush
			if _, err := r.Add(8080, 18080, "s"); err != nil {
				t.Fatal(err)
			}
			if n, want := countCt(t, tp.pod, 8080), map[bool]int{true: 1, false: 2}[flush]; n != want {
				t.Errorf("%d conntrack entries on port 8080 after Add, want %d", n, want)
			}
			start := time.Now()
			s, err := ask(old)
			t.Logf("the old connection after Add: %q %v (%v)", s, err, time.Since(start))
			if flush {
				if err == nil {
					t.Errorf("the old connection still answered by %s", s)
				} else if !errors.Is(err, syscall.ECONNRESET) && !errors.Is(err, io.EOF) {
					t.Errorf("the old connection failed with %v, want a reset", err)
				}
			} else if s != "app" {
				t.Errorf("without a flush the old connection was answered by %q (%v)", s, err)
			}
			if got := tp.who(t, app4); got != "agent" {
				t.Errorf("a new connection is answered by %s", got)
			}
			if s, err := ask(out); s != "elsewhere" || err != nil {
				t.Errorf("the outgoing connection after the flush: %q %v", s, err)
			}

			// Another session's redirect of the same port does not reset what is stolen.
			stolen, err := dial(tp.client, app4)
			if err != nil {
				t.Fatal(err)
			}
			defer stolen.Close()
			if s, err := ask(stolen); s != "agent" || err != nil {
				t.Fatalf("stolen: %q %v", s, err)
			}
			if _, err := r.Add(8080, 18081, "s2"); err != nil {
				t.Fatal(err)
			}
			if s, err := ask(stolen); s != "agent" || err != nil {
				t.Errorf("a stolen connection after a second redirect of its port: %q %v", s, err)
			}
		})
	}
}

// countCt counts the TCP conntrack entries to port in pid's namespace.
func countCt(t *testing.T, pid int, port uint16) int {
	t.Helper()
	n := 0
	err := netnstest.In(pid, func() error {
		fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_NETFILTER)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		return ctRequest(fd, 1, ipctnlMsgCtGet, unix.NLM_F_DUMP, unix.AF_UNSPEC, nil, func(family uint8, attrs []byte) {
			if e, ok := parseCtEntry(family, attrs); ok && e.proto == unix.IPPROTO_TCP && e.dport == port {
				n++
			}
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// The stand-in agent of TestGuard: a process that adds a redirect, says so, and waits to be
// killed.
const fakeAgentEnv = "KWARP_NETFILTER_FAKE_AGENT"

func fakeAgent() int {
	pid, _ := strconv.Atoi(os.Getenv(fakeAgentEnv))
	d, cleanup, err := fakeRunner(pid)
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	defer cleanup()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r, err := New(ctx, d, os.Getenv("KWARP_NETFILTER_FAKE_ID"), Options{Backend: Backend(os.Getenv("KWARP_NETFILTER_FAKE_BACKEND"))})
	if err == nil {
		_, err = r.Add(8080, 18080, "victim")
	}
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	fmt.Println("added", r.guard.pid)
	time.Sleep(time.Hour)
	return 0
}

// The guard removes the rules of an agent killed with SIGKILL, within a second, and exits.
func TestGuard(t *testing.T) {
	needNetfilter(t)
	for _, b := range backends(t) {
		t.Run(string(b), func(t *testing.T) {
			tp := newTopo(t)
			serve(t, tp.pod, ":8080", "app")
			serve(t, tp.pod, ":18080", "agent")
			serve(t, tp.pod, ":15006", "mesh")
			meshRules(t, tp.pod, b) // something of others' that must stay
			before := snapshot(t, tp.pod)
			id := NewID()

			exe, err := os.Executable()
			if err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(exe)
			cmd.Env = append(os.Environ(), fakeAgentEnv+"="+strconv.Itoa(tp.pod), "KWARP_NETFILTER_FAKE_ID="+id,
				"KWARP_NETFILTER_FAKE_BACKEND="+string(b))
			cmd.Stderr = os.Stderr
			stdout, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer cmd.Process.Kill()
			line, _ := bufio.NewReader(stdout).ReadString('\n')
			var guardPID int
			if _, err := fmt.Sscanf(line, "added %d", &guardPID); err != nil {
				t.Fatalf("the stand-in agent said %q", line)
			}
			if got := tp.who(t, app4); got != "agent" {
				t.Fatalf("the stand-in agent's redirect: %s answered", got)
			}
			if !strings.Contains(snapshot(t, tp.pod), "kwarp:"+id+":victim") {
				t.Fatal("the stand-in agent's rule is not there")
			}

			if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			cmd.Wait()
			took := waitSnapshot(t, tp.pod, before, time.Second)
			t.Logf("the guard removed the rules %v after SIGKILL", took)
			if got := tp.who(t, app4); got != "mesh" {
				t.Errorf("after the guard, 8080 answered by %s", got)
			}
			waitGone(t, guardPID, 2*time.Second)
		})
	}
}

// waitGone waits for process pid to have exited (gone or a zombie: the guard is not our child,
// its new parent reaps it).
func waitGone(t *testing.T, pid int, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			return
		}
		if i := strings.LastIndexByte(string(b), ')'); i > 0 && strings.HasPrefix(string(b[i:]), ") Z") {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Errorf("the guard (pid %d) is still running", pid)
}

// RemoveStale removes what dead agents left (in either backend) and nothing of a live one's;
// an id in use cannot be taken twice.
func TestRemoveStale(t *testing.T) {
	needNetfilter(t)
	bs := backends(t)
	tp := newTopo(t)
	serve(t, tp.pod, ":8080", "app")
	serve(t, tp.pod, ":18080", "agent")
	before := snapshot(t, tp.pod)

	// A dead agent's leftovers in every backend: a chain with a redirect, the jump; and a
	// second dead agent's bare chain (it died between -N and the jump).
	for _, b := range bs {
		multi := newXtables(b, DefaultBinDir, Here).multi
		for _, args := range [][]string{
			{"-N", "KWARP-dead01"},
			{"-A", "KWARP-dead01", "-p", "tcp", "--dport", "7070", "-m", "comment", "--comment", "kwarp:dead01:old", "-j", "REDIRECT", "--to-ports", "18080"},
			{"-I", "PREROUTING", "1", "-p", "tcp", "-m", "comment", "--comment", "kwarp:dead01:", "-j", "KWARP-dead01"},
			{"-N", "KWARP-dead02"},
		} {
			netnstest.Run(t, tp.pod, append([]string{multi, "iptables", "-t", "nat"}, args...)...)
		}
	}

	runner := runnerFor(t, tp.pod)
	live, err := New(ctxT(t), runner, NewID(), Options{Log: testLog(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	if _, err := live.Add(8080, 18080, "alive"); err != nil {
		t.Fatal(err)
	}
	if _, err := New(ctxT(t), runner, live.ID(), Options{}); !errors.Is(err, errIDInUse) {
		t.Errorf("a second Redirector with a live id: %v, want errIDInUse", err)
	}

	other, err := New(ctxT(t), runner, NewID(), Options{Log: testLog(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	removed, err := other.RemoveStale(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(removed, ",") != "dead01,dead02" {
		t.Errorf("removed %q, want dead01 and dead02", removed)
	}
	s := snapshot(t, tp.pod)
	if strings.Contains(s, "dead0") {
		t.Errorf("dead agents' rules remain:\n%s", s)
	}
	if !strings.Contains(s, "kwarp:"+live.ID()+":alive") {
		t.Errorf("the live agent's rule was removed:\n%s", s)
	}
	if got := tp.who(t, app4); got != "agent" {
		t.Errorf("the live agent's redirect: 8080 answered by %s", got)
	}
	if removed, err := live.RemoveStale(ctxT(t)); err != nil || len(removed) != 0 {
		t.Errorf("RemoveStale again: %q %v", removed, err)
	}
	if err := live.Close(); err != nil {
		t.Fatal(err)
	}
	if err := other.Close(); err != nil {
		t.Fatal(err)
	}
	if got := snapshot(t, tp.pod); got != before {
		t.Errorf("rules at the end:\n%s\nwant:\n%s", got, before)
	}
	// Closed, the id is free again.
	again, err := New(ctxT(t), runner, live.ID(), Options{})
	if err != nil {
		t.Errorf("New with a closed agent's id: %v", err)
	} else {
		again.Close()
	}
}

// TestRestoreNatIsOneTransaction: restoreNat applies its lines together, and a line that
// fails (deleting a rule that is not there) leaves everything as it was.
func TestRestoreNatIsOneTransaction(t *testing.T) {
	needNetfilter(t)
	for _, b := range backends(t) {
		t.Run(string(b), func(t *testing.T) {
			tp := newTopo(t)
			x := newXtables(b, DefaultBinDir, runnerFor(t, tp.pod))
			ctx := ctxT(t)
			before := snapshot(t, tp.pod)
			for _, args := range [][]string{{"-N", "KWARP-T1"}, {"-A", "KWARP-T1", "-p", "tcp", "-j", "RETURN"},
				{"-I", "PREROUTING", "1", "-p", "tcp", "-m", "comment", "--comment", "kwarp:T1:", "-j", "KWARP-T1"}} {
				if err := x.do(ctx, ipv4, args...); err != nil {
					t.Fatal(err)
				}
			}
			with := snapshot(t, tp.pod)
			jump := []string{"-D", "PREROUTING", "-p", "tcp", "-m", "comment", "--comment", "kwarp:T1:", "-j", "KWARP-T1"}
			bad := [][]string{jump, {"-D", "PREROUTING", "-p", "udp", "-j", "KWARP-T1"}, {"-F", "KWARP-T1"}, {"-X", "KWARP-T1"}}
			if err := x.restoreNat(ctx, ipv4, bad); err == nil {
				t.Error("a transaction with a missing rule succeeded")
			}
			if got := snapshot(t, tp.pod); got != with {
				t.Errorf("a failed transaction changed the rules:\n%s\nwant:\n%s", got, with)
			}
			if err := x.restoreNat(ctx, ipv4, [][]string{jump, {"-F", "KWARP-T1"}, {"-X", "KWARP-T1"}}); err != nil {
				t.Fatal(err)
			}
			if got := snapshot(t, tp.pod); got != before {
				t.Errorf("after the transaction:\n%s\nwant:\n%s", got, before)
			}
		})
	}
}
