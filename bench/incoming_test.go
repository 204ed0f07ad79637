package bench

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kwarp-dev/kwarp/test/cluster"
	"github.com/kwarp-dev/kwarp/test/testenv"
	"github.com/kwarp-dev/kwarp/test/workloads"
)

// Loads of BenchmarkIncoming. The whole benchmark stays within about three minutes.
const (
	inConc      = 8               // concurrent keep-alive clients of the steal figures
	inDuration  = 8 * time.Second // per sample
	inSamples   = 2               // samples of each side of the steal figures
	mirrorRate  = 2000            // requests per second of the mirror figure…
	mirrorConc  = 32              // …from this many clients (paced: a slow answer skips a beat)…
	mirrorFor   = 30 * time.Second
	setupRate   = 200 // requests per second sent while the steal is set up
	benchHeader = "x-kwarp-bench"
	localPort   = 8080
)

// BenchmarkIncoming measures the pod's incoming traffic taken by a session: an HTTP-filtered
// steal (matched and unmatched requests), a mirror at a steady 2,000 requests per second, and
// how long a steal takes from the local listen to the first stolen request. The load comes
// from test/workloads' probe in a client pod next to the bench pod (httpecho on 8080), the
// target; the local server is httpecho on the laptop. See the package doc for the figures.
func BenchmarkIncoming(b *testing.B) {
	f := newFixture(b)
	in := newIncoming(b, f)
	b.Run("steal-filtered", in.filtered)
	b.Run("mirror-2000rps", in.mirror)
	b.Run("steal-setup", in.setup)
}

type incoming struct {
	*fixture
	podIP    string
	httpecho string // the local server, static
}

func newIncoming(b *testing.B, f *fixture) *incoming {
	b.Helper()
	m, err := workloads.Manifest("client")
	if err != nil {
		b.Fatal(err)
	}
	objs, err := testenv.Env.Apply(f.ctx, f.ns, m)
	if err != nil {
		b.Fatalf("apply client: %v", err)
	}
	if err := testenv.Env.WaitReady(f.ctx, f.ns, objs...); err != nil {
		b.Fatalf("client not ready: %v", err)
	}
	pod, err := testenv.Env.Client.CoreV1().Pods(f.ns).Get(f.ctx, f.pod, metav1.GetOptions{})
	if err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	out, err := cluster.BuildStatic(f.ctx, workloads.PackagePath("httpecho"), dir)
	if err != nil {
		b.Fatal(err)
	}
	return &incoming{fixture: f, podIP: pod.Status.PodIP, httpecho: out}
}

// loadResult is what probe load prints.
type loadResult struct {
	requests, errors int
	rps, p50, p99    float64
}

func parseLoad(b *testing.B, out string) loadResult {
	b.Helper()
	var r loadResult
	for _, l := range strings.Split(out, "\n") {
		k, v, ok := strings.Cut(l, " ")
		if !ok {
			continue
		}
		x, _ := strconv.ParseFloat(v, 64)
		switch k {
		case "requests":
			r.requests = int(x)
		case "errors":
			r.errors = int(x)
		case "rps":
			r.rps = x
		case "p50-ms":
			r.p50 = x
		case "p99-ms":
			r.p99 = x
		}
	}
	if r.requests == 0 {
		b.Fatalf("probe load: %s", out)
	}
	return r
}

// loadFromClient runs probe load in the client pod.
func (in *incoming) loadFromClient(b *testing.B, args ...string) loadResult {
	b.Helper()
	out, errOut, err := testenv.Env.Exec(in.ctx, in.ns, "client", "", append([]string{"/probe", "load"}, args...), nil)
	if err != nil {
		b.Fatalf("probe load %v: %v\n%s%s", args, err, out, errOut)
	}
	return parseLoad(b, out)
}

// loadOnLaptop runs probe load on the laptop, next to the local server: the baseline of a
// request straight to it (the node cannot reach the laptop: only the API server is let through).
func (in *incoming) loadOnLaptop(b *testing.B, args ...string) loadResult {
	b.Helper()
	out, _ := in.laptop(b, "", testenv.Tool("probe"), append([]string{"load"}, args...)...)
	return parseLoad(b, out)
}

// session is a kwarp exec running the local server on the laptop for a figure.
type session struct {
	cmd     *exec.Cmd
	done    chan struct{}
	stdout  *bufio.Scanner
	stderr  strings.Builder
	started time.Time
}

