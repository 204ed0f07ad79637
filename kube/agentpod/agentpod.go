// Package agentpod starts kwarp's agent in the cluster and connects to it. One agent serves one
// target container (sessions on the same container share it); it runs either as a Job on the
// target's node with hostPID (the default: the target pod is untouched) or as an ephemeral
// container in the target pod (for clusters whose policy refuses hostPID). A targetless agent
// is a plain Job that the scheduler places.
//
// Nothing is left behind: the agent lives by a lease (it exits its TTL after the last session),
// its Job carries ttlSecondsAfterFinished, and Ensure deletes a Job it created when the start
// fails. An ephemeral container cannot be removed from its pod; it ends with the lease and
// stays listed, terminated, until the pod is replaced.
//
// Starting never hangs: Ensure watches the agent pod and the events about it and turns what
// goes wrong (an image that cannot be pulled, a PodSecurity refusal, an agent that exits) into
// an error within seconds, with the last known state when the overall timeout ends it.
//
// The CLI reaches the agent through the API server (Dial: a port-forward and gRPC on top), so a
// session needs nothing but a kubeconfig. The connection is plaintext inside the API server's
// TLS tunnel for now; mutual TLS with a key made for the session comes later (DESIGN.md).
package agentpod

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"google.golang.org/grpc"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/retry"

	"github.com/kwarp-dev/kwarp/kube"
	"github.com/kwarp-dev/kwarp/kube/target"
	"github.com/kwarp-dev/kwarp/version"
)

// Mode is how the agent runs.
type Mode string

const (
	ModeJob       Mode = "job"
	ModeEphemeral Mode = "ephemeral"
)

// Defaults of Options.
const (
	DefaultTTL          = 30 * time.Second
	DefaultStartTimeout = 60 * time.Second
)

// Options say which agent to ensure.
type Options struct {
	Client     *kube.Clientset
	RESTConfig *rest.Config
	// Target is the container the agent enters; nil for a targetless agent.
	Target *target.Resolved
	// Namespace is where a Job agent runs; default the target's. Required when targetless.
	Namespace string
	// Image is the agent image; default version.AgentImage().
	Image string
	// Mode is ModeJob (default) or ModeEphemeral (needs a Target).
	Mode Mode
	// TTL is the agent's lease after the last session; default DefaultTTL.
	TTL time.Duration
	// IdleStart is how long the agent waits for its first session before it exits; 0 = the
	// agent's default (2m).
	IdleStart time.Duration
	// Port the agent listens on; 0 = DefaultJobPort for a Job, a random free one in
	// 20000-40000 for an ephemeral agent (which shares the target's network namespace).
	Port       int
	Privileged bool
	SessionID  string
	// Progress receives one-line status updates for the user ("starting agent on node1…").
	Progress func(string)
	// LogLevel is passed to the agent's --log-level; "" = its default.
	LogLevel string
	// StartTimeout bounds the whole start; default DefaultStartTimeout.
	StartTimeout time.Duration
	// Log receives kwarp's own debug lines; the zero value discards them.
	Log zerolog.Logger
}

func (o Options) withDefaults() (Options, error) {
	if o.Client == nil || o.RESTConfig == nil {
		return o, errors.New("agentpod: Options.Client and Options.RESTConfig are required")
	}
	if o.Mode == "" {
		o.Mode = ModeJob
	}
	if o.Mode != ModeJob && o.Mode != ModeEphemeral {
		return o, fmt.Errorf("agent mode %q: use %q or %q", o.Mode, ModeJob, ModeEphemeral)
	}
	if o.Mode == ModeEphemeral && o.Target == nil {
		return o, errors.New("an ephemeral agent needs a target: without one there is no pod to add it to")
	}
	if o.Namespace == "" && o.Target != nil {
		o.Namespace = o.Target.Namespace
	}
	if o.Namespace == "" {
		return o, errors.New("agentpod: a targetless agent needs Options.Namespace")
	}
	if o.Image == "" {
		o.Image = version.AgentImage()
	}
	o.TTL = durationOr(o.TTL, DefaultTTL)
	o.StartTimeout = durationOr(o.StartTimeout, DefaultStartTimeout)
	if o.Mode == ModeJob && o.Port == 0 {
		o.Port = DefaultJobPort
	}
	if o.Progress == nil {
		o.Progress = func(string) {}
	}
	return o, nil
}

