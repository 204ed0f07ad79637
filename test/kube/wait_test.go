package kube

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func deployment(generation, observed int64, replicas *int32, status appsv1.DeploymentStatus) *appsv1.Deployment {
	status.ObservedGeneration = observed
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Generation: generation},
		Spec:       appsv1.DeploymentSpec{Replicas: replicas},
		Status:     status,
	}
}

func ptr[T any](v T) *T { return &v }

func TestDeploymentReady(t *testing.T) {
	tests := []struct {
		name  string
		d     *appsv1.Deployment
		ready bool
		why   []string
	}{
		{"not observed", deployment(2, 1, ptr[int32](1), appsv1.DeploymentStatus{Replicas: 1, UpdatedReplicas: 1, ReadyReplicas: 1}),
			false, []string{"not observed generation 2", "observed 1"}},
		{"none updated", deployment(1, 1, ptr[int32](2), appsv1.DeploymentStatus{}),
			false, []string{"0 of 2 replicas updated"}},
		{"replicas short", deployment(1, 1, ptr[int32](3), appsv1.DeploymentStatus{Replicas: 3, UpdatedReplicas: 3, ReadyReplicas: 1}),
			false, []string{"1 of 3 replicas ready"}},
		{"old replicas left", deployment(2, 2, ptr[int32](1), appsv1.DeploymentStatus{Replicas: 2, UpdatedReplicas: 1, ReadyReplicas: 1}),
			false, []string{"1 old replicas pending termination"}},
		{"failing conditions quoted", deployment(1, 1, ptr[int32](1), appsv1.DeploymentStatus{
			Conditions: []appsv1.DeploymentCondition{
				{Type: appsv1.DeploymentProgressing, Status: corev1.ConditionTrue, Reason: "ReplicaSetUpdated"},
				{Type: appsv1.DeploymentAvailable, Status: corev1.ConditionFalse, Reason: "MinimumReplicasUnavailable", Message: "Deployment does not have minimum availability."},
				{Type: appsv1.DeploymentReplicaFailure, Status: corev1.ConditionTrue, Reason: "FailedCreate", Message: `pods "web-1" is forbidden`},
			}}),
			false, []string{"0 of 1 replicas updated", "Available=False (MinimumReplicasUnavailable: Deployment does not have", `ReplicaFailure=True (FailedCreate: pods "web-1" is forbidden)`}},
		{"ready", deployment(3, 3, ptr[int32](2), appsv1.DeploymentStatus{Replicas: 2, UpdatedReplicas: 2, ReadyReplicas: 2}),
			true, nil},
		{"observed ahead counts as observed", deployment(3, 4, ptr[int32](1), appsv1.DeploymentStatus{Replicas: 1, UpdatedReplicas: 1, ReadyReplicas: 1}),
			true, nil},
		{"replicas unset means 1", deployment(1, 1, nil, appsv1.DeploymentStatus{Replicas: 1, UpdatedReplicas: 1, ReadyReplicas: 1}),
			true, nil},
		{"scaled to zero", deployment(1, 1, ptr[int32](0), appsv1.DeploymentStatus{}),
			true, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ready, why := deploymentReady(tt.d)
			if ready != tt.ready {
				t.Fatalf("ready = %v (%s), want %v", ready, why, tt.ready)
			}
			for _, w := range tt.why {
				if !strings.Contains(why, w) {
					t.Errorf("why %q does not contain %q", why, w)
				}
			}
		})
	}
}

func readyPod(name string, created time.Time) corev1.Pod {
	return corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, CreationTimestamp: metav1.NewTime(created)},
		Status: corev1.PodStatus{
			Phase:      corev1.PodRunning,
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}},
			ContainerStatuses: []corev1.ContainerStatus{{
				Name: "app", Ready: true, State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}},
			}},
		},
	}
}

func imageNeverPullPod() *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web-abc"},
		Status: corev1.PodStatus{
			Phase: corev1.PodPending,
			Conditions: []corev1.PodCondition{
				{Type: corev1.PodScheduled, Status: corev1.ConditionTrue},
				{Type: corev1.PodReady, Status: corev1.ConditionFalse, Reason: "ContainersNotReady", Message: "containers with unready status: [app]"},
			},
			ContainerStatuses: []corev1.ContainerStatus{{
				Name: "app",
				State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{
					Reason:  "ErrImageNeverPull",
					Message: `Container image "kwarp.test/missing:1" is not present with pull policy of Never`,
				}},
			}},
		},
	}
}

