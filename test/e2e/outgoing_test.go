package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kwarp-dev/kwarp/test/kube"
	"github.com/kwarp-dev/kwarp/test/testenv"
)

// clients are testdata/outgoing's programs, built once per test into a directory of its own.
type clients struct {
	dir string
}

// buildClients builds the compiled clients (C, Java, Rust, static Go); the scripts run from
// testdata. A language whose toolchain is missing is left out, and the tests that need it
// skip, saying so.
func buildClients(t *testing.T, ctx context.Context) clients {
	t.Helper()
	dir := t.TempDir()
	src, err := filepath.Abs("testdata/outgoing")
	if err != nil {
		t.Fatal(err)
	}
	run := func(what string, cmd *exec.Cmd) {
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("build the %s client: %v\n%s", what, err, out)
		}
	}
	run("C", exec.CommandContext(ctx, "gcc", "-O2", "-o", filepath.Join(dir, "client-c"), filepath.Join(src, "client.c")))
	gob := exec.CommandContext(ctx, "go", "build", "-o", filepath.Join(dir, "goclient"), ".")
	gob.Dir = filepath.Join(src, "goclient")
	gob.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=-mod=mod")
	run("static Go", gob)
	if _, err := exec.LookPath("javac"); err == nil {
		run("Java", exec.CommandContext(ctx, "javac", "-d", dir, filepath.Join(src, "Client.java")))
	}
	if _, err := exec.LookPath("rustc"); err == nil {
		run("Rust", exec.CommandContext(ctx, "rustc", "-O", "-o", filepath.Join(dir, "client-rs"), filepath.Join(src, "client.rs")))
	}
	return clients{dir: dir}
}

// argv is the command line of a client in lang.
func (c clients) argv(t *testing.T, lang string, args ...string) []string {
	t.Helper()
	src, _ := filepath.Abs("testdata/outgoing")
	need := func(path string) {
		if _, err := os.Stat(path); err != nil {
			t.Skipf("the %s client is not built on this machine", lang)
		}
	}
	switch lang {
	case "c":
		return append([]string{filepath.Join(c.dir, "client-c")}, args...)
	case "go":
		return append([]string{filepath.Join(c.dir, "goclient")}, args...)
	case "python":
		return append([]string{"/usr/bin/python3", filepath.Join(src, "client.py")}, args...)
	case "node":
		return append([]string{"node", filepath.Join(src, "client.js")}, args...)
	case "java":
		need(filepath.Join(c.dir, "Client.class"))
		return append([]string{"java", "-cp", c.dir, "Client"}, args...)
	case "rust":
		need(filepath.Join(c.dir, "client-rs"))
		return append([]string{filepath.Join(c.dir, "client-rs")}, args...)
	}
	t.Fatalf("no %s client", lang)
	return nil
}

