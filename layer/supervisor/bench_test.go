package supervisor_test

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

// Benchmarks run the loop inside a launched process (the test binary as a helper) and report
// the loop's own time per operation, next to the same loop run without the filter in the same
// benchmark run: each figure is a ratio to a baseline measured alongside it.

func localBenchFile(b *testing.B) string {
	p := filepath.Join(b.TempDir(), "local-4k")
	if err := os.WriteFile(p, []byte(strings.Repeat("l", 4096)), 0o644); err != nil {
		b.Fatal(err)
	}
	return p
}

// plainLoop runs the open loop in a process without the filter.
func plainLoop(b *testing.B, p string, n int) float64 {
	return plainHelper(b, "openloop", n, p)
}

// plainHelper runs a helper loop of n iterations in a process without the filter.
func plainHelper(b *testing.B, helper string, n int, args ...string) float64 {
	cmd := exec.Command(os.Args[0], append(args, strconv.Itoa(n))...)
	cmd.Env = append(os.Environ(), roleHelper+"="+helper)
	out, err := cmd.Output()
	if err != nil {
		b.Fatalf("plain loop: %v", err)
	}
	return perOp(b, string(out), n)
}

// trappedLoop runs it under the filter and the supervisor, and counts the supervisor's heap
// allocations per loop iteration (the test process is otherwise idle).
func trappedLoop(b *testing.B, p string, n int) (nsPerOp, allocsPerOp float64) {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	r := runUnder(b, newFakeFS(b.TempDir()), []string{os.Args[0], p, strconv.Itoa(n)}, runOpts{
		env:   []string{roleHelper + "=openloop"},
		quiet: true,
	})
	runtime.ReadMemStats(&after)
	if r.code() != 0 {
		b.Fatalf("trapped loop: %v; stderr %s", r.state, r.stderr)
	}
	return perOp(b, r.stdout, n), float64(after.Mallocs-before.Mallocs) / float64(n)
}

func perOp(b *testing.B, out string, n int) float64 {
	ns, err := strconv.ParseFloat(strings.TrimSpace(out), 64)
	if err != nil {
		b.Fatalf("helper output %q", out)
	}
	return ns / float64(n)
}

// BenchmarkTrappedOpenLocal: open+close of a local file with openat trapped and routed Local
// (CONTINUE), against the same loop without the filter.
func BenchmarkTrappedOpenLocal(b *testing.B) {
	requireLayer(b)
	p := localBenchFile(b)
	n := max(b.N, 100)
	plain := plainLoop(b, p, n)
	trapped, allocs := trappedLoop(b, p, n)
	b.ReportMetric(trapped, "ns/op")
	b.ReportMetric(plain, "plain-ns/op")
	b.ReportMetric(trapped/plain, "x-plain")
	b.ReportMetric(allocs, "sup-allocs/op")
}

// BenchmarkRemoteOpen: open+close of a 4 KiB remote file: the fake Handler fills a memfd and
// the supervisor installs it with ADDFD, against a plain open of a local 4 KiB file.
func BenchmarkRemoteOpen(b *testing.B) {
	requireLayer(b)
	p := localBenchFile(b)
	n := max(b.N, 100)
	plain := plainLoop(b, p, n)
	remote, allocs := trappedLoop(b, "/kwarp-remote/bench/4k", n)
	b.ReportMetric(remote, "ns/op")
	b.ReportMetric(plain, "plain-ns/op")
	b.ReportMetric(remote/plain, "x-plain")
	b.ReportMetric(allocs, "sup-allocs/op")
}

// BenchmarkTrappedConnectLocal: a blocking TCP connect to a listener on this machine, then
// close, with the socket calls trapped and the destination routed Local (CONTINUE after the
// socket's type is read from a duplicate), against the same loop without the filter.
func BenchmarkTrappedConnectLocal(b *testing.B) {
	requireLayer(b)
	l, err := net.ListenTCP("tcp4", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	port := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	n := max(b.N, 100)
	// The listener runs in this process: its allocations, measured in the plain run, are
	// taken off the supervisor's.
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	plain := plainHelper(b, "connectloop", n, "127.0.0.1", port)
	runtime.ReadMemStats(&after)
	listenerAllocs := after.Mallocs - before.Mallocs
	runtime.ReadMemStats(&before)
	r := runUnder(b, newFakeFS(b.TempDir()), []string{os.Args[0], "127.0.0.1", port, strconv.Itoa(n)}, runOpts{
		env:   []string{roleHelper + "=connectloop"},
		trap:  []string{},
		net:   newFakeNet(b),
		quiet: true,
	})
	runtime.ReadMemStats(&after)
	if r.code() != 0 {
		b.Fatalf("trapped loop: %v; stderr %s", r.state, r.stderr)
	}
	trapped := perOp(b, r.stdout, n)
	b.ReportMetric(trapped, "ns/op")
	b.ReportMetric(plain, "plain-ns/op")
	b.ReportMetric(trapped/plain, "x-plain")
	b.ReportMetric((float64(after.Mallocs-before.Mallocs)-float64(listenerAllocs))/float64(n), "sup-allocs/op")
}

// BenchmarkTrappedAccept: accept4 with an address buffer of a loopback connection already
// queued (made by the same process just before), with listen and accept trapped for an
// IncomingHandler that names the client (every connection comes from 127.0.0.2, a delivery
// to the fake), against the same accept4 without the filter. Only accept4 is timed: the
// difference is the emulated accept (pidfd_getfd, three getsockopts, poll, ID_VALID,
// accept4, getsockname, Delivered, process_vm_writev twice, ADDFD with signals blocked).
func BenchmarkTrappedAccept(b *testing.B) {
	requireLayer(b)
	n := max(b.N, 100)
	plain := plainHelper(b, "acceptloop", n)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	fi := newFakeIncoming(b)
	r := runUnder(b, newFakeFS(b.TempDir()), []string{os.Args[0], strconv.Itoa(n)}, runOpts{
		env:      []string{roleHelper + "=acceptloop"},
		trap:     []string{},
		incoming: fi,
		quiet:    true,
	})
	runtime.ReadMemStats(&after)
	if r.code() != 0 {
		b.Fatalf("trapped loop: %v; stderr %s", r.state, r.stderr)
	}
	if r.stats.NetDelivered != uint64(n) {
		b.Fatalf("stats %+v: %d accepts delivered, want %d", r.stats, r.stats.NetDelivered, n)
	}
	trapped := perOp(b, r.stdout, n)
	b.ReportMetric(trapped, "ns/op")
	b.ReportMetric(plain, "plain-ns/op")
	b.ReportMetric(trapped/plain, "x-plain")
	b.ReportMetric(float64(after.Mallocs-before.Mallocs)/float64(n), "sup-allocs/op")
}
