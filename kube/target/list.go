package target

import (
	"cmp"
	"context"
	"fmt"
	"slices"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/kwarp-dev/kwarp/kube"
)

// AgentLabel marks kwarp's own agent Jobs and pods (set by kube/agentpod). `kwarp ls` leaves
// them out: nobody targets the agent.
const AgentLabel = "app.kubernetes.io/name"

// AgentLabelValue is AgentLabel's value on agent objects.
const AgentLabelValue = "kwarp-agent"

// Container is one container of a target, as `kwarp ls` shows it.
type Container struct {
	Name    string `json:"name"`
	Sidecar bool   `json:"sidecar"` // a mesh's injected proxy (see MeshSidecars)
}

// Target is one thing --target can name. The JSON field names are part of `kwarp ls --json`'s
// contract.
type Target struct {
	Kind       Kind        `json:"kind"` // canonical: pod, deployment, statefulset, job, cronjob, rollout
	Name       string      `json:"name"`
	Namespace  string      `json:"namespace"`
	Containers []Container `json:"containers"`
	// Ready is true when a pod of the target runs and is Ready: a session can start now.
	Ready bool `json:"ready"`
	// Pods is "ready/running-or-pending" over the target's current pods, as kubectl's READY.
	Pods string `json:"pods"`
}

// Ref is the target as --target takes it.
func (t Target) Ref() string { return string(t.Kind) + "/" + t.Name }

// kindOrder is the order `kwarp ls` prints kinds in: workloads first, bare pods last.
var kindOrder = []Kind{KindDeployment, KindStatefulSet, KindRollout, KindCronJob, KindJob, KindPod}

// List returns the targets in ns ("" = every namespace). Kinds the user may not list are
// skipped and reported in warnings; List fails only when it could list nothing at all.
// Rollouts are listed when the cluster serves them.
func List(ctx context.Context, c *kube.Clients, ns string) (targets []Target, warnings []error, err error) {
	notAgent, _ := labels.Parse(AgentLabel + "!=" + AgentLabelValue)
	opts := metav1.ListOptions{LabelSelector: notAgent.String()}
	var failures []error
	fail := func(e error) { failures = append(failures, e) }

	pods, err := c.Kube.Pods(ns).List(ctx, opts)
	if err != nil {
		fail(c.Explain(err, "list", "pods", ns))
		pods = &corev1.PodList{}
	}
	live := livePods(pods.Items)
	for i := range live {
		p := live[i]
		targets = append(targets, Target{Kind: KindPod, Name: p.Name, Namespace: p.Namespace,
			Containers: containers(&p.Spec), Ready: PodReady(&p), Pods: countReady([]corev1.Pod{p})})
	}
	workload := func(kind Kind, meta metav1.ObjectMeta, sel *metav1.LabelSelector, spec *corev1.PodSpec) {
		matched := selectPods(live, meta.Namespace, sel)
		targets = append(targets, Target{Kind: kind, Name: meta.Name, Namespace: meta.Namespace,
			Containers: containers(spec), Ready: anyReady(matched), Pods: countReady(matched)})
	}

	if l, err := c.Kube.Deployments(ns).List(ctx, metav1.ListOptions{}); err != nil {
		fail(c.Explain(err, "list", KindDeployment.Resource(), ns))
	} else {
		for _, d := range l.Items {
			workload(KindDeployment, d.ObjectMeta, d.Spec.Selector, &d.Spec.Template.Spec)
		}
	}
	if l, err := c.Kube.StatefulSets(ns).List(ctx, metav1.ListOptions{}); err != nil {
		fail(c.Explain(err, "list", KindStatefulSet.Resource(), ns))
	} else {
		for _, s := range l.Items {
			workload(KindStatefulSet, s.ObjectMeta, s.Spec.Selector, &s.Spec.Template.Spec)
		}
	}
	jobs, err := c.Kube.Jobs(ns).List(ctx, opts)
	if err != nil {
		fail(c.Explain(err, "list", KindJob.Resource(), ns))
		jobs = &batchv1.JobList{}
	}
	for _, j := range jobs.Items {
		workload(KindJob, j.ObjectMeta, j.Spec.Selector, &j.Spec.Template.Spec)
	}
	if l, err := c.Kube.CronJobs(ns).List(ctx, metav1.ListOptions{}); err != nil {
		fail(c.Explain(err, "list", KindCronJob.Resource(), ns))
	} else {
		for _, cj := range l.Items {
			var matched []corev1.Pod
			for _, j := range ownedJobs(jobs.Items, cj.UID) {
				matched = append(matched, selectPods(live, j.Namespace, j.Spec.Selector)...)
			}
			targets = append(targets, Target{Kind: KindCronJob, Name: cj.Name, Namespace: cj.Namespace,
				Containers: containers(&cj.Spec.JobTemplate.Spec.Template.Spec), Ready: anyReady(matched), Pods: countReady(matched)})
		}
	}
	attempted := 5
	if served, err := rolloutsServed(ctx, c); err != nil {
		fail(err)
		attempted++
	} else if served {
		attempted++
		if l, err := c.Dynamic.Resource(RolloutGVR).Namespace(ns).List(ctx, metav1.ListOptions{}); err != nil {
			fail(c.Explain(err, "list", KindRollout.Resource(), ns))
		} else {
			for i := range l.Items {
				sel, tmpl, _, err := rolloutParts(&l.Items[i])
				if err != nil {
					fail(fmt.Errorf("rollout/%s: %w", l.Items[i].GetName(), err))
					continue
				}
				meta := metav1.ObjectMeta{Name: l.Items[i].GetName(), Namespace: l.Items[i].GetNamespace()}
				spec := &tmpl.Spec
				matched := selectPods(live, meta.Namespace, sel)
				if len(spec.Containers) == 0 && len(matched) > 0 {
					spec = &matched[0].Spec // workloadRef: the template lives in a Deployment
				}
				workload(KindRollout, meta, sel, spec)
			}
		}
	}
	if len(failures) >= attempted {
		return nil, nil, failures[0]
	}
	sortTargets(targets)
	return targets, failures, nil
}

