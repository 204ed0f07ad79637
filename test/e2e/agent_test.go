package e2e

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	agentv1 "github.com/kwarp-dev/kwarp/agent/api/v1"
	"github.com/kwarp-dev/kwarp/internal/imagepack"
	"github.com/kwarp-dev/kwarp/kube/agentpod"
	"github.com/kwarp-dev/kwarp/kube/target"
	testkube "github.com/kwarp-dev/kwarp/test/kube"
	"github.com/kwarp-dev/kwarp/test/testenv"
)

// pingResult is `kwarp agent-ping`'s JSON.
type pingResult struct {
	Target  *target.Resolved
	Agent   *agentpod.Agent
	Serving bool
	Session *agentv1.OpenResponse
}

func agentPing(t *testing.T, ctx context.Context, env []string, args ...string) (kwarpResult, pingResult) {
	t.Helper()
	r := kwarpOnLaptop(t, ctx, env, append([]string{"agent-ping"}, args...)...)
	var p pingResult
	if r.code == 0 {
		if err := json.Unmarshal([]byte(r.stdout), &p); err != nil {
			t.Fatalf("decode agent-ping output %q: %v", r.stdout, err)
		}
	}
	return r, p
}

const agentSelector = agentpod.LabelName + "=kwarp-agent"

// agentObjects lists what of kwarp's agents is left in ns: Jobs and pods by their label.
func agentObjects(ctx context.Context, ns string) ([]string, error) {
	var left []string
	jobs, err := testenv.Env.Client.BatchV1().Jobs(ns).List(ctx, metav1.ListOptions{LabelSelector: agentSelector})
	if err != nil {
		return nil, err
	}
	for _, j := range jobs.Items {
		left = append(left, "job/"+j.Name)
	}
	pods, err := testenv.Env.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: agentSelector})
	if err != nil {
		return nil, err
	}
	for _, p := range pods.Items {
		left = append(left, "pod/"+p.Name+" ("+string(p.Status.Phase)+")")
	}
	return left, nil
}

// waitNoAgent waits until nothing of kwarp's agents is left in ns.
func waitNoAgent(t *testing.T, ctx context.Context, ns string, within time.Duration) {
	t.Helper()
	var left []string
	err := wait.PollUntilContextTimeout(ctx, time.Second, within, true, func(ctx context.Context) (bool, error) {
		var err error
		left, err = agentObjects(ctx, ns)
		return err == nil && len(left) == 0, nil
	})
	if err != nil {
		t.Fatalf("agent objects still in %s after %s: %v", ns, within, left)
	}
}

