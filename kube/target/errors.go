package target

import (
	"context"
	"errors"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kwarp-dev/kwarp/kube"
)

// Classes of the cluster's answers Resolve turns into errors; test with errors.Is.
var (
	ErrNotFound         = errors.New("target not found")
	ErrNamespaceMissing = errors.New("namespace not found")
	ErrNoRunningPod     = errors.New("target has no running pod")
	ErrUnknownContainer = errors.New("unknown container")
)

// Error is a resolution failure with a message written for the developer.
type Error struct {
	Class error
	Msg   string
}

func (e *Error) Error() string        { return e.Msg }
func (e *Error) Is(target error) bool { return target == e.Class }

// maxNames bounds the names a "not found" message lists: enough to spot a typo, short enough
// to read.
const maxNames = 10

// notFound builds the error for a target that does not exist, asking the cluster what does:
// the objects of that kind in the namespace, or whether the namespace itself is missing.
func notFound(ctx context.Context, c *kube.Clients, ns string, kind Kind, name string) error {
	names, more, err := listNames(ctx, c, ns, kind, maxNames)
	if err != nil {
		// Listing is a courtesy; the message still says what is missing.
		names, more = nil, -1
	}
	nsMissing := false
	if err == nil && len(names) == 0 {
		if _, err := c.Kube.Namespaces().Get(ctx, ns, metav1.GetOptions{}); apierrors.IsNotFound(err) {
			nsMissing = true
		}
	}
	return notFoundError(kind, name, ns, names, more, nsMissing)
}

