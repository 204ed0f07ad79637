package target

import (
	"context"
	"fmt"
	"slices"
	"strings"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"

	"github.com/kwarp-dev/kwarp/kube"
)

// RolloutGVR is Argo Rollouts' resource. kwarp reads it with the dynamic client so that it
// does not depend on Argo's Go module for one field (the selector) and a pod template.
var RolloutGVR = schema.GroupVersionResource{Group: "argoproj.io", Version: "v1alpha1", Resource: "rollouts"}

// workload is what Resolve needs from any kind: which pods are its own, and the pod template
// (to check -c against before there is a pod, and to list containers in `kwarp ls`).
type workload struct {
	selector labels.Selector
	template *corev1.PodTemplateSpec // nil when the kind has none we can read
}

// Resolve finds the container a session targets: for a pod, that pod; for a workload, its
// newest Running pod whose target container runs, Ready ones first; for a CronJob, the same
// among the pods of its newest Job that has one. container "" picks DefaultContainer.
func Resolve(ctx context.Context, c *kube.Clients, ns string, kind Kind, name, container string) (*Resolved, error) {
	ref := string(kind) + "/" + name
	if kind == KindPod {
		pod, err := c.Kube.Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil, notFound(ctx, c, ns, kind, name)
		}
		if err != nil {
			return nil, c.Explain(err, "get", "pods", ns)
		}
		chosen, skipped, err := chooseContainer(ref, &pod.Spec, pod.Annotations, container)
		if err != nil {
			return nil, err
		}
		if p, _ := pickPod([]corev1.Pod{*pod}, chosen); p == nil {
			return nil, &Error{Class: ErrNoRunningPod, Msg: fmt.Sprintf("%s in namespace %q is not running: %s",
				ref, ns, podState(pod, chosen))}
		}
		return fromPod(kind, name, pod, chosen, skipped), nil
	}

	if kind == KindCronJob {
		return resolveCronJob(ctx, c, ns, name, container)
	}
	w, err := getWorkload(ctx, c, ns, kind, name)
	if err != nil {
		return nil, err
	}
	return resolveWorkload(ctx, c, ns, kind, name, container, w)
}

func resolveWorkload(ctx context.Context, c *kube.Clients, ns string, kind Kind, name, container string, w *workload) (*Resolved, error) {
	ref := string(kind) + "/" + name
	pods, err := c.Kube.Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: w.selector.String()})
	if err != nil {
		return nil, c.Explain(err, "list", "pods", ns)
	}
	// The template says which container -c means before any pod exists; a rollout that
	// points at a Deployment's template (workloadRef) is checked against its first pod.
	spec, annotations := templateSpec(w.template, pods.Items)
	if spec == nil {
		return nil, noRunningPod(ref, ns, w.selector.String(), "", pods.Items)
	}
	chosen, skipped, err := chooseContainer(ref, spec, annotations, container)
	if err != nil {
		return nil, err
	}
	pod, _ := pickPod(pods.Items, chosen)
	if pod == nil {
		return nil, noRunningPod(ref, ns, w.selector.String(), chosen, pods.Items)
	}
	return fromPod(kind, name, pod, chosen, skipped), nil
}

func templateSpec(t *corev1.PodTemplateSpec, pods []corev1.Pod) (*corev1.PodSpec, map[string]string) {
	if t != nil && len(t.Spec.Containers) > 0 {
		return &t.Spec, t.Annotations
	}
	if len(pods) > 0 {
		return &pods[0].Spec, pods[0].Annotations
	}
	return nil, nil
}

func resolveCronJob(ctx context.Context, c *kube.Clients, ns, name, container string) (*Resolved, error) {
	ref := "cronjob/" + name
	cj, err := c.Kube.CronJobs(ns).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, notFound(ctx, c, ns, KindCronJob, name)
	}
	if err != nil {
		return nil, c.Explain(err, "get", "cronjobs.batch", ns)
	}
	tmpl := &cj.Spec.JobTemplate.Spec.Template
	chosen, skipped, err := chooseContainer(ref, &tmpl.Spec, tmpl.Annotations, container)
	if err != nil {
		return nil, err
	}
	jobs, err := c.Kube.Jobs(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, c.Explain(err, "list", "jobs.batch", ns)
	}
	owned := ownedJobs(jobs.Items, cj.UID)
	if len(owned) == 0 {
		return nil, &Error{Class: ErrNoRunningPod, Msg: fmt.Sprintf(
			"%s in namespace %q has no Job yet (schedule %q); start one now with: kubectl create job --from=cronjob/%s %s-manual -n %s",
			ref, ns, cj.Spec.Schedule, name, name, ns)}
	}
	var newestPods []corev1.Pod
	for i, job := range owned {
		sel, err := metav1.LabelSelectorAsSelector(job.Spec.Selector)
		if err != nil || job.Spec.Selector == nil {
			continue
		}
		pods, err := c.Kube.Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
		if err != nil {
			return nil, c.Explain(err, "list", "pods", ns)
		}
		if i == 0 {
			newestPods = pods.Items
		}
		if pod, _ := pickPod(pods.Items, chosen); pod != nil {
			r := fromPod(KindCronJob, name, pod, chosen, skipped)
			r.Note = strings.Replace(r.Note, " → ", " → job "+job.Name+", ", 1)
			return r, nil
		}
	}
	return nil, noRunningPod(ref+" (newest job "+owned[0].Name+")", ns, "job-name="+owned[0].Name, chosen, newestPods)
}

