package agentpod

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/kwarp-dev/kwarp/kube/target"
	"github.com/kwarp-dev/kwarp/version"
)

// Classes of start failures; test with errors.Is.
var (
	ErrImagePull     = errors.New("agent image cannot be pulled")
	ErrPodSecurity   = errors.New("PodSecurity rejected the agent")
	ErrUnschedulable = errors.New("agent pod cannot be scheduled")
	ErrRejected      = errors.New("agent pod rejected")
	ErrExited        = errors.New("agent exited")
	ErrStartTimeout  = errors.New("agent start timed out")
)

// StartError is an agent that could not start, with a message that says what to do.
type StartError struct {
	Class error
	Msg   string
}

func (e *StartError) Error() string        { return e.Msg }
func (e *StartError) Is(target error) bool { return target == e.Class }

// observation is what Ensure last saw of a starting agent.
type observation struct {
	Mode      Mode
	Image     string
	Container string       // the agent's container name in Pod
	Job       *batchv1.Job // job mode
	Pod       *corev1.Pod  // nil until the Job controller made one
	Events    []corev1.Event
}

// verdict is what the observation means. Exactly one of Ready, Fail and Exited is set when
// the wait is over; otherwise State says what is going on, for the timeout message.
type verdict struct {
	Ready  bool
	Fail   error
	Exited *corev1.ContainerStateTerminated // the caller adds the container's last log lines
	State  string
}

// Container waiting reasons that will not resolve by waiting. A pull failure is final as far
// as a developer at a terminal is concerned: the kubelet's back-off retries for minutes.
var (
	pullReasons  = []string{"ErrImagePull", "ImagePullBackOff", "ErrImageNeverPull", "InvalidImageName", "RegistryUnavailable"}
	startReasons = []string{"CreateContainerConfigError", "CreateContainerError", "RunContainerError", "PreCreateHookError", "PreStartHookError"}
)

// assess reads the Job, the pod, the container status and the events, in the order that gives
// the most precise reason: the container's own state first, then the pod's, then the events.
func assess(o observation) verdict {
	if o.Pod == nil {
		if ev := latestWarning(o.Events, "FailedCreate"); ev != nil {
			return verdict{Fail: failedCreate(ev.Message)}
		}
		if o.Job != nil {
			for _, c := range o.Job.Status.Conditions {
				if c.Type == batchv1.JobFailed && c.Status == corev1.ConditionTrue {
					return verdict{Fail: &StartError{Class: ErrRejected, Msg: fmt.Sprintf("the agent Job %s failed: %s",
						o.Job.Name, join(": ", c.Reason, c.Message))}}
				}
			}
		}
		return verdict{State: "waiting for the Job controller to create the agent pod"}
	}
	p := o.Pod
	cs := containerStatus(p, o.Container)
	if cs != nil {
		switch s := cs.State; {
		case s.Waiting != nil && slices.Contains(pullReasons, s.Waiting.Reason):
			msg := s.Waiting.Message
			if msg == "" {
				if ev := latestWarning(o.Events, "Failed"); ev != nil {
					msg = ev.Message
				}
			}
			return verdict{Fail: pullError(o.Image, join(": ", s.Waiting.Reason, msg))}
		case s.Waiting != nil && slices.Contains(startReasons, s.Waiting.Reason):
			return verdict{Fail: &StartError{Class: ErrRejected, Msg: fmt.Sprintf("the agent container cannot start: %s",
				join(": ", s.Waiting.Reason, s.Waiting.Message))}}
		case s.Terminated != nil:
			return verdict{Exited: s.Terminated}
		case s.Running != nil && (o.Mode == ModeEphemeral || target.PodReady(p)):
			return verdict{Ready: true}
		}
	}
	if p.Status.Phase == corev1.PodFailed {
		// The kubelet refused the pod at admission (OutOfcpu, NodeAffinity, …): with nodeName
		// set it went straight there, without the scheduler's checks.
		return verdict{Fail: &StartError{Class: ErrRejected, Msg: fmt.Sprintf("node %s rejected the agent pod %s: %s",
			orDash(p.Spec.NodeName), p.Name, join(": ", p.Status.Reason, p.Status.Message))}}
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && c.Reason == corev1.PodReasonUnschedulable {
			return verdict{Fail: unschedulable(c.Message)}
		}
	}
	if ev := latestWarning(o.Events, "FailedScheduling"); ev != nil && p.Spec.NodeName == "" {
		return verdict{Fail: unschedulable(ev.Message)}
	}
	return verdict{State: describe(p, cs, o.Events)}
}