func crashLoopPod() *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web-def"},
		Spec: corev1.PodSpec{
			InitContainers: []corev1.Container{{Name: "setup"}},
			Containers:     []corev1.Container{{Name: "app"}, {Name: "sidecar"}},
		},
		Status: corev1.PodStatus{
			Phase:      corev1.PodRunning,
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionFalse, Reason: "ContainersNotReady"}},
			InitContainerStatuses: []corev1.ContainerStatus{{
				Name: "setup", State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 0, Reason: "Completed"}},
			}},
			ContainerStatuses: []corev1.ContainerStatus{
				{
					Name: "app", RestartCount: 4,
					State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{
						Reason: "CrashLoopBackOff", Message: "back-off 40s restarting failed container=app",
					}},
					LastTerminationState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
						ExitCode: 2, Reason: "Error", Message: "listen tcp :80: bind: permission denied\n",
					}},
				},
				{Name: "sidecar", Ready: true, State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}},
			},
		},
	}
}

func TestPodReady(t *testing.T) {
	now := time.Now()
	deleting := readyPod("old", now)
	deleting.DeletionTimestamp = &metav1.Time{Time: now}
	unscheduled := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p"},
		Status: corev1.PodStatus{Phase: corev1.PodPending, Conditions: []corev1.PodCondition{{
			Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: "Unschedulable",
			Message: "0/1 nodes are available: 1 Insufficient memory.",
		}}},
	}
	ready := readyPod("p", now)
	notReadyProbe := readyPod("p", now)
	notReadyProbe.Status.Conditions[0].Status = corev1.ConditionFalse
	notReadyProbe.Status.ContainerStatuses[0].Ready = false

	tests := []struct {
		name     string
		pod      *corev1.Pod
		ready    bool
		why      []string
		whyNot   []string
		finished bool
	}{
		{"ready", &ready, true, nil, nil, false},
		{"ErrImageNeverPull", imageNeverPullPod(), false, []string{
			"pod web-abc", "phase Pending", "Ready=False (ContainersNotReady", "container app waiting: ErrImageNeverPull",
			`"kwarp.test/missing:1" is not present`,
		}, []string{"PodScheduled"}, false},
		{"CrashLoopBackOff", crashLoopPod(), false, []string{
			"container app waiting: CrashLoopBackOff: back-off 40s", "4 restarts",
			"last terminated: exit code 2 (Error): listen tcp :80: bind: permission denied",
		}, []string{"setup", "sidecar"}, false},
		{"unschedulable", unscheduled, false, []string{"PodScheduled=False (Unschedulable: 0/1 nodes are available"}, nil, false},
		{"no status", &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p"}}, false, []string{"phase unknown", "no status yet"}, nil, false},
		{"running, probe failing", &notReadyProbe, false, []string{"container app running but not ready"}, nil, false},
		{"being deleted", &deleting, false, []string{"terminating"}, nil, false},
		{"failed", &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p"}, Status: corev1.PodStatus{
			Phase: corev1.PodFailed, Reason: "Evicted", Message: "The node was low on resource: memory.",
		}}, false, []string{"phase Failed (Evicted: The node was low on resource: memory.)"}, nil, true},
		{"succeeded", &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p"}, Status: corev1.PodStatus{Phase: corev1.PodSucceeded}},
			false, []string{"phase Succeeded"}, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ready, why := podReady(tt.pod)
			if ready != tt.ready {
				t.Fatalf("ready = %v (%s), want %v", ready, why, tt.ready)
			}
			for _, w := range tt.why {
				if !strings.Contains(why, w) {
					t.Errorf("why %q does not contain %q", why, w)
				}
			}
			for _, w := range tt.whyNot {
				if strings.Contains(why, w) {
					t.Errorf("why %q mentions %q, which is not at fault", why, w)
				}
			}
			if f := podFinished(tt.pod); f != tt.finished {
				t.Errorf("podFinished = %v, want %v", f, tt.finished)
			}
		})
	}
}

func TestExplainPodList(t *testing.T) {
	if got := explainPodList(nil); len(got) != 1 || !strings.Contains(got[0], "no pods") {
		t.Errorf("explainPodList(nil) = %q", got)
	}
	got := strings.Join(explainPodList([]corev1.Pod{readyPod("a", time.Now()), *imageNeverPullPod()}), "\n")
	for _, w := range []string{"pod a: ready", "pod web-abc: phase Pending", "ErrImageNeverPull"} {
		if !strings.Contains(got, w) {
			t.Errorf("explanation %q does not contain %q", got, w)
		}
	}
}

