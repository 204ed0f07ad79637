package kube

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

const (
	pollInterval = 500 * time.Millisecond
	// explainTimeout bounds the calls that build a wait's error, made after the caller's context
	// has ended and so under a context of their own.
	explainTimeout = 15 * time.Second
	// maxWarnings is how many of the newest Warning events a wait's error quotes: the recent ones
	// say why, the older ones are in the namespace dump.
	maxWarnings = 10
)

// errNeverReady marks a state that polling cannot change, such as a pod that has terminated.
var errNeverReady = errors.New("will never become ready")

// WaitReady waits until every object is ready: Deployments rolled out, Pods Ready; objects of
// other kinds are ready as soon as they exist, which Apply already ensured. Objects without a
// namespace are looked up in ns. The error of a wait that ran out of time says what is not ready
// and why.
func (e *Env) WaitReady(ctx context.Context, ns string, objs ...*unstructured.Unstructured) error {
	for _, obj := range objs {
		objNS := obj.GetNamespace()
		if objNS == "" {
			objNS = ns
		}
		var err error
		switch obj.GroupVersionKind().GroupKind() {
		case schema.GroupKind{Group: "apps", Kind: "Deployment"}:
			err = e.WaitDeploymentReady(ctx, objNS, obj.GetName())
		case schema.GroupKind{Kind: "Pod"}:
			err = e.WaitPodReady(ctx, objNS, obj.GetName())
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// WaitDeploymentReady waits until the Deployment's controller has seen its latest spec and all
// of its replicas are updated and ready.
func (e *Env) WaitDeploymentReady(ctx context.Context, ns, name string) error {
	what := fmt.Sprintf("deployment %s/%s", ns, name)
	check := func(ctx context.Context) (bool, string, error) {
		d, err := e.Client.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, "", err
		}
		ready, why := deploymentReady(d)
		return ready, why, nil
	}
	explain := func(ctx context.Context) string {
		var lines []string
		d, err := e.Client.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			lines = append(lines, fmt.Sprintf("get deployment: %v", err))
		} else {
			lines = append(lines, e.explainPods(ctx, ns, d.Spec.Selector)...)
		}
		return strings.Join(append(lines, e.explainWarnings(ctx, ns, nil)...), "\n")
	}
	return poll(ctx, what, check, explain)
}

// WaitPodReady waits until the Pod is Ready. A pod that has terminated will never be, and
// fails the wait at once.
func (e *Env) WaitPodReady(ctx context.Context, ns, name string) error {
	what := fmt.Sprintf("pod %s/%s", ns, name)
	check := func(ctx context.Context) (bool, string, error) {
		p, err := e.Client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, "", err
		}
		ready, why := podReady(p)
		if !ready && podFinished(p) {
			return false, why, errNeverReady
		}
		return ready, why, nil
	}
	explain := func(ctx context.Context) string {
		return strings.Join(e.explainWarnings(ctx, ns, map[string]bool{name: true}), "\n")
	}
	return poll(ctx, what, check, explain)
}

// poll calls check until it reports done, returns errNeverReady, or ctx ends. Other errors from
// check are taken as passing (the object may not exist yet, the API server may be restarting).
// When ctx ends, the error carries the last state check described, the last error if one
// followed it, and explain's lines (explain runs under a context of its own).
func poll(ctx context.Context, what string, check func(context.Context) (bool, string, error), explain func(context.Context) string) error {
	start := time.Now()
	// An error only counts once the context has survived it until the next poll: calls made
	// close to the deadline fail because of it (client-go's rate limiter even refuses in advance,
	// "would exceed context deadline"), and that must not replace what we knew about the object.
	var state, lastErr, pendingErr string
	ticker := time.NewTicker(pollInterval)
	defer ticker.Stop()
	for {
		done, w, err := check(ctx)
		switch {
		case err == nil && done:
			return nil
		case errors.Is(err, errNeverReady):
			return failWait(fmt.Sprintf("kube: %s %s: %s", what, err, w), err, explain)
		case err != nil:
			pendingErr = err.Error()
		default:
			state, lastErr, pendingErr = w, "", ""
		}
		select {
		case <-ctx.Done():
			why := state
			switch {
			case why == "" && lastErr == "":
				why = "no answer from the API server"
			case why == "":
				why = lastErr
			case lastErr != "":
				why += "; since then: " + lastErr
			}
			msg := fmt.Sprintf("kube: %s not ready after %s (%v): %s", what, time.Since(start).Round(time.Second), ctx.Err(), why)
			return failWait(msg, ctx.Err(), explain)
		case <-ticker.C:
			// select picks at random among ready cases, so the tick may win over a done ctx.
			if pendingErr != "" && ctx.Err() == nil {
				lastErr, pendingErr = pendingErr, ""
			}
		}
	}
}

// failWait appends explain's lines to msg. explain runs under a context of its own because the
// caller's has usually ended.
func failWait(msg string, cause error, explain func(context.Context) string) error {
	ctx, cancel := context.WithTimeout(context.Background(), explainTimeout)
	defer cancel()
	if more := explain(ctx); more != "" {
		msg += "\n" + more
	}
	return &waitError{msg: msg, err: cause}
}

// waitError keeps the cause (the context's error, or errNeverReady) reachable through errors.Is
// while the message explains.
type waitError struct {
	msg string
	err error
}