// notFoundError words it. more < 0 means the names could not be listed.
func notFoundError(kind Kind, name, ns string, names []string, more int, nsMissing bool) error {
	if nsMissing {
		return &Error{Class: ErrNamespaceMissing, Msg: fmt.Sprintf(
			"namespace %q does not exist (looking for %s/%s); pass the right one with -n (kubectl get namespaces lists them)",
			ns, kind, name)}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s/%s not found in namespace %q", kind, name, ns)
	switch {
	case more < 0:
	case len(names) == 0:
		fmt.Fprintf(&b, ", which has no %s", kind.Plural())
	default:
		fmt.Fprintf(&b, "; %s there: %s", kind.Plural(), strings.Join(names, ", "))
		if more > 0 {
			fmt.Fprintf(&b, " and %d more", more)
		}
	}
	fmt.Fprintf(&b, "; `kwarp ls -n %s` lists every target", ns)
	return &Error{Class: ErrNotFound, Msg: b.String()}
}

// listNames returns up to limit names of kind in ns and how many more there are.
func listNames(ctx context.Context, c *kube.Clients, ns string, kind Kind, limit int) ([]string, int, error) {
	opts := metav1.ListOptions{Limit: int64(limit)}
	var names []string
	var meta metav1.ListMeta
	switch kind {
	case KindPod:
		l, err := c.Kube.Pods(ns).List(ctx, opts)
		if err != nil {
			return nil, 0, err
		}
		for _, o := range l.Items {
			names = append(names, o.Name)
		}
		meta = l.ListMeta
	case KindDeployment:
		l, err := c.Kube.Deployments(ns).List(ctx, opts)
		if err != nil {
			return nil, 0, err
		}
		for _, o := range l.Items {
			names = append(names, o.Name)
		}
		meta = l.ListMeta
	case KindStatefulSet:
		l, err := c.Kube.StatefulSets(ns).List(ctx, opts)
		if err != nil {
			return nil, 0, err
		}
		for _, o := range l.Items {
			names = append(names, o.Name)
		}
		meta = l.ListMeta
	case KindJob:
		l, err := c.Kube.Jobs(ns).List(ctx, opts)
		if err != nil {
			return nil, 0, err
		}
		for _, o := range l.Items {
			names = append(names, o.Name)
		}
		meta = l.ListMeta
	case KindCronJob:
		l, err := c.Kube.CronJobs(ns).List(ctx, opts)
		if err != nil {
			return nil, 0, err
		}
		for _, o := range l.Items {
			names = append(names, o.Name)
		}
		meta = l.ListMeta
	case KindRollout:
		l, err := c.Dynamic.Resource(RolloutGVR).Namespace(ns).List(ctx, opts)
		if err != nil {
			return nil, 0, err
		}
		for _, o := range l.Items {
			names = append(names, o.GetName())
		}
		if n := l.GetRemainingItemCount(); n != nil {
			return names, int(*n), nil
		}
		return names, 0, nil
	}
	more := 0
	if meta.RemainingItemCount != nil {
		more = int(*meta.RemainingItemCount)
	}
	return names, more, nil
}

// noRunningPod says that a workload has no pod to target, and in what state its pods are.
func noRunningPod(ref, ns, selector, container string, pods []corev1.Pod) error {
	if len(pods) == 0 {
		return &Error{Class: ErrNoRunningPod, Msg: fmt.Sprintf(
			"%s in namespace %q has no pods (selector %s); is it scaled to zero?", ref, ns, selector)}
	}
	const maxPods = 5
	var states []string
	for i := range pods {
		if i == maxPods {
			states = append(states, fmt.Sprintf("and %d more", len(pods)-maxPods))
			break
		}
		states = append(states, pods[i].Name+" "+podState(&pods[i], container))
	}
	return &Error{Class: ErrNoRunningPod, Msg: fmt.Sprintf("%s in namespace %q has no running pod: %s",
		ref, ns, strings.Join(states, "; "))}
}

// podState is a pod's phase and, when something is wrong, why: the reason the pod or the
// target container gives ("Pending: container app waiting: ImagePullBackOff: …").
func podState(p *corev1.Pod, container string) string {
	if p.DeletionTimestamp != nil {
		return "Terminating"
	}
	parts := []string{string(p.Status.Phase)}
	if p.Status.Phase == "" {
		parts[0] = "Unknown"
	}
	if p.Status.Reason != "" {
		parts = append(parts, joinNonEmpty(": ", p.Status.Reason, p.Status.Message))
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse {
			parts = append(parts, joinNonEmpty(": ", "not scheduled", c.Reason, c.Message))
		}
	}
	for _, cs := range p.Status.ContainerStatuses {
		if container != "" && cs.Name != container {
			continue
		}
		switch s := cs.State; {
		case s.Waiting != nil:
			parts = append(parts, joinNonEmpty(": ", "container "+cs.Name+" waiting", s.Waiting.Reason, s.Waiting.Message))
		case s.Terminated != nil:
			parts = append(parts, fmt.Sprintf("container %s terminated: %s (exit code %d)", cs.Name, s.Terminated.Reason, s.Terminated.ExitCode))
		}
	}
	return strings.Join(parts, ", ")
}

// unknownContainer names the containers the pod does have, sidecars marked, and says when the
// name is an init container (kwarp works on a running container, which init ones are not).
func unknownContainer(ref string, spec *corev1.PodSpec, want string) error {
	var names []string
	for _, c := range spec.Containers {
		n := c.Name
		if IsMeshSidecar(n) {
			n += " (mesh sidecar)"
		}
		names = append(names, n)
	}
	why := fmt.Sprintf("%s has no container %q", ref, want)
	for _, c := range spec.InitContainers {
		if c.Name == want {
			why = fmt.Sprintf("%q is an init container of %s; kwarp targets running containers", want, ref)
		}
	}
	return &Error{Class: ErrUnknownContainer, Msg: fmt.Sprintf("%s; its containers: %s", why, strings.Join(names, ", "))}
}

func joinNonEmpty(sep string, parts ...string) string {
	var out []string
	for _, p := range parts {
		if p != "" {
			out = append(out, p)
		}
	}
	return strings.Join(out, sep)
}
