package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kwarp-dev/kwarp/kube/agentpod"
	"github.com/kwarp-dev/kwarp/kube/target"
	testkube "github.com/kwarp-dev/kwarp/test/kube"
	"github.com/kwarp-dev/kwarp/test/testenv"
)

const (
	// deployName is the Deployment in testdata/bench.yaml that every figure targets.
	deployName = "bench"
	// remoteFile is the 4096-byte ConfigMap file, which exists only in the pod.
	remoteFile = "/etc/bench/file4k"
	fileSize   = 4096
	// file4kPlaceholder is the value in testdata/bench.yaml that the file's content replaces.
	file4kPlaceholder = "FILE4K_PLACEHOLDER"
)

// agentSelector selects kwarp's agent Jobs and pods.
var agentSelector = agentpod.LabelName + "=" + target.AgentLabelValue

// fixture is what the figures share: one namespace with the bench Deployment running.
type fixture struct {
	ctx context.Context
	ns  string
	pod string // the bench pod's name
}

// newFixture creates the namespace (deleted when b ends), applies testdata/bench.yaml with its
// 4096-byte file and waits until the pod is ready. It also builds kwarp (and loads the agent
// image it starts) before any figure times anything.
func newFixture(b *testing.B) *fixture {
	b.Helper()
	ctx := testkube.Context(b, 9*time.Minute)
	testenv.KwarpBinary(b)
	manifest, err := os.ReadFile("testdata/bench.yaml")
	if err != nil {
		b.Fatal(err)
	}
	content, _ := json.Marshal(file4k())
	if bytes.Count(manifest, []byte(file4kPlaceholder)) != 1 {
		b.Fatalf("testdata/bench.yaml must hold %s exactly once", file4kPlaceholder)
	}
	manifest = bytes.Replace(manifest, []byte(file4kPlaceholder), content, 1)
	ns := testenv.Env.NewNamespace(b, "bench")
	objs, err := testenv.Env.Apply(ctx, ns, manifest)
	if err != nil {
		b.Fatalf("apply testdata/bench.yaml: %v", err)
	}
	if err := testenv.Env.WaitReady(ctx, ns, objs...); err != nil {
		testenv.Env.DumpNamespace(b, ns)
		b.Fatalf("bench workload not ready: %v", err)
	}
	pod, err := testenv.Env.RunningPodOf(ctx, ns, deployName)
	if err != nil {
		b.Fatal(err)
	}
	return &fixture{ctx: ctx, ns: ns, pod: pod.Name}
}

// file4k is the remote file's content: 64 lines of 64 bytes.
func file4k() string {
	var sb strings.Builder
	for i := 0; sb.Len() < fileSize; i++ {
		line := fmt.Sprintf("kwarp bench 4 KiB file, line %02d ", i)
		sb.WriteString(line + strings.Repeat(".", 63-len(line)) + "\n")
	}
	return sb.String()
}

// laptop runs name in the laptop network namespace (which reaches only the API server, as a
// developer's machine would) with the laptop kubeconfig, and returns its stdout and wall time.
// A non-zero exit fails the benchmark with the output.
func (f *fixture) laptop(b *testing.B, dir, name string, args ...string) (string, time.Duration) {
	b.Helper()
	cmd := testenv.Laptop.Command(f.ctx, name, args...)
	cmd.Dir = dir
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	start := time.Now()
	err := cmd.Run()
	took := time.Since(start)
	if err != nil {
		b.Fatalf("%s %s: %v\nstdout: %s\nstderr: %s", filepath.Base(name), strings.Join(args, " "), err, out.String(), errb.String())
	}
	return out.String(), took
}

// kwarpArgs is `kwarp exec` of argv on the bench Deployment.
func (f *fixture) kwarpArgs(argv ...string) []string {
	return append([]string{"exec", "-n", f.ns, "-t", "deploy/" + deployName, "--"}, argv...)
}

// kwarp runs `kwarp exec -t deploy/bench -- argv…` on the laptop.
func (f *fixture) kwarp(b *testing.B, dir string, argv ...string) (string, time.Duration) {
	b.Helper()
	return f.laptop(b, dir, testenv.KwarpBinary(b), f.kwarpArgs(argv...)...)
}

// kubectl runs the cluster's kubectl on the laptop, as a developer would.
func (f *fixture) kubectl(b *testing.B, args ...string) (string, time.Duration) {
	b.Helper()
	return f.laptop(b, "", testenv.Cluster.Kubectl(), append([]string{"-n", f.ns}, args...)...)
}

// deleteAgents deletes the namespace's agent Jobs and waits until no agent Job or pod is left,
// so that the next session starts its agent cold. Only this namespace's agents are touched.
func (f *fixture) deleteAgents(b *testing.B) {
	b.Helper()
	bg := metav1.DeletePropagationBackground
	c := testenv.Env.Client
	err := c.BatchV1().Jobs(f.ns).DeleteCollection(f.ctx, metav1.DeleteOptions{PropagationPolicy: &bg},
		metav1.ListOptions{LabelSelector: agentSelector})
	if err != nil {
		b.Fatalf("delete the agent Jobs: %v", err)
	}
	ctx, cancel := context.WithTimeout(f.ctx, time.Minute)
	defer cancel()
	for {
		jobs, jerr := c.BatchV1().Jobs(f.ns).List(ctx, metav1.ListOptions{LabelSelector: agentSelector})
		pods, perr := c.CoreV1().Pods(f.ns).List(ctx, metav1.ListOptions{LabelSelector: agentSelector})
		if err := errors.Join(jerr, perr); err != nil {
			b.Fatalf("waiting for the agents to go: %v", err)
		}
		if len(jobs.Items) == 0 && len(pods.Items) == 0 {
			return
		}
		select {
		case <-ctx.Done():
			b.Fatalf("agent Jobs or pods still there after a minute: %d jobs, %d pods", len(jobs.Items), len(pods.Items))
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// median of samples (which it sorts).
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	sort.Float64s(xs)
	if n := len(xs); n%2 == 1 {
		return xs[n/2]
	} else {
		return (xs[n/2-1] + xs[n/2]) / 2
	}
}

// figure is how one figure is reported: the absolute value of each side under its unit, the
// ratio kwarp/baseline under ratioUnit (x-vs-<baseline>: lower is better for kwarp), and a log
// line that says whether the goal, if there is one, is met.
type figure struct {
	kwarpUnit, baseUnit string
	ratioUnit           string
	goal                string                   // "≤ 1.3"; "" for none
	met                 func(ratio float64) bool // nil for none
}

// report reports the figure. The built-in ns/op, which would time the setup too (and the samples
// of both sides together), is suppressed.
func (fg figure) report(b *testing.B, kwarp, base float64) {
	b.Helper()
	ratio := kwarp / base
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(kwarp, fg.kwarpUnit)
	b.ReportMetric(base, fg.baseUnit)
	b.ReportMetric(ratio, fg.ratioUnit)
	verdict := "no goal"
	if fg.met != nil {
		verdict = "goal " + fg.goal + ": " + met(fg.met(ratio))
	}
	b.Logf("%s %.4g, %s %.4g: %.3g %s (%s)", fg.kwarpUnit, kwarp, fg.baseUnit, base, ratio, fg.ratioUnit, verdict)
}

func met(ok bool) string {
	if ok {
		return "met"
	}
	return "not met"
}

// lookPath is the absolute path of a program on this machine, or "" when it is not installed.
func lookPath(name string) string {
	p, err := exec.LookPath(name)
	if err != nil {
		return ""
	}
	if abs, err := filepath.Abs(p); err == nil {
		return abs
	}
	return p
}