// Agent is a running agent pod (or ephemeral container) and the connections made to it.
type Agent struct {
	Mode      Mode   `json:"mode"`
	Namespace string `json:"namespace"`
	Pod       string `json:"pod"`
	Container string `json:"container"` // the agent's container in Pod
	Node      string `json:"node"`
	Port      int    `json:"port"`
	Job       string `json:"job,omitempty"` // the agent's Job (ModeJob)
	Image     string `json:"image"`
	// Reused is true when Ensure found the agent already running (a warm start).
	Reused bool `json:"reused"`

	client    *kube.Clientset
	config    *rest.Config
	log       zerolog.Logger
	sessionID string

	mu       sync.Mutex
	forwards []*forward
	conns    []*grpc.ClientConn

	tunnelMu sync.Mutex
	tunnels  *forward // the tunnels' own port-forward (see Tunnel)
}

// Ensure returns a ready agent for o.Target: a running one when there is (a warm start), else
// a new one. It fails within seconds when the agent cannot start, saying why.
func Ensure(ctx context.Context, o Options) (*Agent, error) {
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	if o.Mode == ModeEphemeral {
		return ensureEphemeral(ctx, o)
	}
	return ensureJob(ctx, o)
}

// explain words an API failure for the user (see kube.Explain).
func (o Options) explain(err error, verb, resource, ns string) error {
	return kube.Explain(o.RESTConfig.Host, verb, resource, ns, err)
}

// statusMessage is the API server's own message in err.
func statusMessage(err error) string {
	var se apierrors.APIStatus
	if errors.As(err, &se) && se.Status().Message != "" {
		return se.Status().Message
	}
	return err.Error()
}

func (o Options) agent(pod *corev1.Pod, container string, port int, reused bool) *Agent {
	return &Agent{
		Mode: o.Mode, Namespace: pod.Namespace, Pod: pod.Name, Container: container, Node: pod.Spec.NodeName,
		Port: port, Image: o.Image, Reused: reused,
		client: o.Client, config: o.RESTConfig, log: o.Log, sessionID: o.SessionID,
	}
}

// ---- job mode ----

func ensureJob(ctx context.Context, o Options) (*Agent, error) {
	name := jobName(o)
	if o.Target != nil {
		if pod, err := findReadyJobPod(ctx, o, name); err != nil {
			return nil, err
		} else if pod != nil {
			o.Progress(fmt.Sprintf("reusing agent %s on %s", pod.Name, pod.Spec.NodeName))
			a := o.agent(pod, ContainerName, o.Port, true)
			a.Job = name
			return a, nil
		}
	}
	where := "a node"
	if o.Target != nil {
		where = o.Target.Node
	}
	o.Progress(fmt.Sprintf("starting agent on %s…", where))
	for attempt := 0; ; attempt++ {
		job, created, err := createJob(ctx, o, name)
		if err != nil {
			return nil, err
		}
		a, err := waitJob(ctx, o, job)
		if errors.Is(err, errLeaseEnded) && attempt < 2 {
			// We joined a Job whose agent's lease ran out just then: it exited 0 and will
			// never be ready again. Nobody holds it (that is why it ended), so replace it.
			o.Log.Debug().Str("job", job.Name).Msg("joined an agent whose lease ended; replacing it")
			if err := replaceFinishedJob(ctx, o, job.Name); err != nil {
				return nil, err
			}
			continue
		}
		if err != nil && created {
			// A Job that could not start would otherwise retry (FailedCreate) or sit in
			// ImagePullBackOff forever: nothing is left behind.
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			if derr := deleteJob(dctx, o.Client.Jobs(o.Namespace), job.Name); derr != nil {
				o.Log.Warn().Err(derr).Str("job", job.Name).Msg("delete the agent Job that failed to start")
			}
			cancel()
		}
		if errors.Is(err, errLeaseEnded) {
			err = &StartError{Class: ErrExited, Msg: "the agent exited (its lease ended) before it was ready; try again"}
		}
		return a, err
	}
}

// errLeaseEnded is an agent that exited 0 before it was ready: its lease ended (it was an
// agent about to go away when this session joined it).
var errLeaseEnded = errors.New("the agent's lease ended")

// replaceFinishedJob deletes a Job whose agent is done and waits until it is gone, so the
// same name can be created again.
func replaceFinishedJob(ctx context.Context, o Options, name string) error {
	jobs := o.Client.Jobs(o.Namespace)
	if err := deleteJob(ctx, jobs, name); err != nil {
		return err
	}
	return waitGone(ctx, func(ctx context.Context) error {
		_, err := jobs.Get(ctx, name, metav1.GetOptions{})
		return err
	})
}

