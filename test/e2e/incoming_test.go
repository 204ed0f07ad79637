package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kwarp-dev/kwarp/internal/syncbuf"
	"github.com/kwarp-dev/kwarp/test/kube"
	"github.com/kwarp-dev/kwarp/test/testenv"
	"github.com/kwarp-dev/kwarp/test/workloads/httpecho/server"
)

// incomingWorld is a namespace with the sample app as the target and a client pod that sends
// the pod's incoming traffic: requests to the sample pod's IP and to its Service, from inside
// the cluster as real clients would.
type incomingWorld struct {
	ns, pod, podIP string
	clientIP       string
}

func newIncomingWorld(t *testing.T, ctx context.Context, prefix string) incomingWorld {
	t.Helper()
	ns := deploy(t, ctx, prefix, "sample", "client")
	waitServiceNames(t, ctx, ns, "sample")
	sample, err := testenv.Env.RunningPodOf(ctx, ns, "sample")
	if err != nil {
		t.Fatal(err)
	}
	client, err := testenv.Env.Client.CoreV1().Pods(ns).Get(ctx, "client", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return incomingWorld{ns: ns, pod: sample.Name, podIP: sample.Status.PodIP, clientIP: client.Status.PodIP}
}

// fromClient runs probe in the client pod.
func (w incomingWorld) fromClient(ctx context.Context, args ...string) (string, error) {
	out, errOut, err := testenv.Env.Exec(ctx, w.ns, "client", "", append([]string{"/probe"}, args...), nil)
	return out + errOut, err
}

// url is the sample pod's own address (port 8080) or its Service's (port 80).
func (w incomingWorld) url(viaService bool, path string) string {
	if viaService {
		return "http://sample." + w.ns + ".svc.cluster.local" + path
	}
	return "http://" + w.podIP + ":8080" + path
}

// appReceived asks the deployed app, from inside its own container (a local connection that
// no steal redirects), which request paths reached it.
func (w incomingWorld) appReceived(t *testing.T, ctx context.Context) string {
	t.Helper()
	out, errOut, err := testenv.Env.Exec(ctx, w.ns, w.pod, "app", []string{"/probe", "http", "http://127.0.0.1:8080/_received"}, nil)
	if err != nil {
		t.Fatalf("ask the app what it received: %v %s", err, errOut)
	}
	return out
}

// waitFor sends the probe from the client pod until check accepts its output.
func (w incomingWorld) waitFor(t *testing.T, ctx context.Context, within time.Duration, what string, check func(string) bool, args ...string) string {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		out, _ := w.fromClient(ctx, args...)
		if check(out) {
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: after %s the answer is still %q", what, within, out)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// appPID is the pid, on the node, of the sample pod's app process: its environment names the
// pod. Through it the test reads the pod's network namespace.
func (w incomingWorld) appPID(t *testing.T) int {
	t.Helper()
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, _ := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if !strings.HasPrefix(string(cmdline), "/httpecho\x00") {
			continue
		}
		env, _ := os.ReadFile("/proc/" + e.Name() + "/environ")
		if bytes.Contains(env, []byte("\x00POD_NAME="+w.pod+"\x00")) || bytes.HasPrefix(env, []byte("POD_NAME="+w.pod+"\x00")) {
			return pid
		}
	}
	t.Fatalf("no app process of pod %s on the node", w.pod)
	return 0
}

// natRules lists the nat rules of the pod's network namespace, both backends, one per line.
func natRules(t *testing.T, pid int) []string {
	t.Helper()
	var rules []string
	for _, save := range []string{"iptables-nft-save", "iptables-legacy-save"} {
		out, err := exec.Command("nsenter", "-t", strconv.Itoa(pid), "-n", save, "-t", "nat").Output()
		if err != nil {
			continue // a backend this node lacks
		}
		for _, l := range strings.Split(string(out), "\n") {
			if strings.HasPrefix(l, "-A ") || strings.HasPrefix(l, ":") {
				rules = append(rules, save+" "+l)
			}
		}
	}
	return rules
}

func ours(rules []string) []string {
	var out []string
	for _, r := range rules {
		if strings.Contains(r, "kwarp") || strings.Contains(r, "KWARP") {
			out = append(out, r)
		}
	}
	return out
}

// waitNoRulesOfOurs waits until the pod's namespace has no rule of kwarp's and its rules are
// the ones it had before.
func waitNoRulesOfOurs(t *testing.T, pid int, before []string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		now := natRules(t, pid)
		if len(ours(now)) == 0 && len(now) == len(before) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s after the session ended the pod's nat rules are\n%s\nwant as before:\n%s", within,
				strings.Join(now, "\n"), strings.Join(before, "\n"))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// bgKwarp is a kwarp session running on the laptop while the test sends traffic.
type bgKwarp struct {
	cmd            *exec.Cmd
	stdout, stderr *syncbuf.Buffer
	done           chan struct{}
	err            error
}

func startKwarp(t *testing.T, ctx context.Context, dir string, args ...string) *bgKwarp {
	t.Helper()
	cmd := testenv.Laptop.Command(ctx, testenv.KwarpBinary(t), args...)
	cmd.Dir = dir
	k := &bgKwarp{cmd: cmd, stdout: &syncbuf.Buffer{}, stderr: &syncbuf.Buffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = k.stdout, k.stderr
	// kwarp's own process group: a signal for it does not reach the test
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { k.err = cmd.Wait(); close(k.done) }()
	t.Cleanup(func() { k.stop(syscall.SIGKILL) })
	return k
}

func (k *bgKwarp) exited() bool {
	select {
	case <-k.done:
		return true
	default:
		return false
	}
}

// stop sends sig to kwarp's process group (kwarp, its plugins and the command, as a terminal's
// Ctrl-C does with SIGINT) and waits for kwarp to exit.
func (k *bgKwarp) stop(sig syscall.Signal) kwarpResult {
	if !k.exited() {
		_ = syscall.Kill(-k.cmd.Process.Pid, sig)
	}
	select {
	case <-k.done:
	case <-time.After(20 * time.Second):
		_ = syscall.Kill(-k.cmd.Process.Pid, syscall.SIGKILL)
		<-k.done
	}
	r := kwarpResult{stdout: k.stdout.String(), stderr: k.stderr.String()}
	if ee, ok := k.err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	}
	return r
}

func (k *bgKwarp) String() string {
	return "stdout: " + k.stdout.String() + "\nstderr: " + k.stderr.String()
}

// httpechoLocal is the command line of a local stand-in for the app: the static Go server the
// deployed container runs, under another name.
func httpechoLocal(name string, port int) []string {
	return []string{testenv.Tool("httpecho"), "-name", name, "-listen", ":" + strconv.Itoa(port)}
}

func writePolicy(t *testing.T, body string) (dir, path string) {
	t.Helper()
	dir = t.TempDir()
	path = filepath.Join(dir, "kwarp.hcl")
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir, path
}

// TestStealWholePort: with --steal, a Python http.server on the laptop takes every request to
// the pod's port, by pod IP and through the Service, and the deployed app gets none; after
// the session ends the app serves again and the pod's nat rules are as before.
func TestStealWholePort(t *testing.T) {
	ctx := kube.Context(t, 4*time.Minute)
	w := newIncomingWorld(t, ctx, "stealall")
	pid := w.appPID(t)
	before := natRules(t, pid)
	if len(ours(before)) > 0 {
		t.Fatalf("rules of kwarp before any session: %v", ours(before))
	}
	dir := t.TempDir()
	marker := "stolen-by-python-" + w.ns
	if err := os.WriteFile(filepath.Join(dir, "marker.txt"), []byte(marker), 0o644); err != nil {
		t.Fatal(err)
	}
	k := startKwarp(t, ctx, dir, "exec", "-n", w.ns, "-t", "deploy/sample", "--steal", "--",
		"python3", "-u", "-m", "http.server", "8080", "--bind", "0.0.0.0")
	has := func(s string) func(string) bool { return func(out string) bool { return strings.Contains(out, s) } }
	w.waitFor(t, ctx, 30*time.Second, "steal by pod IP", has(marker), "http", w.url(false, "/marker.txt"))
	if k.exited() {
		t.Fatalf("kwarp exited: %s", k)
	}
	// the requests before the steal was in place reached the app: forget them
	if _, errOut, err := testenv.Env.Exec(ctx, w.ns, w.pod, "app", []string{"/probe", "http", "-X", "DELETE", "http://127.0.0.1:8080/_received"}, nil); err != nil {
		t.Fatalf("clear the app's record: %v %s", err, errOut)
	}
	for i := range 5 {
		out, err := w.fromClient(ctx, "http", w.url(i%2 == 0, fmt.Sprintf("/marker.txt?n=%d", i)))
		if err != nil || !strings.Contains(out, marker) {
			t.Errorf("request %d: %q %v; want the local server's file", i, out, err)
		}
	}
	if got := w.appReceived(t, ctx); strings.Contains(got, "marker.txt") {
		t.Errorf("the deployed app received stolen requests: %s", got)
	}
	if len(ours(natRules(t, pid))) == 0 {
		t.Error("no rule of kwarp in the pod's namespace while stealing")
	}
	stopped := time.Now()
	r := k.stop(syscall.SIGINT)
	r.took = time.Since(stopped)
	// http.server exits 0 on Ctrl-C ("Keyboard interrupt received"), and so does kwarp
	if r.code != 0 {
		t.Errorf("after Ctrl-C: %s", r)
	}
	w.waitFor(t, ctx, 15*time.Second, "the app after the session", func(out string) bool { return answeredBy(out, w.pod) },
		"http", w.url(false, "/after"))
	waitNoRulesOfOurs(t, pid, before, 15*time.Second)
}

// TestStealFiltered: steal "http" blocks by header, path and method send the matching
// requests to a static Go server on the laptop and every other request to the deployed app,
// through the pod IP and the Service, HTTP/1.1 and h2c.
func TestStealFiltered(t *testing.T) {
	ctx := kube.Context(t, 4*time.Minute)
	w := newIncomingWorld(t, ctx, "stealhttp")
	dir, policy := writePolicy(t, `
steal "http" "by-header" {
  port = 8080
  match {
    header "x-kwarp-user" { exact = "alice" }
  }
}
steal "http" "by-path-and-method" {
  port = 8080
  match {
    path { prefix = "/api/v2/" }
    method = ["POST"]
  }
}
steal "http" "nothing-there" {
  port = 9999
}
`)
	k := startKwarp(t, ctx, dir, append([]string{"exec", "-n", w.ns, "-t", "deploy/sample", "-f", policy, "--"},
		httpechoLocal("local-alice", 8080)...)...)
	local := func(out string) bool { return answeredBy(out, "local-alice") }
	w.waitFor(t, ctx, 30*time.Second, "header match", local, "http", "-H", "x-kwarp-user: alice", w.url(false, "/h"))
	tests := []struct {
		name  string
		args  []string
		local bool
	}{
		{"header matches", []string{"-H", "x-kwarp-user: alice"}, true},
		{"header differs", []string{"-H", "x-kwarp-user: bob"}, false},
		{"no header", nil, false},
		{"path and method match", []string{"-X", "POST", "-d", "x"}, true},
		{"path matches, method does not", []string{"-X", "GET"}, false},
		{"h2c, header matches", []string{"-h2c", "-H", "x-kwarp-user: alice"}, true},
		{"h2c, no header", []string{"-h2c"}, false},
	}
	for _, tt := range tests {
		for _, viaService := range []bool{false, true} {
			path := "/other"
			if strings.Contains(tt.name, "path") {
				path = "/api/v2/orders"
			}
			args := append(append([]string{"http"}, tt.args...), w.url(viaService, path))
			out, err := w.fromClient(ctx, args...)
			want := w.pod
			if tt.local {
				want = "local-alice"
			}
			if err != nil || !answeredBy(out, want) {
				t.Errorf("%s (service %v): %q %v; want an answer from %s", tt.name, viaService, out, err, want)
			}
			// the local server's accept named the pod's client, not kwarp's socket
			if tt.local && !regexp.MustCompile(`"remote_addr":\s*"`+regexp.QuoteMeta(w.clientIP)+`:\d+"`).MatchString(out) {
				t.Errorf("%s (service %v): the local server saw the request from %.200q; want the client pod %s", tt.name, viaService, out, w.clientIP)
			}
		}
	}

	// gRPC over h2c, WebSocket, an h2c upgrade and a large chunked body, each with and
	// without the header
	hostPort := func(viaService bool) string {
		if viaService {
			return "sample." + w.ns + ".svc.cluster.local:80"
		}
		return w.podIP + ":8080"
	}
	const bodySize = 5 << 20
	for _, alice := range []bool{true, false} {
		want, hdr := w.pod, []string{}
		if alice {
			want, hdr = "local-alice", []string{"-H", "x-kwarp-user: alice"}
		}
		for _, viaService := range []bool{false, true} {
			name := fmt.Sprintf("(alice %v, service %v)", alice, viaService)
			out, err := w.fromClient(ctx, append(append([]string{"grpc"}, hdr...), hostPort(viaService))...)
			if err != nil || !strings.Contains(out, "SERVING served-by="+want) {
				t.Errorf("gRPC %s: %q %v; want SERVING from %s", name, out, err, want)
			}
			wsURL := "ws://" + hostPort(viaService) + server.WSPath
			out, err = w.fromClient(ctx, append(append([]string{"ws"}, hdr...), wsURL, "one", "two")...)
			if err != nil || out != want+": one\n"+want+": two\n" {
				t.Errorf("WebSocket %s: %q %v; want both messages answered by %s", name, out, err, want)
			}
			out, err = w.fromClient(ctx, append(append([]string{"http", "-h2c-upgrade"}, hdr...), w.url(viaService, "/up"))...)
			if err != nil || !answeredBy(out, want) {
				t.Errorf("h2c upgrade %s: %q %v; want an answer from %s", name, out, err, want)
			}
			out, err = w.fromClient(ctx, append(append([]string{"http", "-timeout", "30s", "-body-size", strconv.Itoa(bodySize), "-chunked"}, hdr...), w.url(viaService, "/big"))...)
			if err != nil || !answeredBy(out, want) || !strings.Contains(out, server.GeneratedSHA256(bodySize)) {
				t.Errorf("chunked 5 MiB body %s: %.300q %v; want it whole at %s", name, out, err, want)
			}
		}
	}
	// bytes that are not HTTP reach the app untouched: it decides (Go's server says 400)
	out, _ := w.fromClient(ctx, "tcp", "-timeout", "3s", w.podIP+":8080", "NOT HTTP AT ALL")
	if !strings.Contains(out, "400 Bad Request") {
		t.Errorf("malformed request on the filtered port: %q; want the app's 400", out)
	}
	if k.exited() {
		t.Fatalf("kwarp exited: %s", k)
	}
	k.stop(syscall.SIGINT)
	// the steal on a port the pod does not serve was warned about, naming the pod's ports
	if msg := k.stderr.String(); !strings.Contains(msg, "port 9999: the pod does not listen on it (it listens on") || !strings.Contains(msg, "8080") {
		t.Errorf("no warning naming the pod's ports for port 9999:\n%s", msg)
	}
}

// TestStealTwoDevelopers: two sessions on one workload, each with its own header filter and
// its own local port (port_mapping), get only their own requests; the rest reach the
// deployed app; a third session whose filter overlaps the first's is refused at start with a
// message that names the holder.
func TestStealTwoDevelopers(t *testing.T) {
	ctx := kube.Context(t, 5*time.Minute)
	w := newIncomingWorld(t, ctx, "stealtwo")
	pid := w.appPID(t)
	before := natRules(t, pid)
	dev := func(user string, localPort int, match string) *bgKwarp {
		dir, policy := writePolicy(t, fmt.Sprintf(`
agent {
  ttl = "2s"
}
network {
  incoming {
    port_mapping = { "8080" = %d }
  }
}
steal "http" "%s" {
  port = 8080
  match {
    %s
  }
}
`, localPort, user, match))
		return startKwarp(t, ctx, dir, append([]string{"exec", "-n", w.ns, "-t", "deploy/sample", "-f", policy, "--"},
			httpechoLocal("local-"+user, localPort)...)...)
	}
	alice := dev("alice", 18081, `header "x-kwarp-user" { exact = "alice" }`)
	who := func(name string) func(string) bool { return func(out string) bool { return answeredBy(out, name) } }
	w.waitFor(t, ctx, 30*time.Second, "alice's request", who("local-alice"), "http", "-H", "x-kwarp-user: alice", w.url(false, "/a"))
	bob := dev("bob", 18082, `header "x-kwarp-user" { exact = "bob" }`)
	w.waitFor(t, ctx, 30*time.Second, "bob's request", who("local-bob"), "http", "-H", "x-kwarp-user: bob", w.url(false, "/b"))
	for _, c := range []struct{ header, want string }{
		{"alice", "local-alice"}, {"bob", "local-bob"}, {"carol", w.pod}, {"", w.pod},
	} {
		args := []string{"http"}
		if c.header != "" {
			args = append(args, "-H", "x-kwarp-user: "+c.header)
		}
		for _, viaService := range []bool{false, true} {
			out, err := w.fromClient(ctx, append(args, w.url(viaService, "/two"))...)
			if err != nil || !answeredBy(out, c.want) {
				t.Errorf("x-kwarp-user %q (service %v): %q %v; want %s", c.header, viaService, out, err, c.want)
			}
		}
	}

	// an overlapping filter: refused before its command runs
	dir, policy := writePolicy(t, `
steal "http" "greedy" {
  port = 8080
  match {
    header "x-kwarp-user" { regex = "^al" }
  }
}
`)
	r := kwarpOnLaptopIn(t, ctx, dir, nil, "exec", "-n", w.ns, "-t", "deploy/sample", "-f", policy, "--", "echo", "ran")
	if r.code != 3 || strings.Contains(r.stdout, "ran") {
		t.Errorf("overlapping filter: %s; want exit 3 before the command ran", r)
	}
	for _, s := range []string{"greedy", "alice", "8080"} {
		if !strings.Contains(r.stderr, s) {
			t.Errorf("the refusal does not name %q: %s", s, r.stderr)
		}
	}
	if alice.exited() || bob.exited() {
		t.Fatalf("a session exited:\nalice %s\nbob %s", alice, bob)
	}
	// bob leaves normally; alice's kwarp is killed: both ports go back to the app
	bob.stop(syscall.SIGINT)
	w.waitFor(t, ctx, 15*time.Second, "bob's requests after bob left", who(w.pod), "http", "-H", "x-kwarp-user: bob", w.url(false, "/b2"))
	if out, err := w.fromClient(ctx, "http", "-H", "x-kwarp-user: alice", w.url(false, "/a2")); err != nil || !answeredBy(out, "local-alice") {
		t.Errorf("alice's request after bob left: %q %v", out, err)
	}
	if err := syscall.Kill(alice.cmd.Process.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	w.waitFor(t, ctx, 30*time.Second, "alice's requests after her kwarp was killed", who(w.pod), "http", "-H", "x-kwarp-user: alice", w.url(false, "/a3"))
	waitNoRulesOfOurs(t, pid, before, 30*time.Second)
	waitNoAgent(t, ctx, w.ns, 60*time.Second)
}

// TestMirror: by default the local server gets a copy of each request while the deployed app
// answers the client.
func TestMirror(t *testing.T) {
	ctx := kube.Context(t, 4*time.Minute)
	w := newIncomingWorld(t, ctx, "mirror")
	k := startKwarp(t, ctx, "", append([]string{"exec", "-n", w.ns, "-t", "deploy/sample", "--"}, httpechoLocal("local-mirror", 8080)...)...)
	received := func() string {
		out, _ := testenv.Laptop.Command(ctx, testenv.Tool("probe"), "http", "http://127.0.0.1:8080/_received").CombinedOutput()
		return string(out)
	}
	deadline := time.Now().Add(30 * time.Second)
	for i := 0; ; i++ {
		path := fmt.Sprintf("/mirrored-%d", i)
		out, err := w.fromClient(ctx, "http", w.url(i%2 == 1, path))
		if err != nil || !answeredBy(out, w.pod) {
			t.Fatalf("request %d under mirror: %q %v; want the deployed app's answer", i, out, err)
		}
		if strings.Contains(received(), path) {
			break
		}
		if time.Now().After(deadline) || k.exited() {
			t.Fatalf("no copy reached the local server: %s\n%s", received(), k)
		}
		time.Sleep(300 * time.Millisecond)
	}
	// once mirroring, every request is copied
	var paths []string
	for i := range 10 {
		p := fmt.Sprintf("/copy-%d", i)
		paths = append(paths, p)
		if out, err := w.fromClient(ctx, "http", w.url(false, p)); err != nil || !answeredBy(out, w.pod) {
			t.Errorf("request %s: %q %v", p, out, err)
		}
	}
	time.Sleep(500 * time.Millisecond)
	got := received()
	for _, p := range paths {
		if !strings.Contains(got, p) {
			t.Errorf("no copy of %s reached the local server", p)
		}
	}

	// a second developer mirrors the same port into a Python http.server on another local
	// port: both get every copy, the app still answers
	dir, policy := writePolicy(t, `
network {
  incoming {
    port_mapping = { "8080" = 18090 }
  }
}
`)
	py := startKwarp(t, ctx, dir, "exec", "-n", w.ns, "-t", "deploy/sample", "-f", policy, "--",
		"python3", "-u", "-m", "http.server", "18090", "--bind", "0.0.0.0")
	deadline = time.Now().Add(30 * time.Second)
	for i := 0; !strings.Contains(py.stderr.String(), "/py-"); i++ {
		if out, err := w.fromClient(ctx, "http", w.url(false, fmt.Sprintf("/py-%d", i))); err != nil || !answeredBy(out, w.pod) {
			t.Fatalf("request under two mirrors: %q %v", out, err)
		}
		if time.Now().After(deadline) || py.exited() {
			t.Fatalf("no copy reached the Python server: %s", py)
		}
		time.Sleep(300 * time.Millisecond)
	}
	if out, err := w.fromClient(ctx, "http", w.url(true, "/both")); err != nil || !answeredBy(out, w.pod) {
		t.Fatalf("request under two mirrors: %q %v", out, err)
	}
	deadline = time.Now().Add(5 * time.Second)
	for !strings.Contains(py.stderr.String(), "GET /both ") || !strings.Contains(received(), "/both") {
		if time.Now().After(deadline) {
			t.Fatalf("the copy of /both did not reach both mirrors:\npython: %s\ngo: %s", py.stderr.String(), received())
		}
		time.Sleep(100 * time.Millisecond)
	}
	py.stop(syscall.SIGINT)
	k.stop(syscall.SIGINT)
}

// TestStealLocalProcessGoesAway: under a whole-port steal, a local server that stops listening
// (and keeps running) gives the port back to the deployed app at once; under a filtered steal,
// a local server that dies with a request in flight makes that request fail cleanly (a 502
// from the agent, never a hang), and the next ones reach the app.
func TestStealLocalProcessGoesAway(t *testing.T) {
	ctx := kube.Context(t, 4*time.Minute)
	w := newIncomingWorld(t, ctx, "stealgone")
	app := func(out string) bool { return answeredBy(out, w.pod) }

	// serves one request, closes its listener, lives on
	const once = `import socket, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 8080)); s.listen(16)
c, _ = s.accept(); c.recv(65536)
c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\nConnection: close\r\n\r\nlocal-once")
c.close(); s.close()
print("closed", flush=True)
time.sleep(120)
`
	k := startKwarp(t, ctx, "", "exec", "-n", w.ns, "-t", "deploy/sample", "--steal", "--", "python3", "-c", once)
	w.waitFor(t, ctx, 30*time.Second, "the one stolen request", func(out string) bool { return strings.Contains(out, "local-once") },
		"http", w.url(false, "/once"))
	start := time.Now()
	for i := range 5 {
		out, err := w.fromClient(ctx, "http", w.url(i%2 == 1, "/after-close"))
		if err != nil || !app(out) {
			t.Errorf("request %d after the local listener closed: %q %v; want the app", i, out, err)
		}
	}
	t.Logf("5 requests after the local listener closed took %s", time.Since(start).Round(time.Millisecond))
	if k.exited() {
		t.Errorf("kwarp ended although its command runs: %s", k)
	}
	k.stop(syscall.SIGKILL)

	// reads a request and dies without answering
	const dies = `import socket, os
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 8080)); s.listen(16)
print("listening", flush=True)
c, _ = s.accept(); c.recv(65536)
os._exit(3)
`
	dir, policy := writePolicy(t, `
steal "http" "mine" {
  port = 8080
  match {
    header "x-kwarp-user" { exact = "dies" }
  }
}
`)
	k = startKwarp(t, ctx, dir, "exec", "-n", w.ns, "-t", "deploy/sample", "-f", policy, "--", "python3", "-c", dies)
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(k.stdout.String(), "listening") {
		if time.Now().After(deadline) || k.exited() {
			t.Fatalf("the local server did not listen: %s", k)
		}
		time.Sleep(100 * time.Millisecond)
	}
	sent := time.Now()
	out, err := w.fromClient(ctx, "http", "-timeout", "20s", "-H", "x-kwarp-user: dies", w.url(false, "/in-flight"))
	took := time.Since(sent)
	if err == nil || took > 15*time.Second || !strings.Contains(out, "502") && !strings.Contains(out, "EOF") && !strings.Contains(out, "reset") {
		t.Errorf("the request in flight when the local server died: %q %v after %s; want a 502 or a closed connection, at once", out, err, took)
	}
	t.Logf("the request in flight ended after %s: %q", took.Round(time.Millisecond), out)
	r := k.stop(syscall.SIGINT)
	if r.code != 3 {
		t.Errorf("kwarp's exit status %d, want the command's 3", r.code)
	}
	w.waitFor(t, ctx, 15*time.Second, "the header's requests after the session", app, "http", "-H", "x-kwarp-user: dies", w.url(false, "/after"))
}

// agentPIDs are the node's pids of the agents serving namespace ns: the agent processes
// proper, not their containers' first processes (which supervise them) nor their netfilter
// guards.
func agentPIDs(t *testing.T, ns string) []int {
	t.Helper()
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, _ := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		args := strings.Split(string(b), "\x00")
		env, _ := os.ReadFile("/proc/" + e.Name() + "/environ")
		if len(args) > 1 && args[0] == "/kwarp-agent" && args[1] != "__netfilter-guard" && slices.Contains(args, "--namespace="+ns) &&
			bytes.Contains(env, []byte("KWARP_AGENT_WORKER=1")) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// TestStealAgentKilled: the agent dies by SIGKILL mid-steal; its guard removes its rules, the
// app serves the port again, and kwarp says it lost the agent (exit 3).
func TestStealAgentKilled(t *testing.T) {
	ctx := kube.Context(t, 4*time.Minute)
	w := newIncomingWorld(t, ctx, "stealkill")
	pid := w.appPID(t)
	before := natRules(t, pid)
	k := startKwarp(t, ctx, "", append([]string{"exec", "-n", w.ns, "-t", "deploy/sample", "--steal", "--"}, httpechoLocal("local-k", 8080)...)...)
	w.waitFor(t, ctx, 30*time.Second, "the steal", func(out string) bool { return answeredBy(out, "local-k") }, "http", w.url(false, "/k"))
	if len(ours(natRules(t, pid))) == 0 {
		t.Fatal("no rule of kwarp while stealing")
	}
	agents := agentPIDs(t, w.ns)
	if len(agents) != 1 {
		t.Fatalf("agent processes of %s: %v, want one", w.ns, agents)
	}
	if err := syscall.Kill(agents[0], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitNoRulesOfOurs(t, pid, before, 10*time.Second)
	w.waitFor(t, ctx, 10*time.Second, "the app after the agent died", func(out string) bool { return answeredBy(out, w.pod) },
		"http", w.url(false, "/after"))
	select {
	case <-k.done:
	case <-time.After(30 * time.Second):
		t.Fatalf("kwarp still running 30s after its agent was killed: %s", k)
	}
	if r := k.stop(syscall.SIGKILL); r.code != 3 || !strings.Contains(r.stderr, "lost the agent") {
		t.Errorf("kwarp after its agent was killed: %s", r)
	}
}

// TestIncomingPlainTCP: mirror and steal are not only for HTTP. The target is the echo server
// (a banner line, then each line echoed); the local process is a line server on the laptop.
// Mirrored, the client talks to the echo pod and the local server gets a copy of its line;
// stolen, the client talks to the local server.
func TestIncomingPlainTCP(t *testing.T) {
	ctx := kube.Context(t, 4*time.Minute)
	ns := deploy(t, ctx, "intcp", "echo", "client")
	echo, err := testenv.Env.RunningPodOf(ctx, ns, "echo")
	if err != nil {
		t.Fatal(err)
	}
	addr := echo.Status.PodIP + ":7000"
	send := func(msg string) (string, error) {
		out, errOut, err := testenv.Env.Exec(ctx, ns, "client", "", []string{"/probe", "tcp", "-timeout", "3s", addr, msg}, nil)
		return out + errOut, err
	}
	// a line server: "local <line>" back, and the line on stdout
	const lines = `import socketserver
class H(socketserver.StreamRequestHandler):
    def handle(self):
        self.wfile.write(b"local-banner\n")
        for line in self.rfile:
            print("got", line.decode().strip(), flush=True)
            self.wfile.write(line)
socketserver.ThreadingTCPServer.allow_reuse_address = True
socketserver.ThreadingTCPServer(("0.0.0.0", 7000), H).serve_forever()
`
	for _, mode := range []string{"mirror", "steal"} {
		t.Run(mode, func(t *testing.T) {
			args := []string{"exec", "-n", ns, "-t", "deploy/echo"}
			if mode == "steal" {
				args = append(args, "--steal")
			}
			k := startKwarp(t, ctx, "", append(args, "--", "python3", "-c", lines)...)
			deadline := time.Now().Add(30 * time.Second)
			for i := 0; ; i++ {
				msg := fmt.Sprintf("%s-line-%d", mode, i)
				out, err := send(msg)
				if mode == "mirror" {
					if err != nil || !strings.Contains(out, echo.Name) {
						t.Fatalf("mirrored: %q %v; want the echo pod's banner", out, err)
					}
					if strings.Contains(k.stdout.String(), "got "+msg) {
						break
					}
				} else if err == nil && strings.Contains(out, "local-banner") {
					if strings.Contains(out, echo.Name) || !strings.Contains(k.stdout.String(), "got "+msg) {
						t.Errorf("stolen: %q, local got %q", out, k.stdout.String())
					}
					break
				}
				if time.Now().After(deadline) || k.exited() {
					t.Fatalf("%s of plain TCP did not start: last %q %v\n%s", mode, out, err, k)
				}
				time.Sleep(300 * time.Millisecond)
			}
			k.stop(syscall.SIGKILL)
		})
	}
}

// TestStealWholePortKeepsThePodReady: under a whole-port steal of the port the readiness probe
// asks, the kubelet's probes still reach the deployed app, so the pod stays Ready. The local
// server answers 404 on /healthz: a stolen probe would make the pod NotReady within three
// failed probes (the sample's period is 1 s). In both agent modes: an ephemeral agent learns
// its node's address like a Job's.
func TestStealWholePortKeepsThePodReady(t *testing.T) {
	for _, mode := range []string{"job", "ephemeral"} {
		t.Run(mode, func(t *testing.T) {
			ctx := kube.Context(t, 4*time.Minute)
			w := newIncomingWorld(t, ctx, "stealready-"+mode[:3])
			dir := t.TempDir()
			marker := "stolen-" + w.ns
			if err := os.WriteFile(filepath.Join(dir, "marker.txt"), []byte(marker), 0o644); err != nil {
				t.Fatal(err)
			}
			args := []string{"exec", "-n", w.ns, "-t", "deploy/sample", "--steal"}
			if mode == "ephemeral" {
				args = append(args, "--agent-ephemeral")
			}
			args = append(args, "--", "python3", "-u", "-m", "http.server", "8080", "--bind", "0.0.0.0")
			k := startKwarp(t, ctx, dir, args...)
			w.waitFor(t, ctx, 60*time.Second, "the steal", func(out string) bool { return strings.Contains(out, marker) },
				"http", w.url(false, "/marker.txt"))
			// the local server has no /healthz: a probe it got would fail
			if out, _ := testenv.Laptop.Command(ctx, testenv.Tool("probe"), "http", "http://127.0.0.1:8080/healthz").CombinedOutput(); !strings.Contains(string(out), "404") {
				t.Fatalf("the local server answered /healthz with %q; the test needs it to fail", out)
			}
			for range 8 {
				time.Sleep(time.Second)
				pod, err := testenv.Env.Client.CoreV1().Pods(w.ns).Get(ctx, w.pod, metav1.GetOptions{})
				if err != nil {
					t.Fatal(err)
				}
				for _, c := range pod.Status.Conditions {
					if c.Type == "Ready" && c.Status != "True" {
						t.Fatalf("pod %s became NotReady under the steal (%s): the kubelet's probes were stolen", w.pod, c.Message)
					}
				}
				if k.exited() {
					t.Fatalf("kwarp exited: %s", k)
				}
			}
			// still stolen at the end
			if out, err := w.fromClient(ctx, "http", w.url(false, "/marker.txt")); err != nil || !strings.Contains(out, marker) {
				t.Fatalf("after the wait the pod's traffic no longer reaches the local server: %q %v", out, err)
			}
		})
	}
}
