package bench

import (
	"bufio"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kwarp-dev/kwarp/test/testenv"
	"github.com/kwarp-dev/kwarp/test/workloads"
)

// Sample sizes of BenchmarkOutgoing, per round (b.N). The whole benchmark must stay within
// about two minutes on a two-core machine.
const (
	bulkIters    = 5        // samples of each side of tcp-bulk
	outIters     = 3        // samples of each side of http and dns
	bulkBytes    = 64 << 20 // bytes streamed through the echo server (and back) per sample
	httpConc     = 8        // concurrent keep-alive connections
	httpRequests = 3000     // requests per sample
	dnsLookups   = 200      // lookups per sample
	connSamples  = 5        // samples of each side of short-conns…
	connsPer     = 200      // …of this many sequential connections: 1000 in all
)

// BenchmarkOutgoing measures the traffic `kwarp exec` carries from a local process into the
// cluster, and `kwarp port-forward`, against kubectl port-forward to the same server pod (the
// kubectl baseline reaches only the pod's own ports, so it forwards to the server pod's port,
// not to the Service). The servers are test/workloads' "echo" (TCP banner + echo on 7000) and
// "sample" (httpecho on pod port 8080, Service port 80), next to the bench Deployment, which is
// the target. Each sub-benchmark is one figure of the package doc.
func BenchmarkOutgoing(b *testing.B) {
	f := newFixture(b)
	o := newOutgoing(b, f)
	b.Run("tcp-bulk", o.bulk)
	b.Run("http", o.http)
	b.Run("dns", o.dns)
	b.Run("short-conns", o.shortConns)
}

// outgoing is what BenchmarkOutgoing's figures share: the servers, the clients and the
// forwards, which run on the laptop for the whole benchmark.
type outgoing struct {
	*fixture
	netbench string // testdata/netbench, static
	dnsbench string // testdata/dnsbench.c, against glibc; "" when gcc is missing
	// the servers as the laptop reaches them through kwarp port-forward and kubectl
	// port-forward, 127.0.0.1:PORT
	kwarpEcho, kwarpHTTP     string
	kubectlEcho, kubectlHTTP string
}

func newOutgoing(b *testing.B, f *fixture) *outgoing {
	b.Helper()
	pods := map[string]string{}
	for _, name := range []string{"echo", "sample"} {
		m, err := workloads.Manifest(name)
		if err != nil {
			b.Fatal(err)
		}
		objs, err := testenv.Env.Apply(f.ctx, f.ns, m)
		if err != nil {
			b.Fatalf("apply %s: %v", name, err)
		}
		if err := testenv.Env.WaitReady(f.ctx, f.ns, objs...); err != nil {
			testenv.Env.DumpNamespace(b, f.ns)
			b.Fatalf("%s not ready: %v", name, err)
		}
		pod, err := testenv.Env.RunningPodOf(f.ctx, f.ns, name)
		if err != nil {
			b.Fatal(err)
		}
		pods[name] = pod.Name
	}
	o := &outgoing{fixture: f, netbench: buildStatic(b, "netbench")}
	if gcc := lookPath("gcc"); gcc != "" {
		o.dnsbench = filepath.Join(b.TempDir(), "dnsbench")
		if out, err := exec.Command(gcc, "-O2", "-o", o.dnsbench, "testdata/dnsbench.c").CombinedOutput(); err != nil {
			b.Fatalf("build dnsbench: %v\n%s", err, out)
		}
	}
	kw := o.forward(b, regexp.MustCompile(`forwarding (\S+) → `), 2, testenv.KwarpBinary(b),
		"port-forward", "-n", f.ns, "-t", "deploy/"+deployName, "-L", "0:echo:7000", "-L", "0:sample:80")
	o.kwarpEcho, o.kwarpHTTP = kw[0], kw[1]
	kubectlLine := regexp.MustCompile(`Forwarding from (127\.0\.0\.1:\d+) -> `)
	o.kubectlEcho = o.forward(b, kubectlLine, 1, testenv.Cluster.Kubectl(),
		"-n", f.ns, "port-forward", "--address", "127.0.0.1", "pod/"+pods["echo"], ":7000")[0]
	o.kubectlHTTP = o.forward(b, kubectlLine, 1, testenv.Cluster.Kubectl(),
		"-n", f.ns, "port-forward", "--address", "127.0.0.1", "pod/"+pods["sample"], ":8080")[0]
	// one connection through each, and a session, before anything is timed: the agent is up
	// and every forward works
	for _, addr := range []string{o.kwarpEcho, o.kubectlEcho} {
		o.run(b, false, "conns", addr, "1")
	}
	for _, addr := range []string{o.kwarpHTTP, o.kubectlHTTP} {
		o.run(b, false, "http", "http://"+addr+"/healthz", "1", "1")
	}
	o.run(b, true, "conns", "echo:7000", "1")
	return o
}

