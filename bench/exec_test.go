package bench

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kwarp-dev/kwarp/kube/agentpod"
	"github.com/kwarp-dev/kwarp/test/testenv"
)

// Sample sizes, kept small: the machine has two cores and the whole run must stay within a few
// minutes. Each sub-benchmark runs its samples once per b.N; every sample takes longer than the
// default -benchtime, so b.N is 1 unless -benchtime=Nx asks for more.
const (
	readOps      = 200 // open+read+close under kwarp, and raw round trips, per sample
	kubectlReads = 5   // kubectl exec cat per sample (each costs ~0.1-0.3 s)
	coldIters    = 3   // cold starts of each side
	warmIters    = 5   // warm starts of each side
	localIters   = 5   // runs of each local workload, natively and under kwarp
)

// BenchmarkKwarpExec measures `kwarp exec` against the bench Deployment (testdata/bench.yaml) in
// a namespace of its own. Each sub-benchmark is one figure of the package doc.
func BenchmarkKwarpExec(b *testing.B) {
	f := newFixture(b)
	b.Run("cold-start", f.coldStart)
	b.Run("warm-start", f.warmStart)
	b.Run("remote-read-4KiB", f.remoteRead)
	b.Run("python-imports", f.pythonImports)
	b.Run("git-status-3000-files", f.gitStatus)
	b.Run("peak-rss", f.peakRSS)
}

func ns(d time.Duration) float64 { return float64(d.Nanoseconds()) }

// coldStart: `kwarp exec -- true` with no agent running vs agentpod.Ensure creating the same
// agent Job and waiting until it is ready. Before each sample every agent of the namespace is
// deleted and gone.
func (f *fixture) coldStart(b *testing.B) {
	var kw, base []float64
	for range b.N {
		for range coldIters {
			f.deleteAgents(b)
			_, took := f.kwarp(b, "", "true")
			kw = append(kw, ns(took))

			f.deleteAgents(b)
			o := f.agentOptions(b)
			start := time.Now()
			a, err := agentpod.Ensure(f.ctx, o)
			took = time.Since(start)
			if err != nil {
				b.Fatalf("ensure the agent: %v", err)
			}
			a.Close()
			if a.Reused {
				b.Fatal("the baseline reused an agent; it must start one")
			}
			base = append(base, ns(took))
		}
	}
	f.deleteAgents(b)
	figure{"ns/kwarp-op", "ns/agent-job-op", "x-vs-agent-job", "≤ 1.2", func(r float64) bool { return r <= 1.2 }}.
		report(b, median(kw), median(base))
}

// warmStart: `kwarp exec -- true` with the agent running vs `kubectl exec POD -- /probe env
// GREETING`, both from the laptop.
func (f *fixture) warmStart(b *testing.B) {
	f.kwarp(b, "", "true") // the agent is up after this
	var kw, base []float64
	for range b.N {
		for range warmIters {
			_, took := f.kwarp(b, "", "true")
			kw = append(kw, ns(took))
			out, took := f.kubectl(b, "exec", f.pod, "-c", "app", "--", "/probe", "env", "GREETING")
			if strings.TrimSpace(out) != "hello-from-the-bench-pod" {
				b.Fatalf("kubectl exec printed %q", out)
			}
			base = append(base, ns(took))
		}
	}
	figure{"ns/kwarp-op", "ns/kubectl-exec-op", "x-vs-kubectl-exec", "≤ 0.5", func(r float64) bool { return r <= 0.5 }}.
		report(b, median(kw), median(base))
}