func TestPickRunningPod(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	old := readyPod("old", t0)
	newer := readyPod("newer", t0.Add(time.Minute))
	newest := readyPod("newest-but-deleting", t0.Add(2*time.Minute))
	newest.DeletionTimestamp = &metav1.Time{Time: t0.Add(3 * time.Minute)}
	pending := *imageNeverPullPod()
	pending.CreationTimestamp = metav1.NewTime(t0.Add(4 * time.Minute))

	if p := pickRunningPod([]corev1.Pod{old, newest, pending, newer}); p == nil || p.Name != "newer" {
		t.Errorf("picked %v, want newer", p)
	}
	if p := pickRunningPod([]corev1.Pod{pending, newest}); p != nil {
		t.Errorf("picked %s from pods none of which is running and ready", p.Name)
	}
}

func TestPoll(t *testing.T) {
	explain := func(ctx context.Context) string {
		if ctx.Err() != nil {
			return "explain got a dead context"
		}
		return "  pod web-abc: ErrImageNeverPull"
	}

	t.Run("transient errors then ready", func(t *testing.T) {
		calls := 0
		err := poll(context.Background(), "pod ns/p", func(context.Context) (bool, string, error) {
			calls++
			if calls < 3 {
				return false, "", errors.New("connection refused")
			}
			return true, "", nil
		}, explain)
		if err != nil || calls != 3 {
			t.Errorf("err = %v after %d calls, want nil after 3", err, calls)
		}
	})

	t.Run("timeout explains", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		err := poll(ctx, "deployment ns/web", func(ctx context.Context) (bool, string, error) {
			return false, "0 of 1 replicas ready", nil
		}, explain)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("errors.Is(%v, DeadlineExceeded) = false", err)
		}
		for _, w := range []string{"deployment ns/web not ready after", "0 of 1 replicas ready", "ErrImageNeverPull"} {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("error %q does not contain %q", err, w)
			}
		}
	})

	t.Run("error caused by the deadline does not hide the last state", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*pollInterval)
		defer cancel()
		calls := 0
		err := poll(ctx, "pod ns/p", func(ctx context.Context) (bool, string, error) {
			calls++
			if calls == 1 {
				return false, "container app waiting: ErrImageNeverPull", nil
			}
			// What client-go's rate limiter answers when the deadline is closer than its next
			// token; the context is not done yet.
			<-ctx.Done()
			return false, "", errors.New("client rate limiter Wait returned an error: rate: Wait(n=1) would exceed context deadline")
		}, explain)
		if s := err.Error(); !strings.Contains(s, "ErrImageNeverPull") || strings.Contains(s, "rate limiter") {
			t.Errorf("error %q should give the last state, not the error the deadline caused", s)
		}
	})

	t.Run("persistent error is reported", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 3*pollInterval)
		defer cancel()
		calls := 0
		err := poll(ctx, "pod ns/p", func(ctx context.Context) (bool, string, error) {
			calls++
			if calls == 1 {
				return false, "phase Pending", nil
			}
			return false, "", errors.New(`pods "p" not found`)
		}, explain)
		if s := err.Error(); !strings.Contains(s, `phase Pending; since then: pods "p" not found`) {
			t.Errorf("error %q should give the last state and the error that followed", s)
		}
	})

	t.Run("no answer at all", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		err := poll(ctx, "pod ns/p", func(ctx context.Context) (bool, string, error) {
			<-ctx.Done()
			return false, "", ctx.Err()
		}, explain)
		if !strings.Contains(err.Error(), "no answer from the API server") {
			t.Errorf("error %q should say nothing was learnt", err)
		}
	})

	t.Run("never ready fails at once", func(t *testing.T) {
		start := time.Now()
		err := poll(context.Background(), "pod ns/p", func(context.Context) (bool, string, error) {
			return false, "pod p: phase Failed", errNeverReady
		}, explain)
		if err == nil || !errors.Is(err, errNeverReady) || !strings.Contains(err.Error(), "phase Failed") || !strings.Contains(err.Error(), "ErrImageNeverPull") {
			t.Errorf("err = %v", err)
		}
		if time.Since(start) > pollInterval {
			t.Errorf("took %s; a terminal state must not be polled", time.Since(start))
		}
	})
}
