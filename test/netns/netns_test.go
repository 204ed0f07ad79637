package netns

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// newNS makes a throwaway namespace with only loopback up.
func newNS(t *testing.T) NS {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("network namespaces need root: run the tests as root")
	}
	name := fmt.Sprintf("kwarp-test-%d", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	if out, err := exec.Command("ip", "-n", name, "link", "set", "lo", "up").CombinedOutput(); err != nil {
		t.Fatalf("lo up: %v: %s", err, out)
	}
	return NS{Name: name, Env: []string{"KWARP_TEST_MARK=in-ns"}}
}

func TestDoIsolatesSockets(t *testing.T) {
	ns := newNS(t)
	// a listener on the host's loopback is not reachable from the namespace's loopback
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	addr := l.Addr().String()

	err = ns.Do(func() error {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return fmt.Errorf("dial %s from inside the namespace succeeded; the namespace does not isolate", addr)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// and the calling goroutine is back in the host namespace afterwards
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		t.Fatalf("dial from the host after Do: %v (thread not restored?)", err)
	}
	c.Close()
}

func TestDoReturnsFnError(t *testing.T) {
	ns := newNS(t)
	want := fmt.Errorf("boom")
	if err := ns.Do(func() error { return want }); err != want {
		t.Fatalf("Do returned %v, want fn's error", err)
	}
}

func TestCommandRunsInNamespaceWithEnv(t *testing.T) {
	ns := newNS(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := ns.Command(ctx, "sh", "-c", `echo "$KWARP_TEST_MARK"; ip -o link show | wc -l`).CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	lines := strings.Fields(string(out))
	if len(lines) != 2 || lines[0] != "in-ns" || lines[1] != "1" {
		t.Fatalf("output %q: want the env mark and exactly one link (lo)", out)
	}
}

func TestMissingNamespace(t *testing.T) {
	ns := NS{Name: "kwarp-does-not-exist"}
	if ns.Exists() {
		t.Skip("a namespace with that name exists on this machine")
	}
	err := ns.Do(func() error { return nil })
	if err == nil || !strings.Contains(err.Error(), "kwarp-does-not-exist") {
		t.Fatalf("Do in a missing namespace: %v; want an error naming it", err)
	}
}
