package netfilter

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/kwarp-dev/kwarp/agent/netns"
	"github.com/kwarp-dev/kwarp/agent/netns/netnstest"
	"github.com/kwarp-dev/kwarp/agent/target"
	"github.com/rs/zerolog"
)

// TestMain lets the test binary be the guard (the Redirector starts /proc/self/exe with
// GuardArg, as the agent's main does) and the stand-in agent of the guard test.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == GuardArg {
		os.Exit(RunGuard(os.Args[2:], os.Stderr))
	}
	if os.Getenv(fakeAgentEnv) != "" {
		os.Exit(fakeAgent())
	}
	os.Exit(m.Run())
}

// needNetfilter skips unless the test can make namespaces and has iptables of backend b
// ("" any) and ip.
func needNetfilter(t *testing.T, backends ...Backend) {
	t.Helper()
	netnstest.NeedRoot(t)
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs ip (iproute2) to wire the test namespaces: run make deps")
	}
	for _, b := range backends {
		if !newXtables(b, DefaultBinDir, Here).present() {
			t.Skipf("needs %s/xtables-%s-multi (Debian's iptables): run make deps", DefaultBinDir, b)
		}
	}
}

// backends are the backends whose binary this machine has.
func backends(t *testing.T) []Backend {
	var bs []Backend
	for _, b := range []Backend{Legacy, NFT} {
		if newXtables(b, DefaultBinDir, Here).present() {
			bs = append(bs, b)
		} else {
			t.Logf("no %s backend on this machine: its tests are skipped", b)
		}
	}
	if len(bs) == 0 {
		t.Skipf("needs Debian's iptables (%s/xtables-{legacy,nft}-multi): run make deps", DefaultBinDir)
	}
	return bs
}

// runnerFor is the agent's way into pid's namespace: a netns.Dialer's worker thread.
func runnerFor(t *testing.T, pid int) *netns.Dialer {
	t.Helper()
	loc, err := target.NewTracker("/proc", func() (int, error) { return pid, nil })
	if err != nil {
		t.Fatal(err)
	}
	d := netns.New(loc)
	t.Cleanup(func() {
		d.Close()
		loc.Close()
	})
	return d
}

func testLog(t *testing.T) zerolog.Logger {
	return zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.DebugLevel)
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// topo is a pod and a client, each in a namespace of its own, wired by a veth pair: the
// client's connections reach the pod from outside, through nat PREROUTING, as a Service's do.
type topo struct {
	pod, client int
}

const (
	podIP4    = "10.77.0.1"
	clientIP4 = "10.77.0.2"
	podIP6    = "fd77::1"
	clientIP6 = "fd77::2"
)

func newTopo(t *testing.T) *topo {
	t.Helper()
	tp := &topo{pod: netnstest.Start(t), client: netnstest.Start(t)}
	// Made inside the pod's namespace, so the names never meet the host's; gone with it.
	netnstest.Run(t, tp.pod, "ip", "link", "add", "kwp0", "type", "veth", "peer", "name", "kwc0")
	netnstest.Run(t, tp.pod, "ip", "link", "set", "kwc0", "netns", fmt.Sprint(tp.client))
	netnstest.Run(t, tp.pod, "ip", "addr", "add", podIP4+"/24", "dev", "kwp0")
	netnstest.Run(t, tp.pod, "ip", "-6", "addr", "add", podIP6+"/64", "dev", "kwp0", "nodad")
	netnstest.Run(t, tp.pod, "ip", "link", "set", "kwp0", "up")
	netnstest.Run(t, tp.client, "ip", "addr", "add", clientIP4+"/24", "dev", "kwc0")
	netnstest.Run(t, tp.client, "ip", "-6", "addr", "add", clientIP6+"/64", "dev", "kwc0", "nodad")
	netnstest.Run(t, tp.client, "ip", "link", "set", "kwc0", "up")
	return tp
}

// serve answers each line a connection sends with name, until the test ends.
func serve(t *testing.T, pid int, addr, name string) {
	t.Helper()
	l := netnstest.Listen(t, pid, "tcp", addr)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				sc := bufio.NewScanner(c)
				for sc.Scan() {
					if _, err := fmt.Fprintln(c, name); err != nil {
						return
					}
				}
			}()
		}
	}()
}

// dial connects from pid's namespace.
func dial(pid int, addr string) (net.Conn, error) {
	var c net.Conn
	err := netnstest.In(pid, func() (err error) {
		c, err = net.DialTimeout("tcp", addr, 3*time.Second)
		return err
	})
	return c, err
}

// ask sends a line on c and returns the answer.
func ask(c net.Conn) (string, error) {
	c.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := fmt.Fprintln(c, "who?"); err != nil {
		return "", err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(line), err
}

// who connects from the client to the pod's addr and says who answered.
func (tp *topo) who(t *testing.T, addr string) string {
	t.Helper()
	c, err := dial(tp.client, addr)
	if err != nil {
		t.Fatalf("connect to %s from the client: %v", addr, err)
	}
	defer c.Close()
	s, err := ask(c)
	if err != nil {
		t.Fatalf("ask %s: %v", addr, err)
	}
	return s
}

// snapshot is every rule and user chain of pid's namespace in every backend and family, as
// a comparable text. Tables with nothing but empty built-in chains are left out: using a
// table leaves it behind, empty, and an empty table changes nothing.
func snapshot(t *testing.T, pid int) string {
	t.Helper()
	var b strings.Builder
	for _, bk := range []Backend{Legacy, NFT} {
		x := newXtables(bk, DefaultBinDir, Here)
		if !x.present() {
			continue
		}
		for _, fam := range allFamilies {
			var out string
			err := netnstest.In(pid, func() (err error) {
				out, err = x.save(context.Background(), fam)
				return err
			})
			if err != nil {
				continue
			}
			for _, tb := range parseSave(out) {
				if len(tb.chains) == 0 && len(tb.rules) == 0 {
					continue
				}
				fmt.Fprintf(&b, "%s %s *%s\n", bk, fam.name, tb.name)
				for _, c := range tb.chains {
					fmt.Fprintf(&b, "  :%s\n", c)
				}
				for _, r := range tb.rules {
					fmt.Fprintf(&b, "  -A %s %s\n", r.chain, strings.Join(r.args, " "))
				}
			}
		}
	}
	return b.String()
}

// waitSnapshot waits up to d for pid's rules to be want.
func waitSnapshot(t *testing.T, pid int, want string, d time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		got := snapshot(t, pid)
		if got == want {
			return time.Since(start)
		}
		if time.Since(start) > d {
			t.Fatalf("rules after %v:\n%s\nwant:\n%s", d, got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// fakeRunner is runnerFor outside a test.
func fakeRunner(pid int) (*netns.Dialer, func(), error) {
	loc, err := target.NewTracker("/proc", func() (int, error) { return pid, nil })
	if err != nil {
		return nil, nil, err
	}
	d := netns.New(loc)
	return d, func() { d.Close(); loc.Close() }, nil
}