// ownedJobs are the Jobs a CronJob created, newest first.
func ownedJobs(jobs []batchv1.Job, owner types.UID) []batchv1.Job {
	var out []batchv1.Job
	for _, j := range jobs {
		for _, o := range j.OwnerReferences {
			if o.UID == owner {
				out = append(out, j)
				break
			}
		}
	}
	slices.SortStableFunc(out, func(a, b batchv1.Job) int {
		if c := b.CreationTimestamp.Compare(a.CreationTimestamp.Time); c != 0 {
			return c
		}
		return strings.Compare(b.Name, a.Name)
	})
	return out
}

// getWorkload reads a Deployment, StatefulSet, Job or Rollout's selector and pod template.
func getWorkload(ctx context.Context, c *kube.Clients, ns string, kind Kind, name string) (*workload, error) {
	var sel *metav1.LabelSelector
	var tmpl *corev1.PodTemplateSpec
	var err error
	switch kind {
	case KindDeployment:
		dep, e := c.Kube.Deployments(ns).Get(ctx, name, metav1.GetOptions{})
		err = e
		if e == nil {
			sel, tmpl = dep.Spec.Selector, &dep.Spec.Template
		}
	case KindStatefulSet:
		sts, e := c.Kube.StatefulSets(ns).Get(ctx, name, metav1.GetOptions{})
		err = e
		if e == nil {
			sel, tmpl = sts.Spec.Selector, &sts.Spec.Template
		}
	case KindJob:
		job, e := c.Kube.Jobs(ns).Get(ctx, name, metav1.GetOptions{})
		err = e
		if e == nil {
			sel, tmpl = job.Spec.Selector, &job.Spec.Template
		}
	case KindRollout:
		return getRollout(ctx, c, ns, name)
	default:
		return nil, fmt.Errorf("target kind %q has no workload", kind)
	}
	if apierrors.IsNotFound(err) {
		return nil, notFound(ctx, c, ns, kind, name)
	}
	if err != nil {
		return nil, c.Explain(err, "get", kind.Resource(), ns)
	}
	return newWorkload(string(kind)+"/"+name, sel, tmpl)
}

func newWorkload(ref string, sel *metav1.LabelSelector, tmpl *corev1.PodTemplateSpec) (*workload, error) {
	if sel == nil || (len(sel.MatchLabels) == 0 && len(sel.MatchExpressions) == 0) {
		return nil, &Error{Class: ErrNoRunningPod, Msg: fmt.Sprintf("%s has no pod selector, so kwarp cannot tell which pods are its own; target one of its pods with pod/NAME", ref)}
	}
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		return nil, fmt.Errorf("%s: its selector: %w", ref, err)
	}
	return &workload{selector: s, template: tmpl}, nil
}

// rolloutsServed reports whether the API server serves Argo Rollouts. Asking discovery for one
// group version is a single small request, unlike a full discovery walk.
func rolloutsServed(ctx context.Context, c *kube.Clients) (bool, error) {
	gv := RolloutGVR.GroupVersion().String()
	raw, err := c.Kube.RESTClient().Get().AbsPath("/apis/" + gv).DoRaw(ctx)
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, c.Explain(err, "get", "/apis/"+gv, "")
	}
	return strings.Contains(string(raw), `"name":"rollouts"`), nil
}

// ErrNoRollouts is the error for rollout/ targets on a cluster without Argo Rollouts.
func errNoRollouts(name string) error {
	return &Error{Class: ErrNotFound, Msg: fmt.Sprintf(
		"rollout/%s: this cluster does not serve Argo Rollouts (no %s resource: the Argo Rollouts CRDs are not installed); target the pods with deploy/, sts/ or pod/ instead",
		name, RolloutGVR.GroupResource())}
}

func getRollout(ctx context.Context, c *kube.Clients, ns, name string) (*workload, error) {
	served, err := rolloutsServed(ctx, c)
	if err != nil {
		return nil, err
	}
	if !served {
		return nil, errNoRollouts(name)
	}
	u, err := c.Dynamic.Resource(RolloutGVR).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, notFound(ctx, c, ns, KindRollout, name)
	}
	if err != nil {
		return nil, c.Explain(err, "get", KindRollout.Resource(), ns)
	}
	sel, tmpl, ref, err := rolloutParts(u)
	if err != nil {
		return nil, fmt.Errorf("rollout/%s: %w", name, err)
	}
	// A Rollout may borrow a Deployment's template (spec.workloadRef) instead of holding one.
	if len(tmpl.Spec.Containers) == 0 && ref != "" {
		if d, err := c.Kube.Deployments(ns).Get(ctx, ref, metav1.GetOptions{}); err == nil {
			tmpl = &d.Spec.Template
		}
	}
	return newWorkload("rollout/"+name, sel, tmpl)
}

