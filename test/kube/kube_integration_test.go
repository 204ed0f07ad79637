package kube

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/util/exec"
)

// EnvKubeconfig names the kubeconfig of a running test cluster; the tests in this file are
// skipped without it. They check the client calls that the unit tests cannot: that Apply, the
// waits, Exec and Logs work against a real API server and kubelet. They expect the test
// cluster's pause image, which test/cluster loads into it.
const EnvKubeconfig = "KWARP_TEST_KUBECONFIG"

const pauseImage = "kwarp.test/pause:1"

func connectOrSkip(t *testing.T) *Env {
	t.Helper()
	kubeconfig := os.Getenv(EnvKubeconfig)
	if kubeconfig == "" {
		t.Skipf("%s is not set: these tests need a running test cluster (e.g. %s=/var/lib/kwarp-testcluster/admin.kubeconfig)", EnvKubeconfig, EnvKubeconfig)
	}
	env, err := Connect(kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	return env
}

const integrationManifest = `
# a kind that is ready at once, a pod and a deployment, as the e2e tests' manifests mix them
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
data:
  greeting: hello
---
apiVersion: v1
kind: Pod
metadata:
  name: pause
  labels:
    app: pause
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: pause
    image: ` + pauseImage + `
    imagePullPolicy: IfNotPresent
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: pauses
spec:
  replicas: 2
  selector:
    matchLabels:
      app: pauses
  template:
    metadata:
      labels:
        app: pauses
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: pause
        image: ` + pauseImage + `
        imagePullPolicy: IfNotPresent
`

func TestIntegrationApplyWaitExec(t *testing.T) {
	env := connectOrSkip(t)
	ctx := Context(t, 2*time.Minute)
	ns := env.NewNamespace(t, "kube-it")

	objs, err := env.Apply(ctx, ns, []byte(integrationManifest))
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) != 3 {
		t.Fatalf("Apply returned %d objects, want 3", len(objs))
	}
	for _, o := range objs {
		if o.GetNamespace() != ns || o.GetUID() == "" {
			t.Errorf("%s: namespace %q uid %q; want it stored in %s", objectRef(o), o.GetNamespace(), o.GetUID(), ns)
		}
	}
	// Applying the same manifest again is what a test re-running a step does; it must not fail.
	if _, err := env.Apply(ctx, ns, []byte(integrationManifest)); err != nil {
		t.Fatalf("re-apply: %v", err)
	}
	if err := env.WaitReady(ctx, ns, objs...); err != nil {
		t.Fatal(err)
	}

	pods, err := env.PodsOf(ctx, ns, "app=pauses")
	if err != nil {
		t.Fatal(err)
	}
	if len(pods) != 2 {
		t.Errorf("PodsOf(app=pauses) = %d pods, want 2", len(pods))
	}
	p, err := env.RunningPodOf(ctx, ns, "pauses")
	if err != nil {
		t.Fatal(err)
	}
	if p.Labels["app"] != "pauses" {
		t.Errorf("RunningPodOf picked %s with labels %v", p.Name, p.Labels)
	}

	// The pause image has nothing to run but itself: the exec must fail, and say where.
	stdout, stderr, err := env.Exec(ctx, ns, "pause", "pause", []string{"/nonexistent"}, nil)
	t.Logf("exec /nonexistent: stdout %q, stderr %q, err: %v", stdout, stderr, err)
	if err == nil {
		t.Fatal("exec of /nonexistent succeeded")
	}
	if !strings.Contains(err.Error(), `"/nonexistent"`) || !strings.Contains(err.Error(), "pod "+ns+"/pause") {
		t.Errorf("exec error %q does not name the command and the pod", err)
	}
	var exitErr exec.CodeExitError
	if errors.As(err, &exitErr) && !strings.Contains(err.Error(), "exit code") {
		t.Errorf("exec error %q has an exit code but does not say it", err)
	}

	logs, err := env.Logs(ctx, ns, "pause", "")
	if err != nil {
		t.Fatal(err)
	}
	if logs != "" {
		t.Errorf("pause logged %q, want nothing", logs)
	}
}

func TestIntegrationWaitExplains(t *testing.T) {
	env := connectOrSkip(t)
	ctx := Context(t, time.Minute)
	ns := env.NewNamespace(t, "kube-it-explain")

	objs, err := env.Apply(ctx, ns, []byte(`
apiVersion: v1
kind: Pod
metadata:
  name: missing-image
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: kwarp.test/does-not-exist:1
    imagePullPolicy: Never
`))
	if err != nil {
		t.Fatal(err)
	}
	// A short wait of its own, so that the test's context outlives it.
	err = env.WaitReady(Context(t, 10*time.Second), ns, objs...)
	t.Logf("WaitReady error:\n%v", err)
	if err == nil {
		t.Fatal("a pod whose image is absent with pull policy Never became ready")
	}
	for _, want := range []string{"pod " + ns + "/missing-image not ready", "ErrImageNeverPull", "kwarp.test/does-not-exist:1"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not contain %q", want)
		}
	}
	if ctx.Err() != nil {
		t.Fatalf("test context ended too: %v", ctx.Err())
	}

	// What a failing test would log at cleanup.
	rec := &logRecorder{TB: t}
	env.DumpNamespace(rec, ns)
	dump := strings.Join(rec.lines, "\n")
	for _, want := range []string{
		"dump of namespace " + ns,
		"pod " + ns + "/missing-image: phase Pending",
		"container app: ready=false restarts=0, waiting: ErrImageNeverPull",
		"logs of " + ns + "/missing-image container app",
		"Warning ErrImageNeverPull Pod/missing-image",
		"Normal Scheduled Pod/missing-image",
	} {
		if !strings.Contains(dump, want) {
			t.Errorf("dump does not contain %q", want)
		}
	}
	if t.Failed() {
		t.Logf("dump:\n%s", dump)
	}

	// A namespace-scoped object applied into another namespace would escape the cleanup.
	if _, err := env.Apply(ctx, ns, []byte("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n  namespace: default\n")); err == nil || !strings.Contains(err.Error(), "configmap/c") {
		t.Errorf("Apply into another namespace = %v, want an error naming configmap/c", err)
	}
}

// logRecorder keeps what is logged through it, to check DumpNamespace's output.
type logRecorder struct {
	testing.TB
	lines []string
}

func (r *logRecorder) Log(args ...any) { r.lines = append(r.lines, fmt.Sprint(args...)) }
func (r *logRecorder) Logf(format string, args ...any) {
	r.lines = append(r.lines, fmt.Sprintf(format, args...))
}