// startSession starts `kwarp exec` of the local httpecho with the policy (may be "") and
// extra flags; it ends when b's figure ends.
func (in *incoming) startSession(b *testing.B, policy string, flags ...string) *session {
	b.Helper()
	dir := b.TempDir()
	args := append([]string{"exec", "-n", in.ns, "-t", "deploy/" + deployName}, flags...)
	if policy != "" {
		path := filepath.Join(dir, "kwarp.hcl")
		if err := os.WriteFile(path, []byte(policy), 0o644); err != nil {
			b.Fatal(err)
		}
		args = append(args, "-f", path)
	}
	args = append(args, "--", in.httpecho, "-name", "local", "-listen", ":"+strconv.Itoa(localPort))
	cmd := testenv.Laptop.Command(context.Background(), testenv.KwarpBinary(b), args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	s := &session{cmd: cmd, done: make(chan struct{})}
	cmd.Stderr = &s.stderr
	pr, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	s.stdout = bufio.NewScanner(pr)
	s.started = time.Now()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	go func() { cmd.Wait(); close(s.done) }()
	b.Cleanup(func() { s.stop() })
	return s
}

func (s *session) stop() {
	select {
	case <-s.done:
		return
	default:
	}
	_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(15 * time.Second):
		_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		<-s.done
	}
}

// listening waits for httpecho's "listening" line and returns when it came.
func (s *session) listening(b *testing.B) time.Time {
	b.Helper()
	lines := make(chan time.Time, 1)
	go func() {
		for s.stdout.Scan() {
			if strings.Contains(s.stdout.Text(), "listening on") {
				select {
				case lines <- time.Now():
				default:
				}
			}
		}
	}()
	select {
	case t := <-lines:
		return t
	case <-s.done:
		b.Fatalf("kwarp ended before the local server listened: %s", s.stderr.String())
	case <-time.After(90 * time.Second):
		b.Fatalf("the local server did not listen within 90s: %s", s.stderr.String())
	}
	return time.Time{}
}

// localCount asks the local server how many requests it recorded.
func (in *incoming) localCount(b *testing.B) int {
	b.Helper()
	out, _ := in.laptop(b, "", testenv.Tool("probe"), "http", fmt.Sprintf("http://127.0.0.1:%d/_count", localPort))
	n, err := strconv.Atoi(strings.TrimSpace(out))
	if err != nil {
		b.Fatalf("local /_count: %q", out)
	}
	return n
}