// forward starts a port-forward (kwarp's or kubectl's) on the laptop for the rest of the
// benchmark and returns the want local addresses it printed (re matches the line, its first
// group the address). It is interrupted, and killed if it does not end, when b ends.
func (o *outgoing) forward(b *testing.B, re *regexp.Regexp, want int, name string, args ...string) []string {
	b.Helper()
	cmd := testenv.Laptop.Command(context.Background(), name, args...)
	// `ip netns exec` execs the command in its own process, which dies with this one even if
	// the cleanup below never runs (a panic, a timeout)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	// kwarp says where it listens on stderr, kubectl on stdout (and a line per connection)
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	cmd.WaitDelay = 5 * time.Second // kwarp's plugin processes share its stderr
	if err := cmd.Start(); err != nil {
		b.Fatalf("%s %s: %v", filepath.Base(name), strings.Join(args, " "), err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); pw.Close(); close(done) }()
	b.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	sc := bufio.NewScanner(pr)
	var addrs []string
	var log strings.Builder
	for len(addrs) < want && sc.Scan() {
		log.WriteString(sc.Text() + "\n")
		if m := re.FindStringSubmatch(sc.Text()); m != nil {
			addrs = append(addrs, m[1])
		}
	}
	if len(addrs) < want {
		b.Fatalf("%s %s ended before forwarding:\n%s", filepath.Base(name), strings.Join(args, " "), log.String())
	}
	go io.Copy(io.Discard, pr) // kubectl's "Handling connection for" lines must not block it
	return addrs
}

// run runs netbench on the laptop, under kwarp exec when underKwarp, and returns what it
// printed.
func (o *outgoing) run(b *testing.B, underKwarp bool, args ...string) map[string]float64 {
	b.Helper()
	var out string
	if underKwarp {
		out, _ = o.kwarp(b, "", append([]string{o.netbench}, args...)...)
	} else {
		out, _ = o.laptop(b, "", o.netbench, args...)
	}
	return parseKV(b, out)
}

// parseKV reads "key value" lines.
func parseKV(b *testing.B, out string) map[string]float64 {
	b.Helper()
	kv := map[string]float64{}
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		k, v, ok := strings.Cut(l, " ")
		x, err := strconv.ParseFloat(v, 64)
		if !ok || err != nil {
			b.Fatalf("unexpected output %q", out)
		}
		kv[k] = x
	}
	return kv
}

// sides are the three ways to the server, sampled in turn (the first one rotating, so no
// side always follows the same one).
type side int

const (
	viaExec side = iota
	viaKwarpPF
	viaKubectlPF
	nSides
)

// alternate calls sample for every side iters times per round, and returns each side's
// samples of every key.
func alternate(b *testing.B, iters int, sample func(s side) map[string]float64) [nSides]map[string][]float64 {
	var got [nSides]map[string][]float64
	for s := range got {
		got[s] = map[string][]float64{}
	}
	for range b.N {
		for i := range iters {
			for k := range nSides {
				s := (side(i) + k) % nSides
				for key, v := range sample(s) {
					got[s][key] = append(got[s][key], v)
				}
			}
		}
	}
	return got
}

func ge1(r float64) bool { return r >= 1 }
func le1(r float64) bool { return r <= 1 }

// bulk: 64 MiB through the echo server and back, one connection.
func (o *outgoing) bulk(b *testing.B) {
	n := strconv.Itoa(bulkBytes)
	got := alternate(b, bulkIters, func(s side) map[string]float64 {
		switch s {
		case viaExec:
			return o.run(b, true, "bulk", "echo:7000", n)
		case viaKwarpPF:
			return o.run(b, false, "bulk", o.kwarpEcho, n)
		}
		return o.run(b, false, "bulk", o.kubectlEcho, n)
	})
	kube := median(got[viaKubectlPF]["MBps"])
	figure{"MB/s-exec", "MB/s-kubectl-pf", "x-exec-vs-kubectl-pf", "≥ 1.0", ge1}.
		report(b, median(got[viaExec]["MBps"]), kube)
	figure{"MB/s-kwarp-pf", "MB/s-kubectl-pf", "x-kwarp-pf-vs-kubectl-pf", "≥ 1.0", ge1}.
		report(b, median(got[viaKwarpPF]["MBps"]), kube)
}