func sortTargets(ts []Target) {
	slices.SortStableFunc(ts, func(a, b Target) int {
		return cmp.Or(
			cmp.Compare(a.Namespace, b.Namespace),
			cmp.Compare(slices.Index(kindOrder, a.Kind), slices.Index(kindOrder, b.Kind)),
			cmp.Compare(a.Name, b.Name))
	})
}

// livePods drops pods that finished: they can never be a target again.
func livePods(pods []corev1.Pod) []corev1.Pod {
	var out []corev1.Pod
	for _, p := range pods {
		if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		out = append(out, p)
	}
	return out
}

func selectPods(pods []corev1.Pod, ns string, sel *metav1.LabelSelector) []corev1.Pod {
	if sel == nil || (len(sel.MatchLabels) == 0 && len(sel.MatchExpressions) == 0) {
		return nil
	}
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		return nil
	}
	var out []corev1.Pod
	for _, p := range pods {
		if p.Namespace == ns && s.Matches(labels.Set(p.Labels)) {
			out = append(out, p)
		}
	}
	return out
}

// containers lists a pod spec's containers with mesh sidecars marked.
func containers(spec *corev1.PodSpec) []Container {
	out := []Container{}
	for _, c := range spec.Containers {
		out = append(out, Container{Name: c.Name, Sidecar: IsMeshSidecar(c.Name)})
	}
	return out
}

func anyReady(pods []corev1.Pod) bool {
	for i := range pods {
		if pods[i].DeletionTimestamp == nil && PodReady(&pods[i]) {
			return true
		}
	}
	return false
}

func countReady(pods []corev1.Pod) string {
	ready, total := 0, 0
	for i := range pods {
		if pods[i].DeletionTimestamp != nil {
			continue
		}
		total++
		if PodReady(&pods[i]) {
			ready++
		}
	}
	return fmt.Sprintf("%d/%d", ready, total)
}
