package agentpod

import (
	"errors"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

const image = "kwarp.dev/nope:1"

func agentPod(phase corev1.PodPhase, state corev1.ContainerState, ready bool, conds ...corev1.PodCondition) *corev1.Pod {
	status := corev1.ConditionFalse
	if ready {
		status = corev1.ConditionTrue
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "kwarp-agent-0a1b2c3d4e-xyz12", Namespace: "shop"},
		Spec:       corev1.PodSpec{NodeName: "node1"},
		Status: corev1.PodStatus{
			Phase:             phase,
			Conditions:        append([]corev1.PodCondition{{Type: corev1.PodReady, Status: status}}, conds...),
			ContainerStatuses: []corev1.ContainerStatus{{Name: ContainerName, State: state}},
		},
	}
}

func waitingState(reason, msg string) corev1.ContainerState {
	return corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason, Message: msg}}
}

func warning(reason, msg string, at time.Time) corev1.Event {
	return corev1.Event{Type: corev1.EventTypeWarning, Reason: reason, Message: msg, LastTimestamp: metav1.NewTime(at)}
}

func TestAssess(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	runningState := corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}
	psaMsg := `Error creating: pods "kwarp-agent-0a1b2c3d4e-xyz12" is forbidden: violates PodSecurity "baseline:latest": host namespaces (hostPID=true), non-default capabilities (container "kwarp-agent" must not include "NET_ADMIN", "SYS_ADMIN", "SYS_PTRACE" in securityContext.capabilities.add)`
	pullMsg := `failed to pull and unpack image "kwarp.dev/nope:1": failed to resolve reference "kwarp.dev/nope:1": dial tcp: lookup kwarp.dev: no such host`

	unschedulable := agentPod(corev1.PodPending, corev1.ContainerState{}, false, corev1.PodCondition{
		Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: corev1.PodReasonUnschedulable,
		Message: "0/3 nodes are available: 3 Insufficient memory."})
	unschedulable.Spec.NodeName = ""
	unschedulable.Status.ContainerStatuses = nil
	rejected := agentPod(corev1.PodFailed, corev1.ContainerState{}, false)
	rejected.Status.Reason, rejected.Status.Message = "OutOfcpu", "Node didn't have enough resource: cpu"
	rejected.Status.ContainerStatuses = nil
	ephemeralRunning := agentPod(corev1.PodRunning, corev1.ContainerState{}, true)
	ephemeralRunning.Status.ContainerStatuses = nil
	ephemeralRunning.Status.EphemeralContainerStatuses = []corev1.ContainerStatus{{Name: "kwarp-agent-abcde", State: runningState}}
	failedJob := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: "kwarp-agent-x"}, Status: batchv1.JobStatus{Conditions: []batchv1.JobCondition{
		{Type: batchv1.JobFailed, Status: corev1.ConditionTrue, Reason: "DeadlineExceeded", Message: "Job was active longer than specified deadline"}}}}

	tests := []struct {
		name      string
		obs       observation
		ready     bool
		exited    bool
		failClass error
		failWant  []string
		stateWant string
	}{
		{"no pod yet", observation{}, false, false, nil, nil, "waiting for the Job controller"},
		{"PodSecurity refuses the Job's pod", observation{Events: []corev1.Event{warning("FailedCreate", psaMsg, now)}},
			false, false, ErrPodSecurity, []string{"the namespace's PodSecurity policy rejected the agent: ", `violates PodSecurity "baseline:latest"`, "hostPID=true", "use --agent-ephemeral or agent.namespace"}, ""},
		{"other FailedCreate (quota)", observation{Events: []corev1.Event{warning("FailedCreate", `Error creating: pods "x" is forbidden: exceeded quota: q`, now)}},
			false, false, ErrRejected, []string{"the Job controller cannot create the agent pod: ", "exceeded quota"}, ""},
		{"Job failed without a pod", observation{Job: failedJob}, false, false, ErrRejected, []string{"the agent Job kwarp-agent-x failed: DeadlineExceeded"}, ""},
		{"ErrImagePull", observation{Image: image, Pod: agentPod(corev1.PodPending, waitingState("ErrImagePull", pullMsg), false)},
			false, false, ErrImagePull, []string{"agent image kwarp.dev/nope:1 cannot be pulled: ErrImagePull: " + pullMsg, "set KWARP_AGENT_IMAGE or agent.image"}, ""},
		{"ImagePullBackOff, message from the event", observation{Image: image,
			Pod:    agentPod(corev1.PodPending, waitingState("ImagePullBackOff", ""), false),
			Events: []corev1.Event{warning("Failed", "old", now.Add(-time.Minute)), warning("Failed", pullMsg, now)}},
			false, false, ErrImagePull, []string{"ImagePullBackOff: " + pullMsg}, ""},
		{"ErrImageNeverPull", observation{Image: image, Pod: agentPod(corev1.PodPending, waitingState("ErrImageNeverPull", `Container image "kwarp.dev/nope:1" is not present with pull policy of Never`), false)},
			false, false, ErrImagePull, []string{"is not present with pull policy of Never"}, ""},
		{"CreateContainerConfigError", observation{Pod: agentPod(corev1.PodPending, waitingState("CreateContainerConfigError", "secret missing"), false)},
			false, false, ErrRejected, []string{"the agent container cannot start: CreateContainerConfigError: secret missing"}, ""},
		{"unschedulable (targetless)", observation{Pod: unschedulable}, false, false, ErrUnschedulable,
			[]string{"the scheduler cannot place the agent pod: 0/3 nodes are available: 3 Insufficient memory."}, ""},
		{"FailedScheduling event", observation{Pod: func() *corev1.Pod {
			p := agentPod(corev1.PodPending, corev1.ContainerState{}, false)
			p.Spec.NodeName = ""
			p.Status.ContainerStatuses = nil
			return p
		}(), Events: []corev1.Event{warning("FailedScheduling", "0/1 nodes are available: 1 node(s) had untolerated taint.", now)}},
			false, false, ErrUnschedulable, []string{"untolerated taint"}, ""},
		{"kubelet rejected the pod", observation{Pod: rejected}, false, false, ErrRejected,
			[]string{"node node1 rejected the agent pod kwarp-agent-0a1b2c3d4e-xyz12: OutOfcpu: Node didn't have enough resource: cpu"}, ""},
		{"exited", observation{Pod: agentPod(corev1.PodFailed, corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 1, Reason: "Error"}}, false)},
			false, true, nil, nil, ""},
		{"creating", observation{Pod: agentPod(corev1.PodPending, waitingState("ContainerCreating", ""), false),
			Events: []corev1.Event{warning("FailedMount", "MountVolume.SetUp failed", now)}},
			false, false, nil, nil, "pod kwarp-agent-0a1b2c3d4e-xyz12 (node node1): Pending, container kwarp-agent waiting: ContainerCreating, last warning: FailedMount: MountVolume.SetUp failed"},
		{"running, not ready yet", observation{Mode: ModeJob, Pod: agentPod(corev1.PodRunning, runningState, false)},
			false, false, nil, nil, "running, not ready (its gRPC health check does not answer SERVING)"},
		{"ready", observation{Mode: ModeJob, Pod: agentPod(corev1.PodRunning, runningState, true)}, true, false, nil, nil, ""},
		{"ephemeral: running is enough (no probes)", observation{Mode: ModeEphemeral, Container: "kwarp-agent-abcde", Pod: ephemeralRunning},
			true, false, nil, nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.obs.Container == "" {
				tt.obs.Container = ContainerName
			}
			v := assess(tt.obs)
			if v.Ready != tt.ready {
				t.Errorf("Ready = %v, want %v (verdict %+v)", v.Ready, tt.ready, v)
			}
			if (v.Exited != nil) != tt.exited {
				t.Errorf("Exited = %v, want %v", v.Exited, tt.exited)
			}
			if tt.failClass == nil {
				if v.Fail != nil {
					t.Errorf("Fail = %v, want none", v.Fail)
				}
			} else {
				if !errors.Is(v.Fail, tt.failClass) {
					t.Fatalf("Fail = %v, want class %v", v.Fail, tt.failClass)
				}
				for _, w := range tt.failWant {
					if !strings.Contains(v.Fail.Error(), w) {
						t.Errorf("%s\nlacks %q", v.Fail, w)
					}
				}
			}
			if tt.stateWant != "" && !strings.Contains(v.State, tt.stateWant) {
				t.Errorf("State %q\nlacks %q", v.State, tt.stateWant)
			}
		})
	}
}