// findReadyJobPod is a Running and Ready pod of the agent Job name, if there is one.
func findReadyJobPod(ctx context.Context, o Options, name string) (*corev1.Pod, error) {
	sel := metav1.FormatLabelSelector(&metav1.LabelSelector{MatchLabels: labels(o)})
	pods, err := o.Client.Pods(o.Namespace).List(ctx, metav1.ListOptions{LabelSelector: sel})
	if err != nil {
		return nil, o.explain(err, "list", "pods", o.Namespace)
	}
	for i := range pods.Items {
		p := &pods.Items[i]
		if p.Labels["job-name"] != name && p.Labels["batch.kubernetes.io/job-name"] != name {
			continue
		}
		if p.DeletionTimestamp == nil && p.Status.Phase == corev1.PodRunning && target.PodReady(p) {
			return p, nil
		}
	}
	return nil, nil
}

// createJob creates the agent Job, or joins the one of the same name another session is
// starting. A finished Job of that name (its agent's lease ended, its TTL not yet) is replaced.
// created reports whether this call made the Job (and so owns its cleanup on failure).
func createJob(ctx context.Context, o Options, name string) (*batchv1.Job, bool, error) {
	jobs := o.Client.Jobs(o.Namespace)
	for attempt := 0; ; attempt++ {
		job, err := jobs.Create(ctx, buildJob(o, name), metav1.CreateOptions{})
		if err == nil {
			o.Log.Debug().Str("job", name).Str("namespace", o.Namespace).Msg("agent Job created")
			return job, true, nil
		}
		if !apierrors.IsAlreadyExists(err) {
			return nil, false, o.explain(err, "create", "jobs.batch", o.Namespace)
		}
		existing, err := jobs.Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			continue // gone between Create and Get: create again
		}
		if err != nil {
			return nil, false, o.explain(err, "get", "jobs.batch", o.Namespace)
		}
		if existing.DeletionTimestamp == nil && !jobFinished(existing) {
			o.Log.Debug().Str("job", name).Msg("joining the agent Job another session started")
			return existing, false, nil
		}
		if attempt >= 2 {
			return nil, false, fmt.Errorf("the agent Job %s/%s is finishing and was not removed in time; try again in a few seconds", o.Namespace, name)
		}
		if err := replaceFinishedJob(ctx, o, name); err != nil {
			return nil, false, err
		}
	}
}

func jobFinished(j *batchv1.Job) bool {
	for _, c := range j.Status.Conditions {
		if (c.Type == batchv1.JobComplete || c.Type == batchv1.JobFailed) && c.Status == corev1.ConditionTrue {
			return true
		}
	}
	return false
}

// deleteJob deletes with background propagation: the garbage collector removes the pod, and
// nobody waits for its grace period.
func deleteJob(ctx context.Context, jobs interface {
	Delete(context.Context, string, metav1.DeleteOptions) error
}, name string) error {
	policy := metav1.DeletePropagationBackground
	err := jobs.Delete(ctx, name, metav1.DeleteOptions{PropagationPolicy: &policy})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete agent Job %s: %w", name, err)
	}
	return nil
}

