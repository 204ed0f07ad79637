package cluster

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/tools/clientcmd"
)

func testConfig(t *testing.T) Config {
	t.Helper()
	root := t.TempDir()
	return Config{Root: root, RunDir: filepath.Join(root, "run"), Bin: filepath.Join(root, "bin"), HostIP: "192.0.2.2"}
}

func TestPinnedVersions(t *testing.T) {
	v := PinnedVersions()
	if v.Kubernetes == "" || v.Etcd == "" || v.CoreDNS == "" {
		t.Fatalf("versions.mk not fully parsed: %+v", v)
	}
	got := parseVersions("# c\nK8S_VERSION := 1.2.3\nETCD_VERSION:=v3.6.0\n  COREDNS_VERSION := v1.0.0 \nOTHER := x\n")
	if got != (Versions{"1.2.3", "v3.6.0", "v1.0.0"}) {
		t.Fatalf("parseVersions = %+v", got)
	}
}

func TestRenderedConfigs(t *testing.T) {
	c := testConfig(t)
	tests := []struct {
		name string
		tmpl func() ([]byte, error)
		want []string
	}{
		{"containerd", func() ([]byte, error) { return render(containerdTmpl, c) }, []string{
			`root = "` + c.Root + `/containerd"`, `address = "` + c.RunDir + `/containerd.sock"`,
			`sandbox_image = "` + PauseImage + `"`, "restrict_oom_score_adj = true", `conf_dir = "` + c.Root + `/cni"`}},
		{"kubelet", func() ([]byte, error) { return render(kubeletTmpl, c) }, []string{
			"containerRuntimeEndpoint: unix://" + c.RunDir + "/containerd.sock", "clusterDNS: [" + DNSServiceIP + "]",
			"cgroupDriver: cgroupfs", "clientCAFile: " + c.Root + "/pki/ca.crt"}},
		{"cni", func() ([]byte, error) { return render(cniTmpl, c) }, []string{
			`"name":"` + CNINetwork + `"`, `"bridge":"` + BridgeName + `"`, `"subnet":"` + PodCIDR + `"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := tt.tmpl()
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range tt.want {
				if !strings.Contains(string(b), w) {
					t.Errorf("rendered %s lacks %q:\n%s", tt.name, w, b)
				}
			}
		})
	}
}

func TestPKI(t *testing.T) {
	c := testConfig(t)
	host := net.ParseIP("192.0.2.2")
	if err := writePKI(c.path("pki"), host); err != nil {
		t.Fatal(err)
	}
	caPEM, _ := os.ReadFile(c.pki("ca.crt"))
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		t.Fatal("ca.crt is not a PEM certificate")
	}
	load := func(name string) *x509.Certificate {
		b, err := os.ReadFile(c.pki(name + ".crt"))
		if err != nil {
			t.Fatal(err)
		}
		blk, _ := pem.Decode(b)
		cert, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		return cert
	}
	api := load("apiserver")
	for _, host := range []string{"127.0.0.1", APIServiceIP, "192.0.2.2", LaptopHostIP, "kubernetes.default.svc"} {
		if _, err := api.Verify(x509.VerifyOptions{Roots: pool, DNSName: host}); err != nil {
			t.Errorf("apiserver certificate not valid for %s: %v", host, err)
		}
	}
	admin := load("admin")
	if admin.Subject.Organization[0] != "system:masters" {
		t.Errorf("admin organization %v", admin.Subject.Organization)
	}
	if _, err := admin.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("admin client certificate: %v", err)
	}
	if kl := load("kubelet"); kl.Subject.CommonName != "system:node:"+NodeName {
		t.Errorf("kubelet CN %q", kl.Subject.CommonName)
	}

	// same host: kept; another host: regenerated
	before, _ := os.ReadFile(c.pki("ca.crt"))
	if err := writePKI(c.path("pki"), host); err != nil {
		t.Fatal(err)
	}
	if after, _ := os.ReadFile(c.pki("ca.crt")); string(after) != string(before) {
		t.Error("PKI regenerated for the same host address")
	}
	if err := writePKI(c.path("pki"), net.ParseIP("192.0.2.3")); err != nil {
		t.Fatal(err)
	}
	if after, _ := os.ReadFile(c.pki("ca.crt")); string(after) == string(before) {
		t.Error("PKI kept although the host address changed")
	}

	if err := c.writeKubeconfigs(); err != nil {
		t.Fatal(err)
	}
	for file, server := range map[string]string{"admin.kubeconfig": "https://127.0.0.1:6443", "laptop.kubeconfig": "https://" + LaptopHostIP + ":6443"} {
		rc, err := clientcmd.BuildConfigFromFlags("", c.path(file))
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		if rc.Host != server || len(rc.CertData) == 0 || len(rc.CAData) == 0 {
			t.Errorf("%s: host %q, cert %d bytes, ca %d bytes", file, rc.Host, len(rc.CertData), len(rc.CAData))
		}
	}
}

func TestDaemonLifecycle(t *testing.T) {
	c := testConfig(t)
	d := newDaemons()
	comp := component{name: "sleeper", args: []string{"sleep", "60"}}
	if err := c.start(d, comp); err != nil {
		t.Fatal(err)
	}
	pid, ok := c.running("sleeper")
	if !ok {
		t.Fatal("started daemon not running")
	}
	// idempotent: a second start keeps the same process
	if err := c.start(d, comp); err != nil {
		t.Fatal(err)
	}
	if pid2, _ := c.running("sleeper"); pid2 != pid {
		t.Fatalf("second start replaced pid %d with %d", pid, pid2)
	}
	c.stop("sleeper", time.Second)
	if _, ok := c.running("sleeper"); ok {
		t.Fatal("daemon still running after stop")
	}
	if processAlive(pid, "") {
		t.Fatalf("pid %d still alive", pid)
	}
}

func TestPidOfAnotherProgramIsNotOurs(t *testing.T) {
	c := testConfig(t)
	os.MkdirAll(c.path("pids"), 0o755)
	// our own pid, recorded as if it were etcd: alive, but not that executable
	os.WriteFile(c.pidPath("etcd"), []byte(itoa(os.Getpid())), 0o644)
	os.WriteFile(c.pidPath("etcd")+".exe", []byte("/nonexistent/etcd"), 0o644)
	if _, ok := c.running("etcd"); ok {
		t.Fatal("a recycled pid running another program counted as the component")
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

func TestComponentThatDiesNamesItsLog(t *testing.T) {
	c := testConfig(t)
	d := newDaemons()
	comp := component{name: "broken", args: []string{"sh", "-c", "echo 'fatal: cannot bind 0.0.0.0:6443' >&2; exit 3"}}
	if err := c.start(d, comp); err != nil {
		t.Fatal(err)
	}
	err := c.waitFor(d, "broken", 10*time.Second, func() error { return errors.New("not ready") })
	var ce *ComponentError
	if !errors.As(err, &ce) {
		t.Fatalf("waitFor = %v, want a ComponentError", err)
	}
	msg := err.Error()
	for _, want := range []string{"broken", "exited while starting", c.LogPath("broken"), "fatal: cannot bind"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q:\n%s", want, msg)
		}
	}
}

func TestComponentNotReadyInTime(t *testing.T) {
	c := testConfig(t)
	d := newDaemons()
	if err := c.start(d, component{name: "slow", args: []string{"sleep", "30"}}); err != nil {
		t.Fatal(err)
	}
	defer c.stop("slow", time.Second)
	err := c.waitFor(d, "slow", 300*time.Millisecond, func() error { return errors.New("healthz: connection refused") })
	if err == nil || !strings.Contains(err.Error(), "not ready after") || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("waitFor = %v", err)
	}
}

func TestPortTakenNamesComponentAndPort(t *testing.T) {
	l, err := net.Listen("tcp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port
	c := testConfig(t)
	err = c.start(newDaemons(), component{name: "kube-apiserver", ports: []int{port}, args: []string{"sleep", "1"}})
	if err == nil || !strings.Contains(err.Error(), "kube-apiserver") || !strings.Contains(err.Error(), "port "+itoa(port)) {
		t.Fatalf("start with a taken port = %v", err)
	}
	if _, ok := c.running("kube-apiserver"); ok {
		t.Fatal("started although its port was taken")
	}
}

func TestPreflightMessages(t *testing.T) {
	if err := needRoot(1000); err == nil || !strings.Contains(err.Error(), "needs root") {
		t.Errorf("needRoot(1000) = %v", err)
	}
	if err := needRoot(0); err != nil {
		t.Errorf("needRoot(0) = %v", err)
	}
	if err := needNetns("/proc/self/ns/net"); err != nil {
		t.Errorf("needNetns on this machine = %v", err)
	}
	if err := needNetns("/nonexistent/ns/net"); err == nil || !strings.Contains(err.Error(), "no network namespaces") {
		t.Errorf("needNetns without namespaces = %v", err)
	}
	c := testConfig(t)
	os.MkdirAll(c.Bin, 0o755)
	os.WriteFile(filepath.Join(c.Bin, "etcd"), []byte("#!/bin/sh\n"), 0o755)
	err := missingBinaries(c)
	if err == nil || strings.Contains(err.Error(), "etcd,") || !strings.Contains(err.Error(), "kube-apiserver") || !strings.Contains(err.Error(), "make cluster-bins") {
		t.Errorf("missingBinaries = %v", err)
	}
}

func TestSplitRule(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{`POSTROUTING -s 10.244.0.5/32 -m comment --comment "name: \"kwarp-testcluster\" id: \"abc\"" -j CNI-123`,
			[]string{"POSTROUTING", "-s", "10.244.0.5/32", "-m", "comment", "--comment", `name: "kwarp-testcluster" id: "abc"`, "-j", "CNI-123"}},
		{`KUBE-SERVICES -d 10.96.0.1/32 -j KUBE-SVC-X`, []string{"KUBE-SERVICES", "-d", "10.96.0.1/32", "-j", "KUBE-SVC-X"}},
		{`X --comment ""`, []string{"X", "--comment", ""}},
	}
	for _, tt := range tests {
		if got := splitRule(tt.in); strings.Join(got, "|") != strings.Join(tt.want, "|") {
			t.Errorf("splitRule(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestOurRule(t *testing.T) {
	for line, want := range map[string]bool{
		"-A POSTROUTING -m comment --comment \"kubernetes postrouting rules\" -j KUBE-POSTROUTING":                          true,
		"-A POSTROUTING -s 10.244.0.2/32 -m comment --comment \"name: \\\"kwarp-testcluster\\\" id: \\\"x\\\"\" -j CNI-abc": true,
		"-A PREROUTING -i kwl0 -j KWARP-LAPTOP": true,
		"-A INPUT -p tcp --dport 22 -j ACCEPT":  false,
		":DOCKER - [0:0]":                       false,
	} {
		if got := ourRule(line); got != want {
			t.Errorf("ourRule(%q) = %v, want %v", line, got, want)
		}
	}
}

func TestMountParsing(t *testing.T) {
	if got := unescapeMount(`/var/lib/x\040y/z`); got != "/var/lib/x y/z" {
		t.Errorf("unescapeMount = %q", got)
	}
	for _, tt := range []struct {
		path, dir string
		want      bool
	}{{"/a/b", "/a", true}, {"/a", "/a", true}, {"/ab", "/a", false}, {"/a/b", "/a/", true}} {
		if got := under(tt.path, tt.dir); got != tt.want {
			t.Errorf("under(%q, %q) = %v", tt.path, tt.dir, got)
		}
	}
}

func TestFieldAfter(t *testing.T) {
	if got := fieldAfter("default via 192.0.2.1 dev eth0", "via"); got != "192.0.2.1" {
		t.Errorf("via = %q", got)
	}
	if got := fieldAfter("192.0.2.1 dev eth0 src 192.0.2.2 uid 0", "src"); got != "192.0.2.2" {
		t.Errorf("src = %q", got)
	}
	if got := fieldAfter("unreachable", "src"); got != "" {
		t.Errorf("missing = %q", got)
	}
}

func TestDownWithoutClusterIsFine(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("Down runs ip and iptables: needs root")
	}
	c := testConfig(t)
	c.Root = filepath.Join(c.Root, "never-created")
	c.RunDir = filepath.Join(c.Root, "run")
	if err := Down(context.Background(), c, nil); err != nil {
		t.Fatalf("Down without a cluster = %v", err)
	}
}
