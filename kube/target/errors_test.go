package target

import (
	"errors"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// pod builds a pod of the sample workload in a given state.
func pod(name string, created time.Time, phase corev1.PodPhase, ready bool, appState corev1.ContainerState) corev1.Pod {
	cond := corev1.ConditionFalse
	if ready {
		cond = corev1.ConditionTrue
	}
	p := corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "shop", UID: types.UID("uid-" + name), CreationTimestamp: metav1.NewTime(created)},
		Spec: corev1.PodSpec{NodeName: "node1", Containers: []corev1.Container{
			{Name: "istio-proxy"},
			{Name: "app", Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}}},
		}},
		Status: corev1.PodStatus{
			Phase: phase, PodIP: "10.244.0.7",
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: cond}},
			ContainerStatuses: []corev1.ContainerStatus{
				{Name: "istio-proxy", State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}, ContainerID: "containerd://aaa"},
				{Name: "app", State: appState},
			},
		},
	}
	if appState.Running != nil {
		p.Status.ContainerStatuses[1].ContainerID = "containerd://" + name + "-app"
	}
	return p
}

var (
	running = corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}
	waiting = func(reason, msg string) corev1.ContainerState {
		return corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason, Message: msg}}
	}
	t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
)

func TestPickPod(t *testing.T) {
	terminating := pod("c-terminating", t0.Add(5*time.Minute), corev1.PodRunning, true, running)
	terminating.DeletionTimestamp = &metav1.Time{Time: t0}
	tests := []struct {
		name      string
		pods      []corev1.Pod
		want      string
		wantReady bool
	}{
		{"newest ready", []corev1.Pod{
			pod("a-old", t0, corev1.PodRunning, true, running),
			pod("b-new", t0.Add(time.Minute), corev1.PodRunning, true, running),
		}, "b-new", true},
		{"ready before newer not-ready", []corev1.Pod{
			pod("a-old", t0, corev1.PodRunning, true, running),
			pod("b-new", t0.Add(time.Minute), corev1.PodRunning, false, running),
		}, "a-old", true},
		{"running but not ready is still a target", []corev1.Pod{
			pod("a", t0, corev1.PodRunning, false, running),
		}, "a", false},
		{"terminating, pending and crashing pods are skipped", []corev1.Pod{
			terminating,
			pod("d-pending", t0.Add(6*time.Minute), corev1.PodPending, false, waiting("ContainerCreating", "")),
			pod("e-crash", t0.Add(7*time.Minute), corev1.PodRunning, false, waiting("CrashLoopBackOff", "back-off")),
			pod("a-ok", t0, corev1.PodRunning, true, running),
		}, "a-ok", true},
		{"same age: by name", []corev1.Pod{
			pod("b", t0, corev1.PodRunning, true, running),
			pod("a", t0, corev1.PodRunning, true, running),
		}, "a", true},
		{"none", []corev1.Pod{pod("x", t0, corev1.PodPending, false, waiting("ContainerCreating", ""))}, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ready := pickPod(tt.pods, "app")
			name := ""
			if got != nil {
				name = got.Name
			}
			if name != tt.want || ready != tt.wantReady {
				t.Errorf("pickPod = %q (ready %v), want %q (ready %v)", name, ready, tt.want, tt.wantReady)
			}
		})
	}
}

func TestFromPodAndNote(t *testing.T) {
	p := pod("sample-6df6c-x7k2p", t0, corev1.PodRunning, true, running)
	r := fromPod(KindDeployment, "sample", &p, "app", []string{"istio-proxy"})
	if r.ContainerID != "sample-6df6c-x7k2p-app" || r.Runtime != "containerd" {
		t.Errorf("container ID %q runtime %q", r.ContainerID, r.Runtime)
	}
	if r.Node != "node1" || r.PodIP != "10.244.0.7" || r.PodUID != "uid-sample-6df6c-x7k2p" || r.Namespace != "shop" {
		t.Errorf("resolved %+v", r)
	}
	if len(r.Ports) != 1 || r.Ports[0].ContainerPort != 8080 {
		t.Errorf("ports %v, want the app container's 8080", r.Ports)
	}
	want := "deployment/sample → pod sample-6df6c-x7k2p, container app (skipped mesh sidecar istio-proxy)"
	if r.Note != want {
		t.Errorf("note %q\nwant %q", r.Note, want)
	}
	p = pod("x", t0, corev1.PodRunning, false, running)
	if n := note(KindPod, "x", &p, "app", nil); n != "pod/x → pod x, container app (pod not Ready)" {
		t.Errorf("note %q", n)
	}
}