func TestExitedError(t *testing.T) {
	var logs strings.Builder
	for i := 1; i <= 15; i++ {
		logs.WriteString("line " + string(rune('a'+i)) + "\n")
	}
	err := exitedError(&corev1.ContainerStateTerminated{ExitCode: 1, Reason: "Error"}, logs.String())
	if !errors.Is(err, ErrExited) {
		t.Fatal("not ErrExited")
	}
	msg := err.Error()
	if !strings.HasPrefix(msg, "the agent exited with code 1 (Error) before it was ready; its last lines:\n  line g\n") {
		t.Errorf("message:\n%s", msg)
	}
	if strings.Contains(msg, "line f\n") || !strings.HasSuffix(msg, "line p") {
		t.Errorf("want the last %d lines:\n%s", logTailLines, msg)
	}
	err = exitedError(&corev1.ContainerStateTerminated{ExitCode: 2, Message: "kwarp-agent: flag provided but not defined: -nope"}, "")
	if !strings.Contains(err.Error(), "flag provided but not defined") {
		t.Errorf("termination message not used when there are no logs: %s", err)
	}
}

func TestPodSecurityErrorEphemeral(t *testing.T) {
	err := podSecurityError(`pods "x" is forbidden: violates PodSecurity "baseline:latest": non-default capabilities`, ModeEphemeral)
	if !errors.Is(err, ErrPodSecurity) || !strings.Contains(err.Error(), `agent.mode = "job"`) {
		t.Errorf("%v", err)
	}
}
