package kube

import (
	"reflect"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

var t0 = time.Date(2026, 5, 4, 10, 0, 0, 0, time.UTC)

func event(name, typ, reason, obj string, set func(*corev1.Event)) corev1.Event {
	ev := corev1.Event{
		ObjectMeta:     metav1.ObjectMeta{Name: name, CreationTimestamp: metav1.NewTime(t0.Add(time.Hour))},
		Type:           typ,
		Reason:         reason,
		Message:        reason + " happened",
		InvolvedObject: corev1.ObjectReference{Kind: "Pod", Name: obj},
	}
	if set != nil {
		set(&ev)
	}
	return ev
}

func names(events []corev1.Event) []string {
	var out []string
	for _, ev := range events {
		out = append(out, ev.Name)
	}
	return out
}

func TestSortEvents(t *testing.T) {
	at := func(d time.Duration) metav1.Time { return metav1.NewTime(t0.Add(d)) }
	events := []corev1.Event{
		// Only a creation time (at t0+1h): the fallback sorts last.
		event("created-only", "Normal", "X", "p", nil),
		event("last-3", "Normal", "X", "p", func(e *corev1.Event) {
			e.FirstTimestamp, e.LastTimestamp = at(0), at(3*time.Second)
		}),
		// events.k8s.io style: eventTime, and a series whose last observation is what counts.
		event("series-5", "Warning", "BackOff", "p", func(e *corev1.Event) {
			e.EventTime = metav1.NewMicroTime(t0.Add(time.Second))
			e.Series = &corev1.EventSeries{Count: 7, LastObservedTime: metav1.NewMicroTime(t0.Add(5 * time.Second))}
		}),
		event("eventtime-2", "Normal", "X", "p", func(e *corev1.Event) { e.EventTime = metav1.NewMicroTime(t0.Add(2 * time.Second)) }),
		event("first-1", "Normal", "X", "p", func(e *corev1.Event) { e.FirstTimestamp = at(time.Second) }),
		// Equal times are ordered by name, so the dump is stable.
		event("b-same-4", "Normal", "X", "p", func(e *corev1.Event) { e.LastTimestamp = at(4 * time.Second) }),
		event("a-same-4", "Normal", "X", "p", func(e *corev1.Event) { e.LastTimestamp = at(4 * time.Second) }),
	}
	sortEvents(events)
	want := []string{"first-1", "eventtime-2", "last-3", "a-same-4", "b-same-4", "series-5", "created-only"}
	if got := names(events); !reflect.DeepEqual(got, want) {
		t.Errorf("order = %v, want %v", got, want)
	}
}

func TestFormatEvent(t *testing.T) {
	ev := event("e", "Warning", "Failed", "web-abc", func(e *corev1.Event) {
		e.LastTimestamp = metav1.NewTime(t0.Add(90 * time.Second))
		e.Count = 5
		e.Message = "Error: ErrImageNeverPull\n"
	})
	want := "10:01:30 Warning Failed Pod/web-abc: Error: ErrImageNeverPull (x5)"
	if got := formatEvent(&ev); got != want {
		t.Errorf("formatEvent = %q, want %q", got, want)
	}
	ev.Count = 1
	ev.Series = &corev1.EventSeries{Count: 9, LastObservedTime: metav1.NewMicroTime(t0)}
	if got := formatEvent(&ev); !strings.HasPrefix(got, "10:00:00 ") || !strings.HasSuffix(got, "(x9)") {
		t.Errorf("formatEvent with series = %q", got)
	}
	if got := formatEvents(nil); got != "  (none)" {
		t.Errorf("formatEvents(nil) = %q", got)
	}
	if got := formatEvents([]corev1.Event{ev, ev}); strings.Count(got, "\n") != 1 || !strings.HasPrefix(got, "  10:00:00") {
		t.Errorf("formatEvents = %q, want two indented lines", got)
	}
}

func TestNewestWarnings(t *testing.T) {
	var events []corev1.Event
	for i := 0; i < 15; i++ {
		typ := "Warning"
		if i%3 == 0 {
			typ = "Normal"
		}
		obj := "a"
		if i%2 == 0 {
			obj = "b"
		}
		name := string(rune('a'+i)) + "-" + obj
		events = append(events, event(name, typ, "R", obj, func(e *corev1.Event) {
			e.LastTimestamp = metav1.NewTime(t0.Add(time.Duration(i) * time.Second))
		}))
	}
	// Reversed, to show the input order does not matter.
	for i, j := 0, len(events)-1; i < j; i, j = i+1, j-1 {
		events[i], events[j] = events[j], events[i]
	}
	if got, want := names(newestWarnings(events, 3, nil)), []string{"l-a", "n-a", "o-b"}; !reflect.DeepEqual(got, want) {
		t.Errorf("newest 3 warnings = %v, want %v", got, want)
	}
	if got, want := names(newestWarnings(events, 3, map[string]bool{"a": true})), []string{"h-a", "l-a", "n-a"}; !reflect.DeepEqual(got, want) {
		t.Errorf("newest 3 warnings about a = %v, want %v", got, want)
	}
	if got := newestWarnings(events, 3, map[string]bool{"zzz": true}); len(got) != 0 {
		t.Errorf("warnings about nothing = %v", names(got))
	}
}

func TestFormatPod(t *testing.T) {
	p := crashLoopPod()
	p.Namespace = "ns1"
	p.Spec.NodeName = "node1"
	p.Status.PodIP = "10.244.0.7"
	got := formatPod(p)
	for _, w := range []string{
		"pod ns1/web-def: phase Running, node node1, ip 10.244.0.7",
		"\n  condition Ready=False (ContainersNotReady)",
		"\n  init container setup: ready=false restarts=0, terminated: exit code 0 (Completed)",
		"\n  container app: ready=false restarts=4, waiting: CrashLoopBackOff: back-off 40s restarting failed container=app; last terminated: exit code 2 (Error): listen tcp :80: bind: permission denied",
		"\n  container sidecar: ready=true restarts=0, running since",
	} {
		if !strings.Contains(got, w) {
			t.Errorf("formatPod =\n%s\nwant it to contain %q", got, w)
		}
	}
}

func TestLogTargets(t *testing.T) {
	got := logTargets(crashLoopPod())
	// The crashed container's previous instance comes first: its logs hold the crash.
	want := []logTarget{{"setup", false}, {"app", true}, {"app", false}, {"sidecar", false}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("logTargets = %v, want %v", got, want)
	}
	// A pod not started yet has no statuses; its containers are still asked for (the answer
	// says why there are no logs).
	if got := logTargets(&corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c"}}}}); len(got) != 1 {
		t.Errorf("logTargets of an unstarted pod = %v", got)
	}
}
