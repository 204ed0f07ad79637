package e2e

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/kwarp-dev/kwarp/test/cluster"
	"github.com/kwarp-dev/kwarp/test/kube"
	"github.com/kwarp-dev/kwarp/test/netns"
)

// The office LAN: a network namespace next to the laptop that the laptop reaches and the
// cluster does not. Its echo server answers "lan" on ports 7000 and 7001 — the echo Service's
// port too — and its DNS server knows *.lan.test. A connection that reaches it provably stayed
// on this machine; one that reaches the echo pod provably went through the pod.
const (
	lanNetns   = "kwarp-lan"
	lanIP      = "169.254.79.2"
	lanLaptop  = "169.254.79.1"
	lanBanner  = "lan"
	laptopEtc  = "/etc/netns/" + cluster.LaptopNetns
	resolvConf = laptopEtc + "/resolv.conf"
)

// newLAN sets the LAN up for the test and points the laptop's own resolver at its DNS
// server (ip netns exec mounts /etc/netns/NAME/resolv.conf over /etc/resolv.conf).
func newLAN(t *testing.T) {
	t.Helper()
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	exec.Command("ip", "netns", "del", lanNetns).Run() // a run killed before its cleanup
	run("netns", "add", lanNetns)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", lanNetns).Run() }) // takes the veth pair with it
	run("link", "add", "kwlan0", "type", "veth", "peer", "name", "kwlan1")
	run("link", "set", "kwlan0", "netns", cluster.LaptopNetns)
	run("link", "set", "kwlan1", "netns", lanNetns)
	run("-n", cluster.LaptopNetns, "addr", "add", lanLaptop+"/30", "dev", "kwlan0")
	run("-n", cluster.LaptopNetns, "link", "set", "kwlan0", "up")
	run("-n", lanNetns, "addr", "add", lanIP+"/30", "dev", "kwlan1")
	run("-n", lanNetns, "link", "set", "kwlan1", "up")
	run("-n", lanNetns, "link", "set", "lo", "up")

	var lns []net.Listener
	var dns net.PacketConn
	err := netns.NS{Name: lanNetns}.Do(func() error {
		for _, port := range []string{"7000", "7001"} {
			ln, err := net.Listen("tcp", net.JoinHostPort(lanIP, port))
			if err != nil {
				return err
			}
			lns = append(lns, ln)
		}
		var err error
		dns, err = net.ListenPacket("udp", lanIP+":53")
		return err
	})
	if err != nil {
		t.Fatalf("LAN servers: %v", err)
	}
	for _, ln := range lns {
		t.Cleanup(func() { ln.Close() })
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				c.Write([]byte(lanBanner + "\n"))
				c.Close()
			}
		}()
	}
	t.Cleanup(func() { dns.Close() })
	go serveLANDNS(dns)

	if err := os.MkdirAll(laptopEtc, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		os.RemoveAll(laptopEtc)
		os.Remove(filepath.Dir(laptopEtc)) // /etc/netns, when nothing else is in it
	})
	if err := os.WriteFile(resolvConf, []byte("nameserver "+lanIP+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

// serveLANDNS answers A queries for *.lan.test with the LAN's address, anything else NXDOMAIN.
func serveLANDNS(pc net.PacketConn) {
	buf := make([]byte, 1500)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			return
		}
		var p dnsmessage.Parser
		h, err := p.Start(buf[:n])
		if err != nil {
			continue
		}
		q, err := p.Question()
		if err != nil {
			continue
		}
		rh := dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true, RCode: dnsmessage.RCodeNameError}
		b := dnsmessage.NewBuilder(nil, rh)
		b.EnableCompression()
		name := strings.ToLower(q.Name.String())
		known := strings.HasSuffix(name, ".lan.test.")
		if known {
			rh.RCode = dnsmessage.RCodeSuccess
			b = dnsmessage.NewBuilder(nil, rh)
		}
		b.StartQuestions()
		b.Question(q)
		b.StartAnswers()
		if known && q.Type == dnsmessage.TypeA {
			b.AResource(dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: 30},
				dnsmessage.AResource{A: [4]byte(net.ParseIP(lanIP).To4())})
		}
		out, err := b.Finish()
		if err == nil {
			pc.WriteTo(out, from)
		}
	}
}

