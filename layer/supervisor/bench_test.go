package supervisor_test

import (
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
	cmd := exec.Command(os.Args[0], p, strconv.Itoa(n))
	cmd.Env = append(os.Environ(), roleHelper+"=openloop")
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