func (w *waitError) Error() string { return w.msg }
func (w *waitError) Unwrap() error { return w.err }

// explainPods explains every pod the selector matches.
func (e *Env) explainPods(ctx context.Context, ns string, sel *metav1.LabelSelector) []string {
	selector, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		return []string{fmt.Sprintf("  bad selector: %v", err)}
	}
	pods, err := e.PodsOf(ctx, ns, selector.String())
	if err != nil {
		return []string{fmt.Sprintf("  %v", err)}
	}
	return explainPodList(pods)
}

// explainPodList is one line per pod, ready ones included so that "2 of 3" is visible.
func explainPodList(pods []corev1.Pod) []string {
	if len(pods) == 0 {
		return []string{"  no pods (see the events for why none was created)"}
	}
	lines := make([]string, 0, len(pods))
	for i := range pods {
		p := &pods[i]
		if ready, _ := podReady(p); ready {
			lines = append(lines, fmt.Sprintf("  pod %s: ready", p.Name))
			continue
		}
		lines = append(lines, "  "+explainPod(p))
	}
	return lines
}

func (e *Env) explainWarnings(ctx context.Context, ns string, names map[string]bool) []string {
	events, err := e.Client.CoreV1().Events(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return []string{fmt.Sprintf("  list events: %v", err)}
	}
	warnings := newestWarnings(events.Items, maxWarnings, names)
	if len(warnings) == 0 {
		return nil
	}
	return []string{"  newest warning events:", formatEvents(warnings)}
}

// deploymentReady is true once the controller has observed the deployment's current spec and
// every desired replica is updated and ready, with no old replica left; the string says why not.
func deploymentReady(d *appsv1.Deployment) (bool, string) {
	want := int32(1) // the API default when spec.replicas is unset
	if d.Spec.Replicas != nil {
		want = *d.Spec.Replicas
	}
	s := d.Status
	var why string
	switch {
	case s.ObservedGeneration < d.Generation:
		why = fmt.Sprintf("controller has not observed generation %d yet (observed %d)", d.Generation, s.ObservedGeneration)
	case s.UpdatedReplicas != want:
		why = fmt.Sprintf("%d of %d replicas updated", s.UpdatedReplicas, want)
	case s.ReadyReplicas != want:
		why = fmt.Sprintf("%d of %d replicas ready", s.ReadyReplicas, want)
	case s.Replicas > want:
		// Old pods still running would be picked by RunningPodOf and answer for the old spec.
		why = fmt.Sprintf("%d old replicas pending termination", s.Replicas-want)
	default:
		return true, ""
	}
	for _, c := range d.Status.Conditions {
		bad := c.Status == corev1.ConditionFalse
		if c.Type == appsv1.DeploymentReplicaFailure {
			bad = c.Status == corev1.ConditionTrue
		}
		if bad {
			why += fmt.Sprintf("; %s=%s (%s)", c.Type, c.Status, joinNonEmpty(": ", c.Reason, c.Message))
		}
	}
	return false, why
}

// podReady is true when the pod's Ready condition is; the string explains a pod that is not.
func podReady(p *corev1.Pod) (bool, string) {
	if p.DeletionTimestamp == nil && isPodReady(p) {
		return true, ""
	}
	return false, explainPod(p)
}

func isPodReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// podFinished is true for a pod whose containers have all terminated for good.
func podFinished(p *corev1.Pod) bool {
	return p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed
}

// PodsOf lists the pods in ns matching a label selector ("app=web,tier!=db"), sorted by name.
func (e *Env) PodsOf(ctx context.Context, ns, selector string) ([]corev1.Pod, error) {
	list, err := e.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		return nil, fmt.Errorf("kube: list pods in %s matching %q: %w", ns, selector, err)
	}
	sortPods(list.Items)
	return list.Items, nil
}

// RunningPodOf returns a running, ready pod of the deployment (the newest if there are several,
// since after a rollout that is the one running the current spec). It does not wait: call
// WaitDeploymentReady first.
func (e *Env) RunningPodOf(ctx context.Context, ns, deployment string) (*corev1.Pod, error) {
	d, err := e.Client.AppsV1().Deployments(ns).Get(ctx, deployment, metav1.GetOptions{})
	if err != nil {
		if apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("kube: no deployment %s/%s: %w", ns, deployment, err)
		}
		return nil, fmt.Errorf("kube: get deployment %s/%s: %w", ns, deployment, err)
	}
	selector, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil {
		return nil, fmt.Errorf("kube: deployment %s/%s: selector: %w", ns, deployment, err)
	}
	pods, err := e.PodsOf(ctx, ns, selector.String())
	if err != nil {
		return nil, err
	}
	p := pickRunningPod(pods)
	if p == nil {
		return nil, fmt.Errorf("kube: deployment %s/%s has no running and ready pod:\n%s", ns, deployment, strings.Join(explainPodList(pods), "\n"))
	}
	return p, nil
}

// pickRunningPod returns the newest pod that is Running, Ready and not being deleted, or nil.
func pickRunningPod(pods []corev1.Pod) *corev1.Pod {
	var best *corev1.Pod
	for i := range pods {
		p := &pods[i]
		if p.Status.Phase != corev1.PodRunning || p.DeletionTimestamp != nil || !isPodReady(p) {
			continue
		}
		if best == nil || best.CreationTimestamp.Before(&p.CreationTimestamp) {
			best = p
		}
	}
	return best
}