// TestAgentJob starts the agent for deploy/sample from the laptop: a Job on node1 in the host
// PID namespace, reached through the port-forward, whose session names the target container it
// entered; a second run reuses the same pod; after the lease's TTL nothing is left.
func TestAgentJob(t *testing.T) {
	ctx := testkube.Context(t, 4*time.Minute)
	ns := deploy(t, ctx, "agent-job", "sample")
	pod, err := testenv.Env.RunningPodOf(ctx, ns, "sample")
	if err != nil {
		t.Fatal(err)
	}

	r, first := agentPing(t, ctx, nil, "-n", ns, "-t", "deploy/sample", "--agent-ttl", "15s")
	if r.code != 0 {
		t.Fatalf("agent-ping: %s", r)
	}
	a := first.Agent
	if !first.Serving || a == nil || a.Node != "node1" || a.Reused || a.Mode != agentpod.ModeJob ||
		!strings.HasPrefix(a.Job, "kwarp-agent-") || a.Namespace != ns || a.Port != 7700 {
		t.Fatalf("first agent-ping: %+v agent %+v", first, a)
	}
	if !strings.Contains(r.stderr, "starting agent on node1…") {
		t.Errorf("no progress line: %q", r.stderr)
	}
	if s := first.Session; s == nil {
		t.Error("the agent did not answer Session.Open")
	} else {
		var appID string
		for _, cs := range pod.Status.ContainerStatuses {
			if cs.Name == "app" {
				appID = cs.ContainerID
			}
		}
		if s.Target.GetPod() != pod.Name || s.Target.GetContainer() != "app" || !strings.HasSuffix(appID, s.Target.GetContainerId()) || s.Target.GetPid() <= 0 {
			t.Errorf("the agent serves %+v; want pod %s, container app (%s), with a pid", s.Target, pod.Name, appID)
		}
	}

	t.Run("the Job's spec", func(t *testing.T) {
		job, err := testenv.Env.Client.BatchV1().Jobs(ns).Get(ctx, a.Job, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		checkAgentJob(t, job, pod)
	})

	t.Run("warm start reuses the pod", func(t *testing.T) {
		r, second := agentPing(t, ctx, nil, "-n", ns, "-t", "deploy/sample", "--agent-ttl", "15s")
		if r.code != 0 {
			t.Fatalf("agent-ping: %s", r)
		}
		if !second.Agent.Reused || second.Agent.Pod != a.Pod || second.Agent.Job != a.Job {
			t.Errorf("second agent %+v, want a reuse of %s", second.Agent, a.Pod)
		}
		if !strings.Contains(r.stderr, "reusing agent "+a.Pod) {
			t.Errorf("no reuse progress line: %q", r.stderr)
		}
		jobs, err := testenv.Env.Client.BatchV1().Jobs(ns).List(ctx, metav1.ListOptions{LabelSelector: agentSelector})
		if err != nil || len(jobs.Items) != 1 {
			t.Errorf("agent Jobs after a warm start: %d (err %v), want 1", len(jobs.Items), err)
		}
	})

	t.Run("nothing left after the lease", func(t *testing.T) {
		// lease TTL 15s, then ttlSecondsAfterFinished 10s, then the garbage collector
		waitNoAgent(t, ctx, ns, 90*time.Second)
	})
}

func checkAgentJob(t *testing.T, job *batchv1.Job, target *corev1.Pod) {
	t.Helper()
	ps := job.Spec.Template.Spec
	if ps.NodeName != target.Spec.NodeName || !ps.HostPID || ps.RestartPolicy != corev1.RestartPolicyNever {
		t.Errorf("pod spec nodeName %q hostPID %v restartPolicy %s", ps.NodeName, ps.HostPID, ps.RestartPolicy)
	}
	if job.Spec.TTLSecondsAfterFinished == nil || *job.Spec.TTLSecondsAfterFinished != 10 || *job.Spec.BackoffLimit != 0 {
		t.Errorf("ttlSecondsAfterFinished %v backoffLimit %v", job.Spec.TTLSecondsAfterFinished, job.Spec.BackoffLimit)
	}
	if job.Labels[agentpod.LabelTargetUID] != string(target.UID) || job.Labels[agentpod.LabelContainer] != "app" {
		t.Errorf("labels %v", job.Labels)
	}
	args := strings.Join(ps.Containers[0].Args, " ")
	for _, want := range []string{"--listen=:7700", "--ttl=15s", "--pod=" + target.Name, "--container=app", "--namespace=" + target.Namespace} {
		if !strings.Contains(args, want) {
			t.Errorf("agent args %q lack %s", args, want)
		}
	}
}

// TestAgentBadImage asks for an image that cannot be pulled: kwarp fails within seconds with
// the kubelet's message and what to do, and removes the Job it made.
func TestAgentBadImage(t *testing.T) {
	ctx := testkube.Context(t, 3*time.Minute)
	ns := deploy(t, ctx, "agent-image", "sample")
	testenv.KwarpBinary(t) // build outside the timed run
	r, _ := agentPing(t, ctx, []string{"KWARP_AGENT_IMAGE=kwarp.dev/nope:1"}, "-n", ns, "-t", "deploy/sample")
	if r.code != 3 {
		t.Errorf("exit %d, want 3", r.code)
	}
	for _, w := range []string{"agent image kwarp.dev/nope:1 cannot be pulled: ", "set KWARP_AGENT_IMAGE or agent.image"} {
		if !strings.Contains(r.stderr, w) {
			t.Errorf("stderr lacks %q:\n%s", w, r.stderr)
		}
	}
	if r.took > 30*time.Second {
		t.Errorf("took %s; want seconds", r.took)
	}
	waitNoAgent(t, ctx, ns, 30*time.Second)
}

// TestAgentExits runs an "agent" image whose program exits at once (the probe tool, which does
// not know the agent's flags): kwarp reports the exit code and the program's last log lines.
func TestAgentExits(t *testing.T) {
	ctx := testkube.Context(t, 3*time.Minute)
	ns := deploy(t, ctx, "agent-exits", "sample")
	const ref = "kwarp.test/agent-exits:1"
	err := testenv.Cluster.PackAndLoad(ctx, imagepack.Spec{Ref: ref, Entrypoint: []string{"/kwarp-agent"},
		Files: []imagepack.File{{Src: testenv.Tool("probe"), Dst: "/kwarp-agent"}}})
	if err != nil {
		t.Fatal(err)
	}
	r, _ := agentPing(t, ctx, []string{"KWARP_AGENT_IMAGE=" + ref}, "-n", ns, "-t", "deploy/sample")
	if r.code != 3 {
		t.Errorf("exit %d, want 3", r.code)
	}
	for _, w := range []string{"the agent exited with code 2 (Error) before it was ready; its last lines:", `probe: unknown subcommand "--listen=:7700"`, "probe sleep"} {
		if !strings.Contains(r.stderr, w) {
			t.Errorf("stderr lacks %q:\n%s", w, r.stderr)
		}
	}
	waitNoAgent(t, ctx, ns, 30*time.Second)
}

// TestAgentPodSecurity starts a Job agent in a namespace that enforces the baseline Pod
// Security level: the Job is accepted, its pod refused; kwarp says so within seconds, with what
// to do, and removes the Job.
func TestAgentPodSecurity(t *testing.T) {
	ctx := testkube.Context(t, 3*time.Minute)
	ns := deploy(t, ctx, "agent-psa", "sample")
	n, err := testenv.Env.Client.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	n.Labels["pod-security.kubernetes.io/enforce"] = "baseline"
	if _, err := testenv.Env.Client.CoreV1().Namespaces().Update(ctx, n, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	r, _ := agentPing(t, ctx, nil, "-n", ns, "-t", "deploy/sample")
	if r.code != 3 {
		t.Errorf("exit %d, want 3", r.code)
	}
	for _, w := range []string{"the namespace's PodSecurity policy rejected the agent: ", "violates PodSecurity", "hostPID", "use --agent-ephemeral or agent.namespace"} {
		if !strings.Contains(r.stderr, w) {
			t.Errorf("stderr lacks %q:\n%s", w, r.stderr)
		}
	}
	if r.took > 30*time.Second {
		t.Errorf("took %s; want seconds", r.took)
	}
	waitNoAgent(t, ctx, ns, 30*time.Second)

	t.Run("agent.namespace elsewhere works", func(t *testing.T) {
		other := testenv.Env.NewNamespace(t, "agent-psa-elsewhere")
		r, p := agentPing(t, ctx, nil, "-n", ns, "-t", "deploy/sample", "--agent-namespace", other, "--agent-ttl", "2s")
		if r.code != 0 || p.Agent.Namespace != other || !p.Serving {
			t.Fatalf("agent in %s for a target in %s: %s", other, ns, r)
		}
		if p.Session != nil && p.Session.Target.GetPid() <= 0 {
			t.Errorf("the agent in another namespace did not find the target: %+v", p.Session.Target)
		}
	})
}

// TestAgentEphemeral runs the agent as an ephemeral container of the target pod, reached
// through the same port-forward; a second run reuses it.
func TestAgentEphemeral(t *testing.T) {
	ctx := testkube.Context(t, 3*time.Minute)
	ns := deploy(t, ctx, "agent-ephemeral", "sample")
	pod, err := testenv.Env.RunningPodOf(ctx, ns, "sample")
	if err != nil {
		t.Fatal(err)
	}
	r, p := agentPing(t, ctx, nil, "-n", ns, "-t", "deploy/sample", "--agent-ephemeral", "--agent-ttl", "30s")
	if r.code != 0 {
		t.Fatalf("agent-ping --agent-ephemeral: %s", r)
	}
	a := p.Agent
	if a.Mode != agentpod.ModeEphemeral || a.Pod != pod.Name || !strings.HasPrefix(a.Container, "kwarp-agent-") ||
		a.Port < 20000 || a.Port >= 40000 || a.Job != "" || !p.Serving {
		t.Errorf("ephemeral agent %+v", a)
	}
	if p.Session != nil && (p.Session.Target.GetContainer() != "app" || p.Session.Target.GetPid() <= 0) {
		t.Errorf("the ephemeral agent serves %+v", p.Session.Target)
	}
	got, err := testenv.Env.Client.CoreV1().Pods(ns).Get(ctx, pod.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(got.Spec.EphemeralContainers); n != 1 || got.Spec.EphemeralContainers[0].TargetContainerName != "app" {
		t.Errorf("ephemeral containers %+v, want one targeting app", got.Spec.EphemeralContainers)
	}

	r, again := agentPing(t, ctx, nil, "-n", ns, "-t", "deploy/sample", "--agent-ephemeral")
	if r.code != 0 || !again.Agent.Reused || again.Agent.Container != a.Container || again.Agent.Port != a.Port {
		t.Errorf("second ephemeral agent-ping: %+v (%s)", again.Agent, r)
	}
}

// TestAgentTargetless starts an agent with no target: a plain Job the scheduler places, under
// the restricted Pod Security level.
func TestAgentTargetless(t *testing.T) {
	ctx := testkube.Context(t, 3*time.Minute)
	ns := testenv.Env.NewNamespace(t, "agent-targetless")
	n, err := testenv.Env.Client.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	n.Labels["pod-security.kubernetes.io/enforce"] = "restricted"
	if _, err := testenv.Env.Client.CoreV1().Namespaces().Update(ctx, n, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	r, p := agentPing(t, ctx, nil, "-n", ns, "--agent-ttl", "1s")
	if r.code != 0 || !p.Serving || !strings.HasPrefix(p.Agent.Job, "kwarp-agent-tl-") || p.Agent.Node != "node1" {
		t.Fatalf("targetless agent-ping: %s", r)
	}
	if p.Session != nil && p.Session.Target.GetPid() != 0 {
		t.Errorf("a targetless agent reports a target: %+v", p.Session.Target)
	}
	waitNoAgent(t, ctx, ns, 60*time.Second)
}