// waitLocal sends requests with the bench header from the client pod until the local server
// answers one: the steal is in place.
func (in *incoming) waitLocal(b *testing.B, s *session, header bool) {
	b.Helper()
	deadline := time.Now().Add(60 * time.Second)
	args := []string{"/probe", "http"}
	if header {
		args = append(args, "-H", benchHeader+": 1")
	}
	args = append(args, in.url())
	for {
		out, _, _ := testenv.Env.Exec(in.ctx, in.ns, "client", "", args, nil)
		if strings.Contains(out, `"pod": "local"`) || strings.Contains(out, `"pod":"local"`) {
			return
		}
		select {
		case <-s.done:
			b.Fatalf("kwarp ended: %s", s.stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			b.Fatalf("no request reached the local server within a minute; last answer %q", out)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

func (in *incoming) url() string { return fmt.Sprintf("http://%s:8080/bench", in.podIP) }

// filtered: a steal "http" block on the bench header. Matched requests go to the local
// server (vs the same load straight to it from the node); unmatched ones to the deployed app
// (vs the same load with no session).
func (in *incoming) filtered(b *testing.B) {
	load := []string{"-c", strconv.Itoa(inConc), "-d", inDuration.String()}
	withHeader := append(append([]string{}, load...), "-H", benchHeader+": 1")
	var appAlone []loadResult
	for range inSamples {
		appAlone = append(appAlone, in.loadFromClient(b, append(load, in.url())...))
	}
	s := in.startSession(b, fmt.Sprintf("steal \"http\" \"bench\" {\n  port = 8080\n  match {\n    header %q { exact = \"1\" }\n  }\n}\n", benchHeader))
	s.listening(b)
	in.waitLocal(b, s, true)
	var matched, direct, unmatched []loadResult
	for range inSamples {
		matched = append(matched, in.loadFromClient(b, append(withHeader, in.url())...))
		direct = append(direct, in.loadOnLaptop(b, append(load, fmt.Sprintf("http://127.0.0.1:%d/bench", localPort))...))
		unmatched = append(unmatched, in.loadFromClient(b, append(load, in.url())...))
	}
	s.stop()
	med := func(rs []loadResult, f func(loadResult) float64) float64 {
		var xs []float64
		for _, r := range rs {
			xs = append(xs, f(r))
		}
		return median(xs)
	}
	rps := func(r loadResult) float64 { return r.rps }
	p99 := func(r loadResult) float64 { return r.p99 }
	p50 := func(r loadResult) float64 { return r.p50 }
	b.Run("matched-rps", func(b *testing.B) {
		figure{kwarpUnit: "req/s-matched", baseUnit: "req/s-direct", ratioUnit: "x-matched-vs-direct", goal: "≥ 0.8",
			met: func(r float64) bool { return r >= 0.8 }}.report(b, med(matched, rps), med(direct, rps))
		b.Logf("matched p50 %.2f ms p99 %.2f ms; direct p50 %.2f ms p99 %.2f ms",
			med(matched, p50), med(matched, p99), med(direct, p50), med(direct, p99))
	})
	b.Run("unmatched-rps", func(b *testing.B) {
		figure{kwarpUnit: "req/s-unmatched", baseUnit: "req/s-no-session", ratioUnit: "x-unmatched-vs-no-session", goal: "≥ 0.8",
			met: func(r float64) bool { return r >= 0.8 }}.report(b, med(unmatched, rps), med(appAlone, rps))
	})
	b.Run("unmatched-p99", func(b *testing.B) {
		k, base := med(unmatched, p99), med(appAlone, p99)
		figure{kwarpUnit: "ms-p99-unmatched", baseUnit: "ms-p99-no-session", ratioUnit: "x-p99-vs-no-session"}.report(b, k, base)
		b.ReportMetric(k-base, "ms-p99-added")
		b.Logf("p99 added %.2f ms (goal ≤ +2 ms: %s); p50 %.2f vs %.2f ms", k-base, met(k-base <= 2), med(unmatched, p50), med(appAlone, p50))
	})
}

// mirror: 2,000 requests per second for 30 s under a mirror session; copies that reached the
// local server per request the deployed app answered (goal 1: none lost).
func (in *incoming) mirror(b *testing.B) {
	s := in.startSession(b, "")
	s.listening(b)
	// mirrored requests are answered by the app: wait until a copy arrives
	deadline := time.Now().Add(60 * time.Second)
	for in.localCount(b) == 0 {
		testenv.Env.Exec(in.ctx, in.ns, "client", "", []string{"/probe", "http", in.url()}, nil)
		if time.Now().After(deadline) {
			b.Fatalf("no mirrored copy within a minute: %s", s.stderr.String())
		}
		time.Sleep(300 * time.Millisecond)
	}
	before := in.localCount(b)
	r := in.loadFromClient(b, "-c", strconv.Itoa(mirrorConc), "-d", mirrorFor.String(), "-rate", strconv.Itoa(mirrorRate), in.url())
	// copies still on their way
	var copies int
	for range 50 {
		copies = in.localCount(b) - before
		if copies >= r.requests+r.errors {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.stop()
	figure{kwarpUnit: "copies", baseUnit: "requests", ratioUnit: "x-copies-vs-requests", goal: "= 1 (none lost)",
		met: func(x float64) bool { return x >= 1 }}.report(b, float64(copies), float64(r.requests))
	b.Logf("mirror: %d requests answered at %.0f req/s (p99 %.2f ms, %d errors), %d copies reached the local server",
		r.requests, r.rps, r.p99, r.errors, copies)
}

// setup: a whole-port steal; from the local server's listen to the first stolen request,
// while the client pod sends 200 requests per second, vs one stolen request's round trip.
func (in *incoming) setup(b *testing.B) {
	type bg struct {
		out string
		err error
	}
	loadDone := make(chan bg, 1)
	go func() {
		out, errOut, err := testenv.Env.Exec(in.ctx, in.ns, "client", "", []string{"/probe", "load", "-c", "2", "-d", "20s",
			"-rate", strconv.Itoa(setupRate), in.url()}, nil)
		loadDone <- bg{out + errOut, err}
	}()
	s := in.startSession(b, "", "--steal")
	listened := s.listening(b)
	var first time.Time
	deadline := time.Now().Add(30 * time.Second)
	for {
		if in.localCount(b) > 0 {
			first = time.Now()
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("no stolen request within 30s of the listen: %s", s.stderr.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	r := in.loadFromClient(b, "-c", "1", "-d", "3s", in.url())
	s.stop()
	setup := first.Sub(listened)
	figure{kwarpUnit: "ms-listen-to-first-request", baseUnit: "ms-stolen-request-p50", ratioUnit: "x-setup-vs-request"}.report(b,
		float64(setup.Microseconds())/1000, r.p50)
	<-loadDone
}
