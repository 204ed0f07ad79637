package kube

import (
	"fmt"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// This file turns pods and events into the text that failing tests print: the namespace dump
// and the "why is it not ready" part of a wait's error. Everything here is pure so that the
// wording can be tested without a cluster.

// sortPods orders pods by name, so that dumps of the same failure read the same.
func sortPods(pods []corev1.Pod) {
	sort.SliceStable(pods, func(i, j int) bool { return pods[i].Name < pods[j].Name })
}

// formatPod is a pod's status as a few lines: phase, node, conditions, and each container's
// state.
func formatPod(p *corev1.Pod) string {
	var b strings.Builder
	fmt.Fprintf(&b, "pod %s/%s: phase %s", p.Namespace, p.Name, p.Status.Phase)
	if p.Status.Reason != "" {
		fmt.Fprintf(&b, " (%s)", p.Status.Reason)
	}
	if p.Status.Message != "" {
		fmt.Fprintf(&b, ": %s", p.Status.Message)
	}
	if p.Spec.NodeName != "" {
		fmt.Fprintf(&b, ", node %s", p.Spec.NodeName)
	}
	if p.Status.PodIP != "" {
		fmt.Fprintf(&b, ", ip %s", p.Status.PodIP)
	}
	if p.DeletionTimestamp != nil {
		fmt.Fprintf(&b, ", terminating since %s", p.DeletionTimestamp.UTC().Format(time.RFC3339))
	}
	for _, c := range p.Status.Conditions {
		fmt.Fprintf(&b, "\n  condition %s=%s", c.Type, c.Status)
		if c.Reason != "" || c.Message != "" {
			fmt.Fprintf(&b, " (%s)", joinNonEmpty(": ", c.Reason, c.Message))
		}
	}
	for _, cs := range allContainerStatuses(p) {
		fmt.Fprintf(&b, "\n  %s %s: ready=%t restarts=%d, %s", cs.kind, cs.Name, cs.Ready, cs.RestartCount, formatState(cs.State))
		if t := cs.LastTerminationState.Terminated; t != nil {
			fmt.Fprintf(&b, "; last %s", formatTerminated(t))
		}
	}
	return b.String()
}

type kindedStatus struct {
	kind string // "init container", "container", "ephemeral container"
	corev1.ContainerStatus
}

func allContainerStatuses(p *corev1.Pod) []kindedStatus {
	var out []kindedStatus
	for _, group := range []struct {
		kind string
		list []corev1.ContainerStatus
	}{
		{"init container", p.Status.InitContainerStatuses},
		{"container", p.Status.ContainerStatuses},
		{"ephemeral container", p.Status.EphemeralContainerStatuses},
	} {
		for _, cs := range group.list {
			out = append(out, kindedStatus{group.kind, cs})
		}
	}
	return out
}

func formatState(s corev1.ContainerState) string {
	switch {
	case s.Waiting != nil:
		return "waiting: " + joinNonEmpty(": ", orDefault(s.Waiting.Reason, "(no reason)"), s.Waiting.Message)
	case s.Running != nil:
		return "running since " + s.Running.StartedAt.UTC().Format(time.RFC3339)
	case s.Terminated != nil:
		return formatTerminated(s.Terminated)
	default:
		return "state unknown"
	}
}

func formatTerminated(t *corev1.ContainerStateTerminated) string {
	s := fmt.Sprintf("terminated: exit code %d", t.ExitCode)
	if t.Signal != 0 {
		s += fmt.Sprintf(" signal %d", t.Signal)
	}
	if t.Reason != "" {
		s += " (" + t.Reason + ")"
	}
	if m := strings.TrimSpace(t.Message); m != "" {
		s += ": " + m
	}
	return s
}

// logTarget is one log DumpNamespace fetches.
type logTarget struct {
	container string
	previous  bool
}

// logTargets lists the logs worth fetching for p: every container of the spec (init containers
// first, as they ran), plus the previous instance of any container that restarted, because in a
// crash loop the current instance has usually logged nothing yet.
func logTargets(p *corev1.Pod) []logTarget {
	restarts := map[string]int32{}
	for _, cs := range allContainerStatuses(p) {
		restarts[cs.Name] = cs.RestartCount
	}
	var out []logTarget
	add := func(name string) {
		if restarts[name] > 0 {
			out = append(out, logTarget{name, true})
		}
		out = append(out, logTarget{name, false})
	}
	for _, c := range p.Spec.InitContainers {
		add(c.Name)
	}
	for _, c := range p.Spec.Containers {
		add(c.Name)
	}
	for _, c := range p.Spec.EphemeralContainers {
		add(c.Name)
	}
	return out
}

// eventTime is when an event last happened. Events written through the core/v1 API carry
// lastTimestamp, those written through events.k8s.io/v1 carry eventTime and, when repeated,
// series.lastObservedTime; creation time is the fallback that is always set.
func eventTime(ev *corev1.Event) time.Time {
	switch {
	case ev.Series != nil && !ev.Series.LastObservedTime.IsZero():
		return ev.Series.LastObservedTime.Time
	case !ev.LastTimestamp.IsZero():
		return ev.LastTimestamp.Time
	case !ev.EventTime.IsZero():
		return ev.EventTime.Time
	case !ev.FirstTimestamp.IsZero():
		return ev.FirstTimestamp.Time
	default:
		return ev.CreationTimestamp.Time
	}
}

// sortEvents orders events oldest first, so that the dump reads as a story.
func sortEvents(events []corev1.Event) {
	sort.SliceStable(events, func(i, j int) bool {
		ti, tj := eventTime(&events[i]), eventTime(&events[j])
		if !ti.Equal(tj) {
			return ti.Before(tj)
		}
		return events[i].Name < events[j].Name
	})
}

func eventCount(ev *corev1.Event) int32 {
	if ev.Series != nil && ev.Series.Count > 0 {
		return ev.Series.Count
	}
	return ev.Count
}

// formatEvent is one line: "15:04:05 Warning BackOff Pod/web-1: Back-off restarting ... (x5)".
func formatEvent(ev *corev1.Event) string {
	s := fmt.Sprintf("%s %s %s %s/%s: %s", eventTime(ev).UTC().Format("15:04:05"), ev.Type, ev.Reason,
		ev.InvolvedObject.Kind, ev.InvolvedObject.Name, strings.TrimSpace(ev.Message))
	if n := eventCount(ev); n > 1 {
		s += fmt.Sprintf(" (x%d)", n)
	}
	return s
}

// formatEvents is one line per event, in the given order.
func formatEvents(events []corev1.Event) string {
	if len(events) == 0 {
		return "  (none)"
	}
	lines := make([]string, len(events))
	for i := range events {
		lines[i] = "  " + formatEvent(&events[i])
	}
	return strings.Join(lines, "\n")
}

// newestWarnings returns the n newest Warning events, oldest first, about objects whose name is
// in names (about any object if names is nil).
func newestWarnings(events []corev1.Event, n int, names map[string]bool) []corev1.Event {
	var out []corev1.Event
	for _, ev := range events {
		if ev.Type != corev1.EventTypeWarning {
			continue
		}
		if names != nil && !names[ev.InvolvedObject.Name] {
			continue
		}
		out = append(out, ev)
	}
	sortEvents(out)
	if len(out) > n {
		out = out[len(out)-n:]
	}
	return out
}

// explainPod says in one line why a pod is not Ready, from what the kubelet and scheduler
// reported: the failing conditions and each container that is not running and ready, with its
// waiting reason (ErrImageNeverPull, CrashLoopBackOff, ...) and last termination message.
func explainPod(p *corev1.Pod) string {
	parts := []string{"phase " + orDefault(string(p.Status.Phase), "unknown")}
	if p.Status.Reason != "" || p.Status.Message != "" {
		parts[0] += " (" + joinNonEmpty(": ", p.Status.Reason, p.Status.Message) + ")"
	}
	if p.DeletionTimestamp != nil {
		parts = append(parts, "terminating")
	}
	for _, c := range p.Status.Conditions {
		if c.Status == corev1.ConditionTrue {
			continue
		}
		s := fmt.Sprintf("%s=%s", c.Type, c.Status)
		if c.Reason != "" || c.Message != "" {
			s += " (" + joinNonEmpty(": ", c.Reason, c.Message) + ")"
		}
		parts = append(parts, s)
	}
	for _, cs := range allContainerStatuses(p) {
		if cs.Ready && cs.State.Running != nil {
			continue
		}
		// A finished init container is how it should be.
		if cs.kind == "init container" && cs.State.Terminated != nil && cs.State.Terminated.ExitCode == 0 {
			continue
		}
		s := fmt.Sprintf("%s %s %s", cs.kind, cs.Name, formatState(cs.State))
		if cs.State.Running != nil {
			s = fmt.Sprintf("%s %s running but not ready", cs.kind, cs.Name)
		}
		if cs.RestartCount > 0 {
			s += fmt.Sprintf(", %d restarts", cs.RestartCount)
		}
		if t := cs.LastTerminationState.Terminated; t != nil {
			s += ", last " + formatTerminated(t)
		}
		parts = append(parts, s)
	}
	if len(p.Status.Conditions) == 0 && len(allContainerStatuses(p)) == 0 {
		parts = append(parts, "no status yet (not scheduled, or the scheduler has not seen it)")
	}
	return fmt.Sprintf("pod %s: %s", p.Name, strings.Join(parts, "; "))
}

func joinNonEmpty(sep string, parts ...string) string {
	var out []string
	for _, p := range parts {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return strings.Join(out, sep)
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