func waitGone(ctx context.Context, get func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	for {
		err := get(ctx)
		if apierrors.IsNotFound(err) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for the old agent Job to go away: %w", ctx.Err())
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func waitJob(ctx context.Context, o Options, job *batchv1.Job) (*Agent, error) {
	podSel, err := metav1.LabelSelectorAsSelector(job.Spec.Selector)
	if err != nil || job.Spec.Selector == nil {
		return nil, fmt.Errorf("agent Job %s has no pod selector", job.Name)
	}
	pods := o.Client.Pods(o.Namespace)
	observe := func(ctx context.Context) (observation, error) {
		obs := observation{Mode: ModeJob, Image: o.Image, Container: ContainerName}
		if j, err := o.Client.Jobs(o.Namespace).Get(ctx, job.Name, metav1.GetOptions{}); err == nil {
			obs.Job = j
		} else if apierrors.IsNotFound(err) {
			return obs, fmt.Errorf("the agent Job %s/%s was deleted while it started", o.Namespace, job.Name)
		}
		list, err := pods.List(ctx, metav1.ListOptions{LabelSelector: podSel.String()})
		if err != nil {
			return obs, o.explain(err, "list", "pods", o.Namespace)
		}
		obs.Pod = newestPod(list.Items)
		obs.Events = eventsAbout(ctx, o, job.UID, "")
		if obs.Pod != nil {
			obs.Events = append(obs.Events, eventsAbout(ctx, o, obs.Pod.UID, "")...)
		}
		return obs, nil
	}
	watchPods := func(ctx context.Context) (watch.Interface, error) {
		return pods.Watch(ctx, metav1.ListOptions{LabelSelector: podSel.String()})
	}
	pod, err := waitFor(ctx, o, ContainerName, observe, watchPods)
	if err != nil {
		return nil, err
	}
	a := o.agent(pod, ContainerName, o.Port, false)
	a.Job = job.Name
	return a, nil
}

func newestPod(pods []corev1.Pod) *corev1.Pod {
	var best *corev1.Pod
	for i := range pods {
		p := &pods[i]
		if best == nil || p.CreationTimestamp.After(best.CreationTimestamp.Time) {
			best = p
		}
	}
	return best
}

// eventsAbout lists the events of one object. Events are a courtesy: a user who may not list
// them still gets the pod's own status.
func eventsAbout(ctx context.Context, o Options, uid types.UID, fieldPath string) []corev1.Event {
	sel := fields.OneTermEqualSelector("involvedObject.uid", string(uid)).String()
	list, err := o.Client.Events(o.Namespace).List(ctx, metav1.ListOptions{FieldSelector: sel})
	if err != nil {
		o.Log.Debug().Err(err).Msg("list agent events")
		return nil
	}
	if fieldPath == "" {
		return list.Items
	}
	var out []corev1.Event
	for _, ev := range list.Items {
		if ev.InvolvedObject.FieldPath == "" || strings.Contains(ev.InvolvedObject.FieldPath, fieldPath) {
			out = append(out, ev)
		}
	}
	return out
}

// waitFor observes until assess says ready or failed, or StartTimeout passes. A watch on the
// pod wakes it as soon as something changes; a ticker re-observes anyway, for events (which
// the watch does not see) and in case the watch breaks.
func waitFor(ctx context.Context, o Options, container string,
	observe func(context.Context) (observation, error),
	watchPods func(context.Context) (watch.Interface, error)) (*corev1.Pod, error) {
	wctx, cancel := context.WithTimeout(ctx, o.StartTimeout)
	defer cancel()
	var wake <-chan watch.Event
	if w, err := watchPods(wctx); err == nil {
		defer w.Stop()
		wake = w.ResultChan()
	}
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	state := "no agent pod seen yet"
	for {
		obs, err := observe(wctx)
		if err != nil && wctx.Err() == nil {
			return nil, err
		}
		if err == nil {
			v := assess(obs)
			switch {
			case v.Ready:
				return obs.Pod, nil
			case v.Fail != nil:
				return nil, v.Fail
			case v.Exited != nil && v.Exited.ExitCode == 0:
				return nil, errLeaseEnded
			case v.Exited != nil:
				return nil, exitedError(v.Exited, tailLogs(ctx, o, obs.Pod, container))
			}
			if v.State != state {
				o.Log.Debug().Str("state", v.State).Msg("agent starting")
				state = v.State
			}
		}
		select {
		case <-wctx.Done():
			if ctx.Err() != nil {
				return nil, fmt.Errorf("starting the agent: %w", ctx.Err())
			}
			return nil, &StartError{Class: ErrStartTimeout, Msg: fmt.Sprintf("the agent was not ready within %s; last state: %s",
				o.StartTimeout, state)}
		case _, ok := <-wake:
			if !ok {
				wake = nil // the watch ended; the ticker carries on
			}
		case <-tick.C:
		}
	}
}

// tailLogs is the end of a container's log (or of its previous instance), "" when unavailable.
func tailLogs(ctx context.Context, o Options, pod *corev1.Pod, container string) string {
	if pod == nil {
		return ""
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	tail, limit := int64(logTailLines), int64(16<<10)
	raw, err := o.Client.Pods(pod.Namespace).GetLogs(pod.Name, &corev1.PodLogOptions{
		Container: container, TailLines: &tail, LimitBytes: &limit,
	}).DoRaw(ctx)
	if err != nil {
		o.Log.Debug().Err(err).Msg("read the agent's logs")
		return ""
	}
	return string(raw)
}

// ---- ephemeral mode ----

func ensureEphemeral(ctx context.Context, o Options) (*Agent, error) {
	t := o.Target
	pods := o.Client.Pods(t.Namespace)
	pod, err := pods.Get(ctx, t.Pod, metav1.GetOptions{})
	if err != nil {
		return nil, o.explain(err, "get", "pods", t.Namespace)
	}
	if ec, port := runningEphemeral(pod, o); ec != "" {
		o.Progress(fmt.Sprintf("reusing agent %s in pod %s", ec, pod.Name))
		return o.agent(pod, ec, port, true), nil
	}
	if o.Port == 0 {
		o.Port = pickPort(pod)
	}
	name := ephemeralName()
	ec := buildEphemeral(o, name)
	o.Progress(fmt.Sprintf("starting agent in pod %s…", pod.Name))
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur, err := pods.Get(ctx, t.Pod, metav1.GetOptions{})
		if err != nil {
			return err
		}
		cur.Spec.EphemeralContainers = append(cur.Spec.EphemeralContainers, ec)
		_, err = pods.UpdateEphemeralContainers(ctx, t.Pod, cur, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		if apierrors.IsForbidden(err) && strings.Contains(err.Error(), "violates PodSecurity") {
			return nil, podSecurityError(statusMessage(err), ModeEphemeral)
		}
		return nil, o.explain(err, "update", "pods/ephemeralcontainers", t.Namespace)
	}
	observe := func(ctx context.Context) (observation, error) {
		obs := observation{Mode: ModeEphemeral, Image: o.Image, Container: name}
		p, err := pods.Get(ctx, t.Pod, metav1.GetOptions{})
		if err != nil {
			return obs, o.explain(err, "get", "pods", t.Namespace)
		}
		obs.Pod = p
		obs.Events = eventsAbout(ctx, o, p.UID, "{"+name+"}")
		return obs, nil
	}
	watchPod := func(ctx context.Context) (watch.Interface, error) {
		return pods.Watch(ctx, metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("metadata.name", t.Pod).String()})
	}
	p, err := waitFor(ctx, o, name, observe, watchPod)
	if errors.Is(err, errLeaseEnded) {
		return nil, &StartError{Class: ErrExited, Msg: fmt.Sprintf("the agent %s exited before it was ready; its log: kubectl logs -n %s %s -c %s",
			name, t.Namespace, t.Pod, name)}
	}
	if err != nil {
		return nil, err
	}
	return o.agent(p, name, o.Port, false), nil
}

// runningEphemeral finds a running kwarp agent among the pod's ephemeral containers that
// serves the same container with the same image and privilege, and its port.
func runningEphemeral(pod *corev1.Pod, o Options) (string, int) {
	want := securityContext(o)
	for _, ec := range pod.Spec.EphemeralContainers {
		if !strings.HasPrefix(ec.Name, ContainerName+"-") || ec.Image != o.Image || ec.TargetContainerName != o.Target.Container {
			continue
		}
		if (ec.SecurityContext != nil && ec.SecurityContext.Privileged != nil && *ec.SecurityContext.Privileged) != (want.Privileged != nil) {
			continue
		}
		port := portFromArgs(ec.Args)
		if port == 0 || (o.Port != 0 && port != o.Port) {
			continue
		}
		if cs := containerStatus(pod, ec.Name); cs != nil && cs.State.Running != nil {
			return ec.Name, port
		}
	}
	return "", 0
}

// ---- connections ----

// Close closes the gRPC connections Dial made and stops their port-forwards. The agent itself
// stays for its lease, for the next session to reuse.
func (a *Agent) Close() error {
	a.mu.Lock()
	conns, fws := a.conns, a.forwards
	a.conns, a.forwards = nil, nil
	a.mu.Unlock()
	var errs []error
	for _, c := range conns {
		if err := c.Close(); err != nil && !strings.Contains(err.Error(), "already closed") {
			errs = append(errs, err)
		}
	}
	for _, f := range slices.Backward(fws) {
		f.close()
	}
	return errors.Join(errs...)
}

// String names the agent for messages: "kwarp-agent-0a1b2c3d4e-x7k2p on node1".
func (a *Agent) String() string {
	if a.Mode == ModeEphemeral {
		return fmt.Sprintf("%s in pod %s/%s", a.Container, a.Namespace, a.Pod)
	}
	return fmt.Sprintf("%s/%s on %s", a.Namespace, a.Pod, orDash(a.Node))
}