// TestOutgoingFilters proves each filter kind both ways in one session: a connection the
// policy sends through the pod reaches the echo pod, one it keeps here reaches the LAN — which
// the pod cannot reach, and the laptop reaches only by itself.
func TestOutgoingFilters(t *testing.T) {
	ctx := kube.Context(t, 6*time.Minute)
	w := newOutgoingWorld(t, ctx, "filters")
	cl := buildClients(t, ctx)
	newLAN(t)
	fqdn := "echo." + w.ns + ".svc.cluster.local"
	tcp := func(host, port string) []string { return cl.argv(t, "go", "tcp", host, port) }
	tests := []struct {
		name, policy string
		pod, local   []string // a connection expected through the pod, and one expected to stay here
	}{
		{"remote by port", `filter "remote" { ports = [7000] }`, tcp("echo", "7000"), tcp(lanIP, "7001")},
		{"remote by subnet", `filter "remote" { subnets = ["10.96.0.0/12", "10.244.0.0/16"] }`, tcp("echo", "7000"), tcp(lanIP, "7000")},
		{"remote by host", `filter "remote" { hosts = ["*.svc.cluster.local"] }`, tcp(fqdn, "7000"), tcp(lanIP, "7000")},
		{"local by subnet", `filter "local" { subnets = ["169.254.79.0/30"] }`, tcp("echo", "7000"), tcp(lanIP, "7000")},
		{"local by port", `filter "local" { ports = [7001] }`, tcp("echo", "7000"), tcp(lanIP, "7001")},
		{"local by host", `filter "local" { hosts = ["*.lan.test"] }`, tcp("echo", "7000"), tcp("app.lan.test", "7000")},
	}
	dir := t.TempDir()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			policy := filepath.Join(dir, strings.ReplaceAll(tt.name, " ", "-")+".hcl")
			body := "dns {\n  local = [\"*.lan.test\"]\n}\nnetwork {\n  outgoing {\n    " + tt.policy + "\n  }\n}\n"
			if err := os.WriteFile(policy, []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
			got := execScript(t, ctx, []string{"exec", "-n", w.ns, "-t", "deploy/sample", "-f", policy},
				map[string][]string{"pod": tt.pod, "local": tt.local})
			if strings.TrimSpace(got["pod"]) != w.echoPod {
				t.Errorf("the connection the policy sends through the pod: %q, want the echo pod %s", got["pod"], w.echoPod)
			}
			if strings.TrimSpace(got["local"]) != lanBanner {
				t.Errorf("the connection the policy keeps here: %q, want the LAN's %q", got["local"], lanBanner)
			}
		})
	}
	// Without a filter the LAN address goes through the pod, which cannot reach it: the
	// filters above are what kept it here.
	t.Run("no filter", func(t *testing.T) {
		got := execScript(t, ctx, []string{"exec", "-n", w.ns, "-t", "deploy/sample"},
			map[string][]string{"lan": {"sh", "-c", shellJoin(cl.argv(t, "go", "tcp", lanIP, "7000")) + " || echo failed"}})
		if strings.Contains(got["lan"], lanBanner+"\n") || !strings.Contains(got["lan"], "failed") {
			t.Fatalf("with no filter the LAN answered: %q", got["lan"])
		}
	})
	t.Run("tcp off", func(t *testing.T) {
		policy := filepath.Join(dir, "tcp-off.hcl")
		os.WriteFile(policy, []byte("network {\n  outgoing {\n    tcp = false\n  }\n}\n"), 0o644)
		got := execScript(t, ctx, []string{"exec", "-n", w.ns, "-t", "deploy/sample", "-f", policy}, map[string][]string{
			"lan":  tcp(lanIP, "7000"),
			"echo": {"sh", "-c", shellJoin(tcp(w.echoSvcIP, "7000")) + " || echo failed"},
		})
		if strings.TrimSpace(got["lan"]) != lanBanner || !strings.Contains(got["echo"], "failed") {
			t.Fatalf("tcp = false: %q; want the LAN reached and the Service not", got)
		}
	})
}

// TestDNSLocal resolves a dns.local name with this machine's resolver and every other name
// with the pod's, in one session; dns.enabled = false leaves all resolution here.
func TestDNSLocal(t *testing.T) {
	ctx := kube.Context(t, 4*time.Minute)
	w := newOutgoingWorld(t, ctx, "dnslocal")
	cl := buildClients(t, ctx)
	newLAN(t)
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	local := write("local.hcl", "dns {\n  local = [\"*.lan.test\"]\n}\n")
	got := execScript(t, ctx, []string{"exec", "-n", w.ns, "-t", "deploy/sample", "-f", local}, map[string][]string{
		"go local":  cl.argv(t, "go", "resolve", "app.lan.test"),
		"c local":   cl.argv(t, "c", "resolve", "app.lan.test"),
		"go pod":    cl.argv(t, "go", "resolve", "echo"),
		"c pod":     cl.argv(t, "c", "resolve", "echo"),
		"echo conn": cl.argv(t, "go", "tcp", "echo", "7000"),
	})
	for label, want := range map[string]string{"go local": lanIP, "c local": lanIP, "go pod": w.echoSvcIP, "c pod": w.echoSvcIP,
		"echo conn": w.echoPod} {
		if strings.TrimSpace(got[label]) != want {
			t.Errorf("%s: %q, want %q", label, got[label], want)
		}
	}
	off := write("off.hcl", "dns {\n  enabled = false\n}\n")
	got = execScript(t, ctx, []string{"exec", "-n", w.ns, "-t", "deploy/sample", "-f", off}, map[string][]string{
		"resolv.conf": {"cat", "/etc/resolv.conf"},
		"lan name":    cl.argv(t, "go", "resolve", "app.lan.test"),
		"pod name":    {"sh", "-c", shellJoin(cl.argv(t, "go", "resolve", "echo")) + " || echo failed"},
	})
	if strings.TrimSpace(got["resolv.conf"]) != "nameserver "+lanIP || strings.TrimSpace(got["lan name"]) != lanIP ||
		!strings.Contains(got["pod name"], "failed") {
		t.Fatalf("dns.enabled = false: %q; want this machine's resolv.conf and resolver only", got)
	}

}
