package kube

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/wait"
)

// EnvWaitDelete, set to "1", makes the namespace cleanup wait until the namespace is gone. By
// default it does not: finalizing a namespace takes seconds and nothing in the next test depends
// on it, but a run that checks for leaks afterwards (or a full disk) wants it.
const EnvWaitDelete = "KWARP_TEST_WAIT_DELETE"

// TestNameAnnotation records which test created a namespace, for whoever finds it leaked.
const TestNameAnnotation = "kwarp.dev/test-name"

const (
	suffixLen       = 6
	defaultNSPrefix = "kwarp-test"
	// Timeouts of the calls NewNamespace and its cleanup make on their own, with no test context
	// to bound them: the cleanup in particular runs after the test's context is cancelled.
	setupTimeout   = time.Minute
	cleanupTimeout = 2 * time.Minute
)

// NewNamespace creates a namespace of its own for the test and returns its name: prefix (or
// the test's name if prefix is empty) made a valid DNS label, plus a random suffix. When the test
// ends the namespace is deleted, after DumpNamespace if the test failed.
func (e *Env) NewNamespace(t testing.TB, prefix string) string {
	t.Helper()
	if prefix == "" {
		prefix = t.Name()
	}
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()

	var ns *corev1.Namespace
	// A collision of random suffixes is unlikely but costs only a retry, whereas a test that
	// adopted another test's namespace would fail in baffling ways.
	for attempt := 0; ; attempt++ {
		name := namespaceName(prefix, randomSuffix(suffixLen))
		created, err := e.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{
			ObjectMeta: metav1.ObjectMeta{
				Name:        name,
				Labels:      map[string]string{TestLabel: "true"},
				Annotations: map[string]string{TestNameAnnotation: t.Name()},
			},
		}, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) && attempt < 3 {
			continue
		}
		if err != nil {
			t.Fatalf("kube: create namespace %s: %v", name, err)
		}
		ns = created
		break
	}
	name := ns.Name
	// Registered before the wait below, so that a namespace that never becomes usable is still
	// explained and deleted.
	t.Cleanup(func() { e.cleanupNamespace(t, name) })

	// The "default" ServiceAccount is created asynchronously by kube-controller-manager; a Pod
	// created before it exists is rejected by admission ("serviceaccount default not found").
	// Deployments retry that on their own, bare Pods do not, so wait for it here once.
	err := wait.PollUntilContextCancel(ctx, 100*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		_, err := e.Client.CoreV1().ServiceAccounts(name).Get(ctx, "default", metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		return err == nil, err
	})
	if err != nil {
		t.Fatalf("kube: namespace %s: waiting for its default ServiceAccount: %v", name, err)
	}
	return name
}

func (e *Env) cleanupNamespace(t testing.TB, name string) {
	if t.Failed() {
		e.DumpNamespace(t, name)
	}
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	// Background propagation returns at once and lets the garbage collector remove the pods; the
	// test does not wait for their graceful termination.
	policy := metav1.DeletePropagationBackground
	err := e.Client.CoreV1().Namespaces().Delete(ctx, name, metav1.DeleteOptions{PropagationPolicy: &policy})
	if err != nil && !apierrors.IsNotFound(err) {
		t.Errorf("kube: delete namespace %s: %v", name, err)
		return
	}
	if os.Getenv(EnvWaitDelete) != "1" {
		return
	}
	err = wait.PollUntilContextCancel(ctx, 500*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		_, err := e.Client.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return true, nil
		}
		return false, err
	})
	if err != nil {
		t.Errorf("kube: namespace %s still exists after deletion (%s=1): %v", name, EnvWaitDelete, err)
	}
}

// namespaceName turns prefix into the start of a DNS-1123 label (lower case alphanumerics and
// '-', starting and ending alphanumeric) and appends "-"+suffix, cutting the prefix so that the
// whole stays within 63 characters. Test names such as "TestFoo/sub_case" are typical prefixes.
func namespaceName(prefix, suffix string) string {
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(prefix) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
			dash = false
			continue
		}
		// Runs of anything else become one dash, so "Test/sub_case" reads "test-sub-case".
		if !dash && b.Len() > 0 {
			b.WriteByte('-')
			dash = true
		}
	}
	p := b.String()
	maxPrefix := validation.DNS1123LabelMaxLength - len(suffix) - 1
	if len(p) > maxPrefix {
		p = p[:maxPrefix]
	}
	// Trimming after cutting: the cut may land just after a dash.
	p = strings.Trim(p, "-")
	// A label may start with a digit, but a name like "123-abcdef" tells nobody which test made it.
	if p == "" {
		p = defaultNSPrefix
	}
	return p + "-" + suffix
}

// randomSuffix returns n characters from [a-z0-9]. The small modulo bias does not matter for
// names that only need to differ.
func randomSuffix(n int) string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	buf := make([]byte, n)
	_, _ = rand.Read(buf) // crypto/rand.Read never returns an error
	for i, c := range buf {
		buf[i] = alphabet[int(c)%len(alphabet)]
	}
	return string(buf)
}

// DumpNamespace logs, through t.Log, what a failing test needs to explain itself: every pod's
// status and conditions, every container's recent logs (and the previous instance's, if it
// restarted), and the namespace's events in time order. It never fails the test: a dump that
// cannot be complete still logs what it could get.
func (e *Env) DumpNamespace(t testing.TB, ns string) {
	t.Helper()
	// The test's own context is usually cancelled by now; the dump needs one of its own.
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()

	t.Logf("===== kube: dump of namespace %s =====", ns)
	pods, err := e.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Logf("kube: list pods in %s: %v", ns, err)
	} else {
		sortPods(pods.Items)
		if len(pods.Items) == 0 {
			t.Logf("no pods in %s", ns)
		}
		for i := range pods.Items {
			p := &pods.Items[i]
			t.Log(formatPod(p))
			for _, c := range logTargets(p) {
				t.Log(e.containerLog(ctx, ns, p.Name, c))
			}
		}
	}
	events, err := e.Client.CoreV1().Events(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Logf("kube: list events in %s: %v", ns, err)
	} else {
		sortEvents(events.Items)
		t.Logf("events in %s (%d):\n%s", ns, len(events.Items), formatEvents(events.Items))
	}
	t.Logf("===== kube: end of dump of namespace %s =====", ns)
}

const (
	dumpTailLines = 200
	// Bounds a log whose lines are huge (a binary blob, a JSON dump on one line).
	dumpLimitBytes = 256 << 10
)

func (e *Env) containerLog(ctx context.Context, ns, pod string, c logTarget) string {
	which := "logs"
	if c.previous {
		which = "previous logs"
	}
	header := fmt.Sprintf("--- %s of %s/%s container %s (last %d lines) ---", which, ns, pod, c.container, dumpTailLines)
	tail, limit := int64(dumpTailLines), int64(dumpLimitBytes)
	raw, err := e.Client.CoreV1().Pods(ns).GetLogs(pod, &corev1.PodLogOptions{
		Container:  c.container,
		Previous:   c.previous,
		TailLines:  &tail,
		LimitBytes: &limit,
	}).DoRaw(ctx)
	if err != nil {
		return fmt.Sprintf("%s\n(unavailable: %v)", header, err)
	}
	if len(raw) == 0 {
		return header + "\n(empty)"
	}
	return header + "\n" + strings.TrimRight(string(raw), "\n")
}