// http: keep-alive GETs of httpecho's /healthz, httpConc at a time.
func (o *outgoing) http(b *testing.B) {
	conc, n := strconv.Itoa(httpConc), strconv.Itoa(httpRequests)
	got := alternate(b, outIters, func(s side) map[string]float64 {
		switch s {
		case viaExec:
			return o.run(b, true, "http", "http://sample/healthz", conc, n)
		case viaKwarpPF:
			return o.run(b, false, "http", "http://"+o.kwarpHTTP+"/healthz", conc, n)
		}
		return o.run(b, false, "http", "http://"+o.kubectlHTTP+"/healthz", conc, n)
	})
	kube := got[viaKubectlPF]
	for _, kw := range []struct {
		name string
		s    side
	}{{"exec", viaExec}, {"kwarp-pf", viaKwarpPF}} {
		g := got[kw.s]
		figure{"req/s-" + kw.name, "req/s-kubectl-pf", "x-" + kw.name + "-vs-kubectl-pf", "≥ 1.0", ge1}.
			report(b, median(g["rps"]), median(kube["rps"]))
		figure{"ns/p99-" + kw.name, "ns/p99-kubectl-pf", "x-p99-" + kw.name + "-vs-kubectl-pf", "≤ 1.0", le1}.
			report(b, median(g["p99-ns"]), median(kube["p99-ns"]))
		b.ReportMetric(median(g["p50-ns"]), "ns/p50-"+kw.name)
	}
	b.ReportMetric(median(kube["p50-ns"]), "ns/p50-kubectl-pf")
}

// dns: lookups of the echo Service's short name with Go's resolver under kwarp exec (and with
// glibc's) vs the same lookups made by probe dnsbench inside the bench pod.
func (o *outgoing) dns(b *testing.B) {
	n := strconv.Itoa(dnsLookups)
	goKw, glibcKw, inPod := map[string][]float64{}, map[string][]float64{}, map[string][]float64{}
	add := func(to map[string][]float64, kv map[string]float64) {
		for k, v := range kv {
			to[k] = append(to[k], v)
		}
	}
	for range b.N {
		for i := range outIters {
			for k := range 3 {
				switch (i + k) % 3 {
				case 0:
					add(goKw, o.run(b, true, "dns", "echo", n))
				case 1:
					if o.dnsbench != "" {
						out, _ := o.kwarp(b, "", o.dnsbench, "echo", n)
						add(glibcKw, parseKV(b, out))
					}
				case 2:
					out, _ := o.kubectl(b, "exec", o.pod, "-c", "app", "--", "/probe", "dnsbench", "echo", n)
					add(inPod, parseKV(b, out))
				}
			}
		}
	}
	base := median(inPod["mean-ns"])
	figure{"ns/exec-lookup", "ns/pod-lookup", "x-vs-pod", "", nil}.report(b, median(goKw["mean-ns"]), base)
	figure{"ns/exec-lookup-p99", "ns/pod-lookup-p99", "x-p99-vs-pod", "", nil}.
		report(b, median(goKw["p99-ns"]), median(inPod["p99-ns"]))
	if o.dnsbench != "" {
		figure{"ns/exec-glibc-lookup", "ns/pod-lookup", "x-glibc-vs-pod", "", nil}.
			report(b, median(glibcKw["mean-ns"]), base)
		b.ReportMetric(median(glibcKw["p99-ns"]), "ns/exec-glibc-lookup-p99")
	}
}

// shortConns: 1000 sequential connect + read banner + close to the echo server, made in
// connSamples runs of connsPer connections (the sides alternating between runs, so a burst of
// load elsewhere on the machine does not land on one side's whole figure); the figure is
// connSamples × the median run, the time 1000 connections take at the median pace.
func (o *outgoing) shortConns(b *testing.B) {
	n := strconv.Itoa(connsPer)
	got := alternate(b, connSamples, func(s side) map[string]float64 {
		switch s {
		case viaExec:
			return o.run(b, true, "conns", "echo:7000", n)
		case viaKwarpPF:
			return o.run(b, false, "conns", o.kwarpEcho, n)
		}
		return o.run(b, false, "conns", o.kubectlEcho, n)
	})
	total := func(s side) float64 { return connSamples * median(got[s]["ns"]) }
	kube := total(viaKubectlPF)
	figure{"ns/exec-1000", "ns/kubectl-pf-1000", "x-exec-vs-kubectl-pf", "", nil}.report(b, total(viaExec), kube)
	figure{"ns/kwarp-pf-1000", "ns/kubectl-pf-1000", "x-kwarp-pf-vs-kubectl-pf", "", nil}.report(b, total(viaKwarpPF), kube)
}

// buildStatic builds testdata/NAME statically into a temporary directory (under /tmp, which
// kwarp serves locally) and returns its path.
func buildStatic(b *testing.B, name string) string {
	b.Helper()
	out := filepath.Join(b.TempDir(), name)
	cmd := exec.Command("go", "build", "-trimpath", "-o", out, "./testdata/"+name)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if o, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("build %s: %v\n%s", name, err, o)
	}
	return out
}