// rolloutParts reads spec.selector, spec.template and spec.workloadRef (a Deployment's name)
// of an Argo Rollout.
func rolloutParts(u *unstructured.Unstructured) (*metav1.LabelSelector, *corev1.PodTemplateSpec, string, error) {
	sel := &metav1.LabelSelector{}
	if m, ok, _ := unstructured.NestedMap(u.Object, "spec", "selector"); ok {
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(m, sel); err != nil {
			return nil, nil, "", fmt.Errorf("spec.selector: %w", err)
		}
	}
	tmpl := &corev1.PodTemplateSpec{}
	if m, ok, _ := unstructured.NestedMap(u.Object, "spec", "template"); ok {
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(m, tmpl); err != nil {
			return nil, nil, "", fmt.Errorf("spec.template: %w", err)
		}
	}
	ref := ""
	if kind, _, _ := unstructured.NestedString(u.Object, "spec", "workloadRef", "kind"); kind == "Deployment" {
		ref, _, _ = unstructured.NestedString(u.Object, "spec", "workloadRef", "name")
	}
	return sel, tmpl, ref, nil
}

// chooseContainer checks -c against the pod spec, or picks the default.
func chooseContainer(ref string, spec *corev1.PodSpec, annotations map[string]string, want string) (string, []string, error) {
	if want == "" {
		name, skipped := DefaultContainer(spec, annotations)
		if name == "" {
			return "", nil, &Error{Class: ErrUnknownContainer, Msg: ref + " has no containers"}
		}
		return name, skipped, nil
	}
	for _, c := range spec.Containers {
		if c.Name == want {
			return want, nil, nil
		}
	}
	return "", nil, unknownContainer(ref, spec, want)
}

// fromPod fills a Resolved from the chosen pod. The pod was picked by pickPod, so the
// container has a status with an ID.
func fromPod(kind Kind, name string, pod *corev1.Pod, container string, skipped []string) *Resolved {
	r := &Resolved{
		Kind: kind, Name: name, Namespace: pod.Namespace,
		Pod: pod.Name, PodUID: pod.UID, PodIP: pod.Status.PodIP, Node: pod.Spec.NodeName,
		Container: container,
	}
	for _, c := range pod.Spec.Containers {
		if c.Name == container {
			r.Ports = c.Ports
		}
	}
	for _, cs := range pod.Status.ContainerStatuses {
		if cs.Name == container {
			r.Runtime, r.ContainerID = splitContainerID(cs.ContainerID)
		}
	}
	r.Note = note(kind, name, pod, container, skipped)
	return r
}

// note is the progress line saying what was picked: "deploy/sample → pod sample-6df6c-x7k2p,
// container app (skipped mesh sidecar istio-proxy)".
func note(kind Kind, name string, pod *corev1.Pod, container string, skipped []string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s/%s → pod %s, container %s", kind, name, pod.Name, container)
	var extra []string
	if len(skipped) > 0 {
		extra = append(extra, "skipped mesh sidecar "+strings.Join(skipped, ", "))
	}
	if !PodReady(pod) {
		extra = append(extra, "pod not Ready")
	}
	if len(extra) > 0 {
		b.WriteString(" (" + strings.Join(extra, "; ") + ")")
	}
	return b.String()
}

// pickPod chooses the pod a workload's session targets: not terminating, Running, with the
// target container running (the agent needs its process); Ready pods first, then the newest,
// then by name so the choice is stable. A pod that runs but fails its readiness probe is
// still a target (debugging it is a reason to use kwarp), only a later choice.
func pickPod(pods []corev1.Pod, container string) (*corev1.Pod, bool) {
	var candidates []*corev1.Pod
	for i := range pods {
		p := &pods[i]
		if p.DeletionTimestamp != nil || p.Status.Phase != corev1.PodRunning {
			continue
		}
		if !containerRunning(p, container) {
			continue
		}
		candidates = append(candidates, p)
	}
	if len(candidates) == 0 {
		return nil, false
	}
	slices.SortStableFunc(candidates, func(a, b *corev1.Pod) int {
		ra, rb := PodReady(a), PodReady(b)
		if ra != rb {
			if ra {
				return -1
			}
			return 1
		}
		if c := b.CreationTimestamp.Compare(a.CreationTimestamp.Time); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})
	return candidates[0], PodReady(candidates[0])
}

func containerRunning(p *corev1.Pod, container string) bool {
	for _, cs := range p.Status.ContainerStatuses {
		if cs.Name == container {
			return cs.State.Running != nil && cs.ContainerID != ""
		}
	}
	return false
}

// PodReady reports the pod's Ready condition.
func PodReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}