// remoteRead: one open+read+close of a 4 KiB file that exists only in the pod, timed inside a
// static Go program under kwarp (testdata/readloop, so the session start is not in the figure),
// vs one raw gRPC round trip to the same agent (Fs.Stat) and vs `kubectl exec cat`.
func (f *fixture) remoteRead(b *testing.B) {
	readloop := buildStatic(b, "readloop")
	agent := f.dialAgent(b) // also keeps the agent alive between samples
	defer agent.Close()
	var kw, grpc, grpc2, kubectl []float64
	for range b.N {
		out, _ := f.kwarp(b, "", readloop, "-n", strconv.Itoa(readOps), remoteFile)
		var size int
		var perOp float64
		if _, err := fmt.Sscanf(out, "size %d\nns/op %g\n", &size, &perOp); err != nil || size != fileSize {
			b.Fatalf("readloop under kwarp printed %q (want size %d): %v", out, fileSize, err)
		}
		kw = append(kw, perOp)
		grpc = append(grpc, agent.statLoop(b, f.ctx, remoteFile, readOps))
		grpc2 = append(grpc2, agent.statReadLoop(b, f.ctx, remoteFile, readOps))
		var total time.Duration
		for range kubectlReads {
			out, took := f.kubectl(b, "exec", f.pod, "-c", "app", "--", "/probe", "cat", remoteFile)
			if len(out) != fileSize {
				b.Fatalf("kubectl exec cat printed %d bytes, want %d", len(out), fileSize)
			}
			total += took
		}
		kubectl = append(kubectl, ns(total)/kubectlReads)
	}
	k := median(kw)
	figure{"ns/kwarp-op", "ns/grpc-op", "x-vs-grpc", "≤ 1.3", func(r float64) bool { return r <= 1.3 }}.report(b, k, median(grpc))
	figure{"ns/kwarp-op", "ns/kubectl-exec-op", "x-vs-kubectl-exec", "≤ 0.05, i.e. 20× faster", func(r float64) bool { return r <= 0.05 }}.
		report(b, k, median(kubectl))
	// not a goal: the floor of today's design, two round trips per open (the plugin's Stat,
	// then the core's Read)
	figure{"ns/kwarp-op", "ns/grpc-stat+read-op", "x-vs-grpc-stat+read", "", nil}.report(b, k, median(grpc2))
}

// localWork runs argv natively and under kwarp exec (warm agent), both from the laptop in dir,
// localIters times each, alternating, after one untimed run of each; it reports the medians.
func (f *fixture) localWork(b *testing.B, dir string, argv ...string) {
	f.laptop(b, dir, argv[0], argv[1:]...)
	f.kwarp(b, dir, argv...)
	var kw, native []float64
	for range b.N {
		for range localIters {
			_, took := f.laptop(b, dir, argv[0], argv[1:]...)
			native = append(native, ns(took))
			_, took = f.kwarp(b, dir, argv...)
			kw = append(kw, ns(took))
		}
	}
	figure{"ns/kwarp-op", "ns/native-op", "x-vs-native", "", nil}.
		report(b, median(kw), median(native))
}

// pythonImports: a Python program that imports many standard modules. The interpreter is run by
// its real path, not through a version manager's shim (pyenv's is a shell script that would be
// timed too).
func (f *fixture) pythonImports(b *testing.B) {
	py := lookPath("python3")
	if py == "" {
		b.Skip("python3 is not installed on this machine")
	}
	out, err := exec.Command(py, "-c", "import sys; print(sys.executable)").Output()
	if err != nil {
		b.Fatalf("python3: %v", err)
	}
	if exe := strings.TrimSpace(string(out)); exe != "" {
		py = exe
	}
	f.localWork(b, "", py, "-c", "import json, email, http.client, asyncio, decimal, argparse, xml.dom.minidom, sqlite3, logging, unittest")
}

// gitStatus: `git status` in a repository of 3000 committed files (30 directories of 100).
func (f *fixture) gitStatus(b *testing.B) {
	git := lookPath("git")
	if git == "" {
		b.Skip("git is not installed on this machine")
	}
	repo := b.TempDir()
	for d := range 30 {
		dir := filepath.Join(repo, fmt.Sprintf("dir%02d", d))
		if err := os.Mkdir(dir, 0o755); err != nil {
			b.Fatal(err)
		}
		for i := range 100 {
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("file%03d.txt", i)), fmt.Appendf(nil, "file %d of dir %d\n", i, d), 0o644); err != nil {
				b.Fatal(err)
			}
		}
	}
	for _, args := range [][]string{{"init", "-q"}, {"add", "-A"}, {"-c", "user.name=bench", "-c", "user.email=bench@kwarp.invalid", "commit", "-qm", "3000 files"}} {
		cmd := exec.Command(git, args...)
		cmd.Dir = repo
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	f.localWork(b, repo, git, "-C", repo, "status")
}