// shellJoin quotes argv for sh -c.
func shellJoin(argv []string) string {
	q := make([]string, len(argv))
	for i, a := range argv {
		q[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return strings.Join(q, " ")
}

// outgoingWorld is a namespace with the sample app (HTTP) as the target and the echo server
// (TCP banner and UDP echo, both naming the echo pod) and Redis as what it talks to.
type outgoingWorld struct {
	ns                  string
	echoPod, echoPodIP  string
	echoSvcIP           string
	samplePod, sampleIP string
	sampleSvcIP         string
}

func newOutgoingWorld(t *testing.T, ctx context.Context, prefix string, manifests ...string) outgoingWorld {
	t.Helper()
	ns := deploy(t, ctx, prefix, append([]string{"sample", "echo"}, manifests...)...)
	waitServiceNames(t, ctx, ns, append([]string{"sample", "echo"}, manifests...)...)
	w := outgoingWorld{ns: ns}
	echo, err := testenv.Env.RunningPodOf(ctx, ns, "echo")
	if err != nil {
		t.Fatal(err)
	}
	sample, err := testenv.Env.RunningPodOf(ctx, ns, "sample")
	if err != nil {
		t.Fatal(err)
	}
	w.echoPod, w.echoPodIP, w.samplePod, w.sampleIP = echo.Name, echo.Status.PodIP, sample.Name, sample.Status.PodIP
	for name, ip := range map[string]*string{"echo": &w.echoSvcIP, "sample": &w.sampleSvcIP} {
		svc, err := testenv.Env.Client.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		*ip = svc.Spec.ClusterIP
	}
	return w
}

// echoAddrs are the four ways a program names the echo server.
func (w outgoingWorld) echoAddrs() map[string]string {
	return map[string]string{"short name": "echo", "FQDN": "echo." + w.ns + ".svc.cluster.local",
		"Service IP": w.echoSvcIP, "pod IP": w.echoPodIP}
}

func (w outgoingWorld) sampleURLs() map[string]string {
	// the Service listens on 80, the pod on 8080
	return map[string]string{"short name": "http://sample/x", "FQDN": "http://sample." + w.ns + ".svc.cluster.local/x",
		"Service IP": "http://" + w.sampleSvcIP + "/x", "pod IP": "http://" + w.sampleIP + ":8080/x"}
}

// execScript runs one kwarp session on the laptop whose command runs lines in order, each
// printing "== label" then its output: one session covers several checks.
func execScript(t *testing.T, ctx context.Context, args []string, lines map[string][]string) map[string]string {
	t.Helper()
	var sb strings.Builder
	var order []string
	for label, argv := range lines {
		order = append(order, label)
		fmt.Fprintf(&sb, "echo '== %s'; %s 2>&1; echo \"== exit $?\"\n", label, shellJoin(argv))
	}
	r := kwarpOnLaptop(t, ctx, nil, append(args, "--", "sh", "-c", sb.String())...)
	if r.code != 0 {
		t.Fatalf("kwarp: %s", r)
	}
	out := map[string]string{}
	var cur string
	for _, l := range strings.Split(r.stdout, "\n") {
		switch {
		case strings.HasPrefix(l, "== exit "):
			if l != "== exit 0" {
				out[cur] += "[" + strings.TrimPrefix(l, "== ") + "]"
			}
		case strings.HasPrefix(l, "== "):
			cur = strings.TrimPrefix(l, "== ")
		default:
			out[cur] += l + "\n"
		}
	}
	return out
}

// answeredBy says whether body is httpecho's JSON answer from pod.
func answeredBy(body, pod string) bool {
	return regexp.MustCompile(`"pod":\s*"` + regexp.QuoteMeta(pod) + `"`).MatchString(body)
}

// TestOutgoingClients connects from the laptop, which cannot reach pods or Services itself,
// with a client in every language to the echo server by its short name, its FQDN, its
// Service IP and its pod IP: each must read the banner naming the echo pod. HTTP clients get
// an answer from the sample pod the same four ways.
func TestOutgoingClients(t *testing.T) {
	ctx := kube.Context(t, 8*time.Minute)
	w := newOutgoingWorld(t, ctx, "out")
	cl := buildClients(t, ctx)
	target := []string{"exec", "-n", w.ns, "-t", "deploy/sample"}

	for _, lang := range []string{"c", "python", "node", "java", "go", "rust"} {
		t.Run("tcp/"+lang, func(t *testing.T) {
			lines := map[string][]string{}
			for form, host := range w.echoAddrs() {
				lines[form] = cl.argv(t, lang, "tcp", host, "7000")
			}
			for form, got := range execScript(t, ctx, target, lines) {
				if strings.TrimSpace(got) != w.echoPod {
					t.Errorf("%s by %s: %q, want the echo pod's banner %q", lang, form, got, w.echoPod)
				}
			}
		})
	}
	http := map[string]func(url string) []string{
		"curl":            func(u string) []string { return []string{"curl", "-sS", "--max-time", "20", u} },
		"python-urllib":   func(u string) []string { return cl.argv(t, "python", "http", u) },
		"python-requests": func(u string) []string { return cl.argv(t, "python", "requests", u) },
		"node":            func(u string) []string { return cl.argv(t, "node", "http", u) },
		"go":              func(u string) []string { return cl.argv(t, "go", "http", u) },
		"java":            func(u string) []string { return cl.argv(t, "java", "http", u) },
	}
	for name, mk := range http {
		t.Run("http/"+name, func(t *testing.T) {
			lines := map[string][]string{}
			for form, u := range w.sampleURLs() {
				lines[form] = mk(u)
			}
			for form, got := range execScript(t, ctx, target, lines) {
				if !answeredBy(got, w.samplePod) {
					t.Errorf("%s by %s: %q, want httpecho's answer naming pod %s", name, form, got, w.samplePod)
				}
			}
		})
	}
	// the same clients without kwarp reach nothing: the laptop proves nothing otherwise
	t.Run("without kwarp", func(t *testing.T) {
		out, err := testenv.Laptop.Command(ctx, cl.argv(t, "go", "tcp", w.echoPodIP, "7000")[0], "tcp", w.echoPodIP, "7000").CombinedOutput()
		if err == nil {
			t.Fatalf("the laptop reached the echo pod without kwarp: %s", out)
		}
	})
}

// TestOutgoingUDPAndDNS sends UDP to the echo server, connected and not, and resolves names
// with every resolver a program may use: glibc's, Go's own (static binary), Node's c-ares,
// dig and nslookup. A name the pod cannot resolve is NXDOMAIN, not a hang.
func TestOutgoingUDPAndDNS(t *testing.T) {
	ctx := kube.Context(t, 5*time.Minute)
	w := newOutgoingWorld(t, ctx, "udpdns")
	cl := buildClients(t, ctx)
	fqdn := "echo." + w.ns + ".svc.cluster.local"
	lines := map[string][]string{
		"c udp":           cl.argv(t, "c", "udp", "echo", "7001"),
		"python udp":      cl.argv(t, "python", "udp", "echo", "7001"),
		"go udp":          cl.argv(t, "go", "udp", "echo", "7001"),
		"go udpfrom":      cl.argv(t, "go", "udpfrom", w.echoSvcIP, "7001"),
		"c resolve":       cl.argv(t, "c", "resolve", "echo"),
		"go resolve":      cl.argv(t, "go", "resolve", "echo"),
		"go resolve ns":   cl.argv(t, "go", "resolve", "echo."+w.ns),
		"go resolve fqdn": cl.argv(t, "go", "resolve", fqdn),
		"node lookup":     cl.argv(t, "node", "lookup", "echo"),
		"node resolve":    cl.argv(t, "node", "resolve", fqdn),
		"dig":             {"dig", "+search", "+short", "echo"},
		"nslookup":        {"sh", "-c", "nslookup echo | sed -n 's/^Address: //p' | tail -1"},
		// a name under the cluster's domain: CoreDNS answers NXDOMAIN itself (names outside
		// it are forwarded upstream, which this sandboxed cluster cannot reach: SERVFAIL)
		"nxdomain go": {"sh", "-c", shellJoin(cl.argv(t, "go", "resolve", "no-such-service-kwarp."+w.ns+".svc.cluster.local")) + "; echo status=$?"},
		"nxdomain c":  {"sh", "-c", shellJoin(cl.argv(t, "c", "resolve", "no-such-service-kwarp."+w.ns+".svc.cluster.local")) + "; echo status=$?"},
		// a port nothing listens on in the echo pod: its kernel refuses, and so does the program's connect
		"refused go": {"sh", "-c", shellJoin(cl.argv(t, "go", "tcp", w.echoPodIP, "7999")) + "; echo status=$?"},
		"refused c":  {"sh", "-c", shellJoin(cl.argv(t, "c", "tcp", w.echoPodIP, "7999")) + "; echo status=$?"},
	}
	start := time.Now()
	got := execScript(t, ctx, []string{"exec", "-n", w.ns, "-t", "deploy/sample"}, lines)
	for label := range lines {
		out := strings.TrimSpace(got[label])
		switch {
		case strings.HasPrefix(label, "refused"):
			if !strings.Contains(strings.ToLower(out), "connection refused") || strings.HasSuffix(out, "status=0") {
				t.Errorf("%s: %q, want the pod's ECONNREFUSED", label, out)
			}
		case strings.HasPrefix(label, "nxdomain"):
			if !strings.Contains(out, "status=") || strings.HasSuffix(out, "status=0") ||
				!(strings.Contains(out, "no such host") || strings.Contains(out, "not known")) {
				t.Errorf("%s: %q, want a failure saying the name does not exist", label, out)
			}
		case strings.Contains(label, "udp"):
			want := w.echoPod + " ping"
			if !strings.HasPrefix(out, want) || (strings.Contains(out, "from-sent-address") && !strings.HasSuffix(out, "from-sent-address=yes")) {
				t.Errorf("%s: %q, want %q from the address the datagram was sent to", label, out, want)
			}
		default:
			if out != w.echoSvcIP {
				t.Errorf("%s: %q, want the echo Service's IP %s", label, out, w.echoSvcIP)
			}
		}
	}
	if took := time.Since(start); took > 90*time.Second {
		t.Errorf("the session took %s: something waited for a timeout", took)
	}
}

// TestOutgoingRedis runs the real redis-cli against Redis in the cluster (Debian's
// redis-server, packed into the workload image): a SET/GET round trip by the Service's name.
func TestOutgoingRedis(t *testing.T) {
	if _, err := exec.LookPath("redis-cli"); err != nil {
		t.Skip("redis-cli is not installed (make deps installs redis-tools)")
	}
	ctx := kube.Context(t, 4*time.Minute)
	w := newOutgoingWorld(t, ctx, "redis", "redis")
	key := "kwarp-" + w.ns
	got := execScript(t, ctx, []string{"exec", "-n", w.ns, "-t", "deploy/sample"}, map[string][]string{
		"roundtrip": {"sh", "-c", "redis-cli -h redis SET " + key + " from-the-laptop && redis-cli -h redis GET " + key},
	})
	if strings.TrimSpace(got["roundtrip"]) != "OK\nfrom-the-laptop" {
		t.Fatalf("redis-cli SET/GET: %q", got["roundtrip"])
	}
	// one connection held for a while: redis-cli reads its commands from a pipe that feeds
	// one every two seconds, and CLIENT ID names the connection each time
	held := execScript(t, ctx, []string{"exec", "-n", w.ns, "-t", "deploy/sample"}, map[string][]string{
		"held": {"sh", "-c", "for i in 1 2 3 4 5 6; do echo CLIENT ID; sleep 2; done | redis-cli -h redis"},
	})
	ids := strings.Fields(held["held"])
	if len(ids) != 6 || strings.Count(held["held"], ids[0]) != 6 {
		t.Fatalf("a connection held 12 s: %q, want six answers from one connection", held["held"])
	}
	// the value is in the pod's Redis, read from the node side without kwarp
	out, _, err := testenv.Env.Exec(ctx, w.ns, mustPod(t, ctx, w.ns, "redis"), "redis", []string{"/usr/bin/redis-server", "--version"}, nil)
	if err != nil || !strings.Contains(out, "Redis server") {
		t.Fatalf("the redis pod: %q, %v", out, err)
	}
	// 200 connections at once through one session
	cl := buildClients(t, ctx)
	par := execScript(t, ctx, []string{"exec", "-n", w.ns, "-t", "deploy/sample"}, map[string][]string{
		"parallel": cl.argv(t, "go", "parallel", "200", "echo", "7000"),
	})
	if strings.TrimSpace(par["parallel"]) != w.echoPod+" 200" {
		t.Fatalf("200 parallel connections: %q, want all 200 answered by %s", par["parallel"], w.echoPod)
	}
}

func mustPod(t *testing.T, ctx context.Context, ns, deployment string) string {
	t.Helper()
	p, err := testenv.Env.RunningPodOf(ctx, ns, deployment)
	if err != nil {
		t.Fatal(err)
	}
	return p.Name
}

// TestOutgoingTargetless connects with no target: the connection leaves from kwarp's own
// agent pod, whose DNS resolves the namespace's Services.
func TestOutgoingTargetless(t *testing.T) {
	ctx := kube.Context(t, 4*time.Minute)
	w := newOutgoingWorld(t, ctx, "outtl")
	cl := buildClients(t, ctx)
	got := execScript(t, ctx, []string{"exec", "-n", w.ns}, map[string][]string{
		"tcp":  cl.argv(t, "go", "tcp", "echo", "7000"),
		"http": {"curl", "-sS", "--max-time", "20", "http://sample/tl"},
	})
	if strings.TrimSpace(got["tcp"]) != w.echoPod || !answeredBy(got["http"], w.samplePod) {
		t.Fatalf("targetless: %q", got)
	}
}

// startForward runs kwarp port-forward on the laptop in the background and returns the
// local addresses it printed, in the order of the -L flags.
func startForward(t *testing.T, ctx context.Context, args ...string) (addrs []string, stop func() kwarpResult) {
	t.Helper()
	cmd := testenv.Laptop.Command(ctx, testenv.KwarpBinary(t), append([]string{"port-forward"}, args...)...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`forwarding (\S+) → `)
	sc := bufio.NewScanner(stderr)
	var log strings.Builder
	want := strings.Count(strings.Join(args, " "), "-L")
	for len(addrs) < want && sc.Scan() {
		log.WriteString(sc.Text() + "\n")
		if m := re.FindStringSubmatch(sc.Text()); m != nil {
			addrs = append(addrs, m[1])
		}
	}
	if len(addrs) < want {
		cmd.Wait()
		t.Fatalf("port-forward ended before forwarding:\n%s", log.String())
	}
	rest := make(chan string, 1)
	go func() { b, _ := io.ReadAll(stderr); rest <- string(b) }()
	return addrs, func() kwarpResult {
		cmd.Process.Signal(syscall.SIGINT)
		err := cmd.Wait()
		r := kwarpResult{stderr: log.String() + <-rest}
		if ee, ok := err.(*exec.ExitError); ok {
			r.code = ee.ExitCode()
		}
		return r
	}
}

// TestPortForward forwards local ports to a Service by name, to a pod IP, and to UDP —
// addresses kubectl port-forward cannot reach, since it only forwards the pod's own ports.
func TestPortForward(t *testing.T) {
	ctx := kube.Context(t, 4*time.Minute)
	w := newOutgoingWorld(t, ctx, "pf")
	addrs, stop := startForward(t, ctx, "-n", w.ns, "-t", "deploy/sample",
		"-L", "0:echo:7000", "-L", "0:"+w.echoPodIP+":7000", "-L", "0:echo:7001/udp")
	for i, a := range addrs[:2] {
		out, err := testenv.Laptop.Command(ctx, testenv.Tool("probe"), "tcp", a, "hello").CombinedOutput()
		if err != nil || !strings.Contains(string(out), w.echoPod) {
			t.Errorf("forward %d (%s): %q, %v; want the echo pod's banner", i, a, out, err)
		}
	}
	out, err := testenv.Laptop.Command(ctx, testenv.Tool("probe"), "udp", addrs[2], "ping").CombinedOutput()
	if err != nil || !strings.Contains(string(out), w.echoPod+" ping") {
		t.Errorf("udp forward: %q, %v", out, err)
	}
	if r := stop(); r.code != 0 {
		t.Fatalf("port-forward after SIGINT: %s", r)
	}
}

// TestOutgoingAgentLost deletes the agent pod mid-session: kwarp stops the command and exits
// 3 within seconds, saying the agent was lost.
func TestOutgoingAgentLost(t *testing.T) {
	ctx := kube.Context(t, 4*time.Minute)
	w := newOutgoingWorld(t, ctx, "lost")
	cmd := testenv.Laptop.Command(ctx, testenv.KwarpBinary(t), "exec", "-n", w.ns, "-t", "deploy/sample", "--",
		"sh", "-c", "cat /etc/hostname; exec sleep 120")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 256)
	if n, err := stdout.Read(buf); err != nil || !strings.HasPrefix(string(buf[:n]), "sample-") {
		t.Fatalf("first output %q, %v", buf[:n], err)
	}
	pods, err := testenv.Env.PodsOf(ctx, w.ns, "app.kubernetes.io/name=kwarp-agent")
	if err != nil || len(pods) != 1 {
		t.Fatalf("agent pods: %v, %v", pods, err)
	}
	zero := int64(0)
	if err := testenv.Env.Client.CoreV1().Pods(w.ns).Delete(ctx, pods[0].Name, metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
		t.Fatal(err)
	}
	deleted := time.Now()
	done := make(chan error, 1)
	go func() { io.Copy(io.Discard, stdout); done <- cmd.Wait() }()
	select {
	case err := <-done:
		ee, ok := err.(*exec.ExitError)
		if !ok || ee.ExitCode() != 3 || !strings.Contains(stderr.String(), "lost the agent") {
			t.Fatalf("after the agent pod was deleted: %v\nstderr:\n%s", err, stderr.String())
		}
		t.Logf("kwarp exited %s after the agent pod was deleted", time.Since(deleted).Round(time.Millisecond))
	case <-time.After(15 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("kwarp still running 15s after its agent was deleted\nstderr:\n%s", stderr.String())
	}
}