func TestNotFoundError(t *testing.T) {
	tests := []struct {
		name      string
		names     []string
		more      int
		nsMissing bool
		want      string
		class     error
	}{
		{"lists the others", []string{"checkout", "sample"}, 0, false,
			`deployment/nope not found in namespace "shop"; deployments there: checkout, sample; ` + "`kwarp ls -n shop` lists every target", ErrNotFound},
		{"and more", []string{"a", "b"}, 12, false,
			`deployment/nope not found in namespace "shop"; deployments there: a, b and 12 more; ` + "`kwarp ls -n shop` lists every target", ErrNotFound},
		{"none of the kind", nil, 0, false,
			`deployment/nope not found in namespace "shop", which has no deployments; ` + "`kwarp ls -n shop` lists every target", ErrNotFound},
		{"could not list", nil, -1, false,
			`deployment/nope not found in namespace "shop"; ` + "`kwarp ls -n shop` lists every target", ErrNotFound},
		{"namespace missing", nil, 0, true,
			`namespace "shop" does not exist (looking for deployment/nope); pass the right one with -n (kubectl get namespaces lists them)`, ErrNamespaceMissing},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := notFoundError(KindDeployment, "nope", "shop", tt.names, tt.more, tt.nsMissing)
			if err.Error() != tt.want {
				t.Errorf("got  %s\nwant %s", err, tt.want)
			}
			if !errors.Is(err, tt.class) {
				t.Errorf("%v is not %v", err, tt.class)
			}
		})
	}
}

func TestNoRunningPod(t *testing.T) {
	pending := pod("sample-a", t0, corev1.PodPending, false, waiting("ImagePullBackOff", `Back-off pulling image "x"`))
	crash := pod("sample-b", t0, corev1.PodRunning, false, waiting("CrashLoopBackOff", "back-off 10s"))
	unsched := pod("sample-c", t0, corev1.PodPending, false, corev1.ContainerState{})
	unsched.Status.ContainerStatuses = nil
	unsched.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionFalse,
		Reason: "Unschedulable", Message: "0/1 nodes are available: 1 Insufficient cpu."}}
	err := noRunningPod("deployment/sample", "shop", "app=sample", "app", []corev1.Pod{pending, crash, unsched})
	for _, want := range []string{
		`deployment/sample in namespace "shop" has no running pod: `,
		`sample-a Pending, container app waiting: ImagePullBackOff: Back-off pulling image "x"`,
		`sample-b Running, container app waiting: CrashLoopBackOff: back-off 10s`,
		`sample-c Pending, not scheduled: Unschedulable: 0/1 nodes are available: 1 Insufficient cpu.`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%s\nlacks %s", err, want)
		}
	}
	if !errors.Is(err, ErrNoRunningPod) {
		t.Errorf("not ErrNoRunningPod")
	}
	err = noRunningPod("deployment/sample", "shop", "app=sample", "app", nil)
	if err.Error() != `deployment/sample in namespace "shop" has no pods (selector app=sample); is it scaled to zero?` {
		t.Errorf("no pods: %s", err)
	}
}

func TestPodStateTerminated(t *testing.T) {
	p := pod("x", t0, corev1.PodFailed, false, corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{Reason: "Error", ExitCode: 3}})
	p.Status.Reason, p.Status.Message = "Evicted", "low on memory"
	if got := podState(&p, "app"); got != "Failed, Evicted: low on memory, container app terminated: Error (exit code 3)" {
		t.Errorf("podState = %q", got)
	}
}