// peakRSS: the peak resident memory of kwarp and its plugin processes during `kwarp exec --
// sleep 2` (the sum of each process's VmHWM: an upper bound, as their peaks need not coincide
// and the processes share one executable's pages) vs kubectl's during `kubectl exec --
// /probe sleep -timeout 2s`; and the agent's own peak over the whole run so far, read from the
// node's /proc (its image has nothing kubectl exec could run). The highest PSS sum of kwarp's
// processes, which counts their shared pages once, is reported beside the VmHWM sum.
func (f *fixture) peakRSS(b *testing.B) {
	f.kwarp(b, "", "true") // the agent is up after this
	kwarpBin := testenv.KwarpBinary(b)
	kwarpReal, _ := filepath.EvalSymlinks(kwarpBin)
	isKwarp := func(argv []string) bool {
		// the session (`kwarp exec`) and its plugins (`kwarp plugin NAME...`), not the launcher
		// (`kwarp __launch`), which becomes the user's command
		return len(argv) > 1 && (argv[0] == kwarpBin || argv[0] == kwarpReal) && (argv[1] == "exec" || argv[1] == "plugin")
	}
	kubectlBin := testenv.Cluster.Kubectl()
	isKubectl := func(argv []string) bool { return argv[0] == kubectlBin }
	var kw, kwPSS, base, agent []float64
	for range b.N {
		cmd := testenv.Laptop.Command(f.ctx, kwarpBin, f.kwarpArgs("sleep", "2")...)
		u, err := peaks(cmd, isKwarp)
		if err != nil {
			b.Fatalf("kwarp exec -- sleep 2: %v", err)
		}
		if len(u.hwm) < 2 {
			b.Fatalf("saw %d kwarp processes, want the session and its plugin process: %v", len(u.hwm), u.hwm)
		}
		kw = append(kw, sumMiB(u.hwm))
		kwPSS = append(kwPSS, float64(u.pssPeak)/1024)
		b.Logf("VmHWM of kwarp's processes, KiB by pid: %v", u.hwm)

		cmd = testenv.Laptop.Command(f.ctx, kubectlBin, "-n", f.ns, "exec", f.pod, "-c", "app", "--", "/probe", "sleep", "-timeout", "2s")
		u, err = peaks(cmd, isKubectl)
		if err != nil || len(u.hwm) == 0 {
			b.Fatalf("kubectl exec -- /probe sleep: %v (%d processes seen)", err, len(u.hwm))
		}
		base = append(base, sumMiB(u.hwm))

		pods, err := testenv.Env.PodsOf(f.ctx, f.ns, agentSelector)
		if err != nil || len(pods) != 1 {
			b.Fatalf("agent pods: %d, %v; want the one agent", len(pods), err)
		}
		kb, procs, seen := agentHWM(string(pods[0].UID))
		if procs == 0 {
			b.Fatalf("no /kwarp-agent process in the cgroup of pod %s (%d agent processes on the node)", pods[0].Name, seen)
		}
		agent = append(agent, float64(kb)/1024)
	}
	k, a := median(kw), median(agent)
	figure{"MiB/kwarp", "MiB/kubectl-exec", "x-vs-kubectl-exec", "", nil}.report(b, k, median(base))
	b.ReportMetric(median(kwPSS), "MiB/kwarp-pss")
	b.ReportMetric(a, "MiB/agent")
	b.Logf("kwarp + plugins %.1f MiB (PSS %.1f MiB; goal ≤ 80: %s), agent %.1f MiB (goal ≤ 30: %s)",
		k, median(kwPSS), met(k <= 80), a, met(a <= 30))
}

func sumMiB(kb map[int]int64) float64 {
	var s int64
	for _, v := range kb {
		s += v
	}
	return float64(s) / 1024
}