// describe is the last known state for a timeout message: "pod kwarp-agent-…-x (node node1):
// Pending, container kwarp-agent waiting: ContainerCreating; last event: FailedMount: …".
func describe(p *corev1.Pod, cs *corev1.ContainerStatus, events []corev1.Event) string {
	parts := []string{fmt.Sprintf("pod %s (node %s): %s", p.Name, orDash(p.Spec.NodeName), orDash(string(p.Status.Phase)))}
	if cs != nil {
		switch s := cs.State; {
		case s.Waiting != nil:
			parts = append(parts, "container "+cs.Name+" waiting: "+join(": ", s.Waiting.Reason, s.Waiting.Message))
		case s.Running != nil:
			parts = append(parts, "container "+cs.Name+" running, not ready (its gRPC health check does not answer SERVING)")
		}
	}
	if ev := latestWarning(events, ""); ev != nil {
		parts = append(parts, "last warning: "+join(": ", ev.Reason, ev.Message))
	}
	return strings.Join(parts, ", ")
}

// failedCreate explains the Job controller's FailedCreate event. PodSecurity admission checks
// pods, not Jobs, so a namespace enforcing "baseline" accepts the Job and then refuses every
// pod it makes: this event is the only place the reason shows.
func failedCreate(msg string) error {
	if strings.Contains(msg, "violates PodSecurity") {
		return podSecurityError(msg, ModeJob)
	}
	return &StartError{Class: ErrRejected, Msg: "the Job controller cannot create the agent pod: " + msg}
}

// podSecurityError says what to do when the namespace's Pod Security level refuses the agent.
func podSecurityError(msg string, mode Mode) error {
	what := "use --agent-ephemeral or agent.namespace (a namespace whose PodSecurity level is privileged)"
	if mode == ModeEphemeral {
		what = "run the agent as a Job instead (agent.mode = \"job\") with agent.namespace set to a namespace whose PodSecurity level is privileged"
	}
	return &StartError{Class: ErrPodSecurity, Msg: fmt.Sprintf("the namespace's PodSecurity policy rejected the agent: %s; %s", msg, what)}
}

func pullError(image, msg string) error {
	return &StartError{Class: ErrImagePull, Msg: fmt.Sprintf("agent image %s cannot be pulled: %s; set %s or agent.image to an image the cluster can pull",
		image, msg, version.AgentImageEnv)}
}

func unschedulable(msg string) error {
	return &StartError{Class: ErrUnschedulable, Msg: "the scheduler cannot place the agent pod: " + msg}
}

// exitedError explains an agent that ended before it was ready, with its last log lines
// (which say why: a missing capability, a target process it could not find).
func exitedError(t *corev1.ContainerStateTerminated, logs string) error {
	var b strings.Builder
	fmt.Fprintf(&b, "the agent exited with code %d", t.ExitCode)
	if t.Reason != "" {
		fmt.Fprintf(&b, " (%s)", t.Reason)
	}
	b.WriteString(" before it was ready")
	logs = strings.TrimSpace(logs)
	if logs == "" {
		logs = strings.TrimSpace(t.Message)
	}
	if logs != "" {
		b.WriteString("; its last lines:\n")
		for _, l := range lastLines(logs, logTailLines) {
			b.WriteString("  " + l + "\n")
		}
	}
	return &StartError{Class: ErrExited, Msg: strings.TrimRight(b.String(), "\n")}
}

// logTailLines is how much of a failed agent's log a message quotes.
const logTailLines = 10

func lastLines(s string, n int) []string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return lines
}

func containerStatus(p *corev1.Pod, name string) *corev1.ContainerStatus {
	for _, list := range [][]corev1.ContainerStatus{p.Status.ContainerStatuses, p.Status.EphemeralContainerStatuses} {
		for i := range list {
			if list[i].Name == name {
				return &list[i]
			}
		}
	}
	return nil
}

// latestWarning is the newest Warning event with that reason ("" = any reason).
func latestWarning(events []corev1.Event, reason string) *corev1.Event {
	var best *corev1.Event
	for i := range events {
		ev := &events[i]
		if ev.Type != corev1.EventTypeWarning || (reason != "" && ev.Reason != reason) {
			continue
		}
		if best == nil || eventTime(ev).After(eventTime(best)) {
			best = ev
		}
	}
	return best
}

// eventTime is when an event last happened: core/v1 events from the kubelet carry
// LastTimestamp, events.k8s.io ones only EventTime.
func eventTime(ev *corev1.Event) time.Time {
	switch {
	case !ev.LastTimestamp.IsZero():
		return ev.LastTimestamp.Time
	case !ev.EventTime.IsZero():
		return ev.EventTime.Time
	case !ev.FirstTimestamp.IsZero():
		return ev.FirstTimestamp.Time
	}
	return ev.CreationTimestamp.Time
}

func join(sep string, parts ...string) string {
	var out []string
	for _, p := range parts {
		if p != "" {
			out = append(out, p)
		}
	}
	return strings.Join(out, sep)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
