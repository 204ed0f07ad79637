package target

import (
	"bytes"
	"encoding/json"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestSelectAndCount(t *testing.T) {
	a := pod("a", t0, corev1.PodRunning, true, running)
	a.Labels = map[string]string{"app": "sample"}
	b := pod("b", t0, corev1.PodRunning, false, running)
	b.Labels = map[string]string{"app": "sample"}
	other := pod("c", t0, corev1.PodRunning, true, running)
	other.Labels = map[string]string{"app": "other"}
	elsewhere := pod("d", t0, corev1.PodRunning, true, running)
	elsewhere.Labels = map[string]string{"app": "sample"}
	elsewhere.Namespace = "other-ns"
	done := pod("e", t0, corev1.PodSucceeded, false, running)
	done.Labels = map[string]string{"app": "sample"}

	live := livePods([]corev1.Pod{a, b, other, elsewhere, done})
	if len(live) != 4 {
		t.Fatalf("livePods kept %d pods, want 4 (not the Succeeded one)", len(live))
	}
	got := selectPods(live, "shop", &metav1.LabelSelector{MatchLabels: map[string]string{"app": "sample"}})
	if len(got) != 2 || got[0].Name != "a" || got[1].Name != "b" {
		t.Fatalf("selectPods = %v", got)
	}
	if c := countReady(got); c != "1/2" {
		t.Errorf("countReady = %s, want 1/2", c)
	}
	if !anyReady(got) || anyReady(got[1:]) {
		t.Errorf("anyReady wrong")
	}
	if selectPods(live, "shop", &metav1.LabelSelector{}) != nil {
		t.Errorf("an empty selector must select nothing, not everything")
	}
}

func TestTargetJSONFieldNames(t *testing.T) {
	p := pod("sample-x", t0, corev1.PodRunning, true, running)
	tg := Target{Kind: KindDeployment, Name: "sample", Namespace: "shop", Containers: containers(&p.Spec), Ready: true, Pods: "1/1"}
	raw, err := json.Marshal(tg)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"kind":"deployment","name":"sample","namespace":"shop","containers":[{"name":"istio-proxy","sidecar":true},{"name":"app","sidecar":false}],"ready":true,"pods":"1/1"}`
	if !bytes.Equal(raw, []byte(want)) {
		t.Errorf("JSON\n got %s\nwant %s", raw, want)
	}
}

func TestSortTargets(t *testing.T) {
	ts := []Target{
		{Kind: KindPod, Name: "a", Namespace: "x"},
		{Kind: KindJob, Name: "b", Namespace: "x"},
		{Kind: KindDeployment, Name: "z", Namespace: "x"},
		{Kind: KindDeployment, Name: "a", Namespace: "x"},
		{Kind: KindPod, Name: "a", Namespace: "a"},
	}
	sortTargets(ts)
	var got []string
	for _, t := range ts {
		got = append(got, t.Namespace+":"+t.Ref())
	}
	want := []string{"a:pod/a", "x:deployment/a", "x:deployment/z", "x:job/b", "x:pod/a"}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("order %v, want %v", got, want)
		}
	}
}
