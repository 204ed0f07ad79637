package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/kwarp-dev/kwarp/kube"
	"github.com/kwarp-dev/kwarp/kube/target"
	testkube "github.com/kwarp-dev/kwarp/test/kube"
	"github.com/kwarp-dev/kwarp/test/testenv"
)

// kwarpResult is one run of the kwarp binary.
type kwarpResult struct {
	code           int
	stdout, stderr string
	took           time.Duration
}

func (r kwarpResult) String() string {
	return "exit " + strconv.Itoa(r.code) + " after " + r.took.Round(time.Millisecond).String() + "\nstdout: " + r.stdout + "\nstderr: " + r.stderr
}

// kwarpOnLaptop runs the kwarp binary in the laptop network namespace (it reaches the API
// server and nothing else of the cluster), with the laptop kubeconfig unless args override it.
func kwarpOnLaptop(t *testing.T, ctx context.Context, env []string, args ...string) kwarpResult {
	t.Helper()
	return kwarpOnLaptopIn(t, ctx, "", env, args...)
}

// kwarpOnLaptopIn is kwarpOnLaptop with the working directory dir ("" = the test's).
func kwarpOnLaptopIn(t *testing.T, ctx context.Context, dir string, env []string, args ...string) kwarpResult {
	t.Helper()
	cmd := testenv.Laptop.Command(ctx, testenv.KwarpBinary(t), args...)
	cmd.Dir = dir
	cmd.Env = append(cmd.Env, env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	start := time.Now()
	err := cmd.Run()
	r := kwarpResult{stdout: out.String(), stderr: errb.String(), took: time.Since(start)}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	default:
		t.Fatalf("run kwarp %v: %v", args, err)
	}
	t.Logf("kwarp %s: %s", strings.Join(args, " "), r)
	return r
}

// TestLsFromLaptop lists the sample namespace's targets from the laptop: the Deployment and
// its pod with both containers, the mesh sidecar marked, in JSON and as a table.
func TestLsFromLaptop(t *testing.T) {
	ctx := testkube.Context(t, 3*time.Minute)
	ns := deploy(t, ctx, "ls", "sample", "client")

	r := kwarpOnLaptop(t, ctx, nil, "ls", "-n", ns, "--json")
	if r.code != 0 {
		t.Fatalf("kwarp ls --json: %s", r)
	}
	var targets []target.Target
	if err := json.Unmarshal([]byte(r.stdout), &targets); err != nil {
		t.Fatalf("decode %q: %v", r.stdout, err)
	}
	byRef := map[string]target.Target{}
	for _, tg := range targets {
		byRef[tg.Ref()] = tg
		if tg.Namespace != ns {
			t.Errorf("%s in namespace %q, want %q", tg.Ref(), tg.Namespace, ns)
		}
	}
	wantContainers := []target.Container{{Name: "istio-proxy", Sidecar: true}, {Name: "app", Sidecar: false}}
	sample, ok := byRef["deployment/sample"]
	if !ok {
		t.Fatalf("deployment/sample not listed: %v", targets)
	}
	if !sample.Ready || sample.Pods != "1/1" || !equalContainers(sample.Containers, wantContainers) {
		t.Errorf("deployment/sample = %+v, want ready 1/1 with %v", sample, wantContainers)
	}
	pod, err := testenv.Env.RunningPodOf(ctx, ns, "sample")
	if err != nil {
		t.Fatal(err)
	}
	if p, ok := byRef["pod/"+pod.Name]; !ok || !equalContainers(p.Containers, wantContainers) {
		t.Errorf("pod/%s = %+v (listed %v)", pod.Name, p, ok)
	}
	if c, ok := byRef["pod/client"]; !ok || len(c.Containers) != 1 || c.Containers[0].Sidecar {
		t.Errorf("pod/client = %+v (listed %v)", c, ok)
	}
	// the raw field names are the contract, not just what the Go struct decodes
	for _, f := range []string{`"kind": "deployment"`, `"name": "sample"`, `"namespace": "` + ns + `"`, `"containers": [`, `"sidecar": true`, `"ready": true`} {
		if !strings.Contains(r.stdout, f) {
			t.Errorf("JSON lacks %s", f)
		}
	}

	r = kwarpOnLaptop(t, ctx, nil, "ls", "-n", ns)
	if r.code != 0 || !strings.Contains(r.stdout, "deployment/sample") || !strings.Contains(r.stdout, "istio-proxy (sidecar), app") {
		t.Errorf("kwarp ls table: %s", r)
	}
}

func equalContainers(a, b []target.Container) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestResolveTarget resolves deploy/sample: in process (every field of Resolved against the
// pod's real status) and with the CLI from the laptop (the app container, the sidecar skipped).
func TestResolveTarget(t *testing.T) {
	ctx := testkube.Context(t, 3*time.Minute)
	ns := deploy(t, ctx, "resolve", "sample")
	pod, err := testenv.Env.RunningPodOf(ctx, ns, "sample")
	if err != nil {
		t.Fatal(err)
	}

	t.Run("in process", func(t *testing.T) {
		c, err := kube.NewClients(testenv.Env.Config, "")
		if err != nil {
			t.Fatal(err)
		}
		r, err := target.Resolve(ctx, c, ns, target.KindDeployment, "sample", "")
		if err != nil {
			t.Fatal(err)
		}
		var appID string
		for _, cs := range pod.Status.ContainerStatuses {
			if cs.Name == "app" {
				appID = cs.ContainerID
			}
		}
		if r.Pod != pod.Name || r.PodUID != pod.UID || r.PodIP != pod.Status.PodIP || r.Node != "node1" ||
			r.Container != "app" || r.Runtime+"://"+r.ContainerID != appID {
			t.Errorf("resolved %+v\nwant pod %s (%s, %s) on node1, container app %s", r, pod.Name, pod.UID, pod.Status.PodIP, appID)
		}
		if len(r.Ports) != 1 || r.Ports[0].ContainerPort != 8080 {
			t.Errorf("ports %v, want the app's 8080", r.Ports)
		}
		if want := "deployment/sample → pod " + pod.Name + ", container app (skipped mesh sidecar istio-proxy)"; r.Note != want {
			t.Errorf("note %q, want %q", r.Note, want)
		}
	})

	t.Run("from the laptop", func(t *testing.T) {
		r := kwarpOnLaptop(t, ctx, nil, "agent-ping", "-n", ns, "-t", "deploy/sample", "--resolve-only")
		if r.code != 0 {
			t.Fatalf("%s", r)
		}
		var out struct{ Target target.Resolved }
		if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
			t.Fatal(err)
		}
		if out.Target.Container != "app" || out.Target.Pod != pod.Name {
			t.Errorf("resolved %+v, want container app of %s", out.Target, pod.Name)
		}
		if !strings.Contains(r.stderr, "skipped mesh sidecar istio-proxy") {
			t.Errorf("progress does not say the sidecar was skipped: %q", r.stderr)
		}
	})

	t.Run("-c names the containers", func(t *testing.T) {
		r := kwarpOnLaptop(t, ctx, nil, "agent-ping", "-n", ns, "-t", "deployment/sample", "-c", "nope", "--resolve-only")
		if r.code != 3 || !strings.Contains(r.stderr, `deployment/sample has no container "nope"; its containers: istio-proxy (mesh sidecar), app`) {
			t.Errorf("%s", r)
		}
	})
}

// TestTargetErrors checks the messages that point at the right next command: a missing target
// names the ones that exist, a missing namespace says so, a workload without a running pod
// says in what state its pods are, a target that does not parse is a usage error.
func TestTargetErrors(t *testing.T) {
	ctx := testkube.Context(t, 3*time.Minute)
	ns := deploy(t, ctx, "target-errors", "sample", "echo")

	tests := []struct {
		name     string
		args     []string
		wantCode int
		want     []string
	}{
		{"missing deployment names the others", []string{"-n", ns, "-t", "deploy/nope"}, 3,
			[]string{`deployment/nope not found in namespace "` + ns + `"; deployments there: echo, sample`, "kwarp ls -n " + ns}},
		{"missing statefulset", []string{"-n", ns, "-t", "sts/db"}, 3,
			[]string{`statefulset/db not found in namespace "` + ns + `", which has no statefulsets`}},
		{"missing namespace", []string{"-n", "kwarp-no-such-ns", "-t", "deploy/sample"}, 3,
			[]string{`namespace "kwarp-no-such-ns" does not exist`}},
		{"rollouts without the CRD", []string{"-n", ns, "-t", "rollout/sample"}, 3,
			[]string{"does not serve Argo Rollouts", "rollouts.argoproj.io"}},
		{"unparsable target is a usage error", []string{"-n", ns, "-t", "svc/sample"}, 2,
			[]string{`invalid target "svc/sample": unknown kind "svc"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if strings.HasPrefix(tt.name, "rollouts without") && rolloutsServed() {
				t.Skip("the cluster serves Argo Rollouts now (another test installed the CRD)")
			}
			r := kwarpOnLaptop(t, ctx, nil, append([]string{"agent-ping", "--resolve-only"}, tt.args...)...)
			if r.code != tt.wantCode {
				t.Errorf("exit %d, want %d", r.code, tt.wantCode)
			}
			for _, w := range tt.want {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("stderr lacks %q:\n%s", w, r.stderr)
				}
			}
		})
	}

	t.Run("no running pod says why", func(t *testing.T) {
		broken := `apiVersion: apps/v1
kind: Deployment
metadata: {name: broken}
spec:
  replicas: 1
  selector: {matchLabels: {app: broken}}
  template:
    metadata: {labels: {app: broken}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
        - {name: app, image: "kwarp.test/no-such-image:1", imagePullPolicy: Never}
`
		if _, err := testenv.Env.Apply(ctx, ns, []byte(broken)); err != nil {
			t.Fatal(err)
		}
		err := wait.PollUntilContextCancel(ctx, 250*time.Millisecond, true, func(ctx context.Context) (bool, error) {
			pods, err := testenv.Env.PodsOf(ctx, ns, "app=broken")
			if err != nil || len(pods) == 0 || len(pods[0].Status.ContainerStatuses) == 0 {
				return false, nil
			}
			w := pods[0].Status.ContainerStatuses[0].State.Waiting
			return w != nil && w.Reason == "ErrImageNeverPull", nil
		})
		if err != nil {
			t.Fatalf("the broken pod never reached ErrImageNeverPull: %v", err)
		}
		r := kwarpOnLaptop(t, ctx, nil, "agent-ping", "--resolve-only", "-n", ns, "-t", "deploy/broken")
		if r.code != 3 || !strings.Contains(r.stderr, `deployment/broken in namespace "`+ns+`" has no running pod: broken-`) ||
			!strings.Contains(r.stderr, "Pending, container app waiting: ErrImageNeverPull") {
			t.Errorf("%s", r)
		}
	})
}

// saKubeconfig makes a kubeconfig for the laptop that authenticates as a new ServiceAccount
// with no RBAC at all (a bound token from the TokenRequest API).
func saKubeconfig(t *testing.T, ctx context.Context, ns, name string) string {
	t.Helper()
	sa, err := testenv.Env.Client.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := testenv.Env.Client.CoreV1().ServiceAccounts(ns).CreateToken(ctx, sa.Name, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptrInt64(3600)}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	laptop, err := clientcmd.LoadFromFile(testenv.Cluster.LaptopKubeconfig())
	if err != nil {
		t.Fatal(err)
	}
	cluster := laptop.Clusters[laptop.Contexts[laptop.CurrentContext].Cluster]
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["c"] = cluster
	cfg.AuthInfos[name] = &clientcmdapi.AuthInfo{Token: tok.Status.Token}
	cfg.Contexts["sa"] = &clientcmdapi.Context{Cluster: "c", AuthInfo: name, Namespace: ns}
	cfg.CurrentContext = "sa"
	path := filepath.Join(t.TempDir(), "sa.kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	return path
}

func ptrInt64(v int64) *int64 { return &v }

// TestForbiddenNamesVerbAndResource runs kwarp as a ServiceAccount that may do nothing: every
// command fails with exit 3 naming the verb and resource it was refused, and doctor lists each
// permission it lacks. As the admin, doctor passes.
func TestForbiddenNamesVerbAndResource(t *testing.T) {
	ctx := testkube.Context(t, 3*time.Minute)
	ns := deploy(t, ctx, "rbac", "sample")
	kc := saKubeconfig(t, ctx, ns, "nobody")
	user := "system:serviceaccount:" + ns + ":nobody"

	r := kwarpOnLaptop(t, ctx, nil, "--kubeconfig", kc, "agent-ping", "--resolve-only", "-t", "deploy/sample")
	if r.code != 3 || !strings.Contains(r.stderr, `forbidden: cannot get deployments.apps in namespace "`+ns+`"`) || !strings.Contains(r.stderr, user) {
		t.Errorf("resolve as %s: %s", user, r)
	}
	r = kwarpOnLaptop(t, ctx, nil, "--kubeconfig", kc, "agent-ping", "--resolve-only", "-t", "pod/x")
	if r.code != 3 || !strings.Contains(r.stderr, `forbidden: cannot get pods in namespace "`+ns+`"`) {
		t.Errorf("resolve a pod as %s: %s", user, r)
	}
	r = kwarpOnLaptop(t, ctx, nil, "--kubeconfig", kc, "ls")
	if r.code != 3 || !strings.Contains(r.stderr, `forbidden: cannot list pods in namespace "`+ns+`"`) {
		t.Errorf("ls as %s: %s", user, r)
	}
	r = kwarpOnLaptop(t, ctx, nil, "--kubeconfig", kc, "doctor")
	if r.code != 3 {
		t.Errorf("doctor as %s: exit %d, want 3", user, r.code)
	}
	for _, w := range []string{
		"OK   API server https://",
		"INFO authenticated as " + user,
		`FAIL RBAC create jobs.batch in namespace "` + ns + `" denied`,
		`FAIL RBAC create pods/portforward in namespace "` + ns + `" denied`,
		`FAIL RBAC list pods in namespace "` + ns + `" denied`,
		`FAIL RBAC update pods/ephemeralcontainers in namespace "` + ns + `" denied`,
		`allows "create" on "jobs.batch"`,
	} {
		if !strings.Contains(r.stdout, w) {
			t.Errorf("doctor output lacks %q", w)
		}
	}

	r = kwarpOnLaptop(t, ctx, nil, "-n", ns, "doctor")
	if r.code != 0 || strings.Contains(r.stdout, "FAIL") || !strings.Contains(r.stdout, "OK   RBAC create pods/portforward") {
		t.Errorf("doctor as the admin: %s", r)
	}

	t.Run("everything but the port-forward", func(t *testing.T) {
		kc := saKubeconfig(t, ctx, ns, "noforward")
		role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "noforward"}, Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"pods", "pods/log", "events"}, Verbs: []string{"get", "list", "watch"}},
			{APIGroups: []string{"apps"}, Resources: []string{"deployments"}, Verbs: []string{"get", "list"}},
			{APIGroups: []string{"batch"}, Resources: []string{"jobs"}, Verbs: []string{"get", "list", "watch", "create", "delete"}},
		}}
		if _, err := testenv.Env.Client.RbacV1().Roles(ns).Create(ctx, role, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		binding := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "noforward"},
			RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "noforward"},
			Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: "noforward", Namespace: ns}}}
		if _, err := testenv.Env.Client.RbacV1().RoleBindings(ns).Create(ctx, binding, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		r := kwarpOnLaptop(t, ctx, nil, "--kubeconfig", kc, "agent-ping", "-t", "deploy/sample", "--agent-idle-start", "5s")
		if r.code != 3 || !strings.Contains(r.stderr, `forbidden: cannot create pods/portforward in namespace "`+ns+`"`) {
			t.Errorf("agent-ping without pods/portforward: %s", r)
		}
	})
}

// TestUnreachableAPIServer points kwarp at an address the laptop's packets to are dropped
// (the node's address, a port the laptop filter does not let through): no answer ever comes,
// and kwarp must say so within seconds, naming the server.
func TestUnreachableAPIServer(t *testing.T) {
	ctx := testkube.Context(t, 2*time.Minute)
	const server = "https://169.254.78.1:1"
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["c"] = &clientcmdapi.Cluster{Server: server, InsecureSkipTLSVerify: true}
	cfg.AuthInfos["u"] = &clientcmdapi.AuthInfo{Token: "x"}
	cfg.Contexts["x"] = &clientcmdapi.Context{Cluster: "c", AuthInfo: "u", Namespace: "default"}
	cfg.CurrentContext = "x"
	path := filepath.Join(t.TempDir(), "unreachable.kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"ls"},
		{"agent-ping", "--resolve-only", "-t", "deploy/sample"},
		{"doctor"},
	} {
		r := kwarpOnLaptop(t, ctx, nil, append([]string{"--kubeconfig", path}, args...)...)
		if r.code != 3 {
			t.Errorf("kwarp %v: exit %d, want 3", args, r.code)
		}
		out := r.stderr + r.stdout
		if !strings.Contains(out, "cannot reach the API server at "+server) {
			t.Errorf("kwarp %v does not name the server:\n%s", args, out)
		}
		if r.took > 12*time.Second {
			t.Errorf("kwarp %v took %s to give up; want seconds", args, r.took)
		}
	}
}

const rolloutCRD = `apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: rollouts.argoproj.io
spec:
  group: argoproj.io
  scope: Namespaced
  names: {kind: Rollout, listKind: RolloutList, plural: rollouts, singular: rollout, shortNames: [ro]}
  versions:
    - name: v1alpha1
      served: true
      storage: true
      schema:
        openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}
`

// Two Rollouts without a controller: their selector matches the sample Deployment's pods, which
// is all kwarp reads. "sample" carries its own template, "ref" borrows the Deployment's.
const rollouts = `apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata: {name: sample}
spec:
  selector: {matchLabels: {app: sample}}
  template:
    metadata: {labels: {app: sample}}
    spec:
      containers:
        - {name: istio-proxy, image: kwarp.test/workloads:dev}
        - {name: app, image: kwarp.test/workloads:dev}
---
apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata: {name: ref}
spec:
  selector: {matchLabels: {app: sample}}
  workloadRef: {apiVersion: apps/v1, kind: Deployment, name: sample}
`

// rolloutsServed reports whether the cluster serves argoproj.io/v1alpha1 rollouts.
func rolloutsServed() bool {
	l, err := testenv.Env.Client.Discovery().ServerResourcesForGroupVersion("argoproj.io/v1alpha1")
	if err != nil {
		return false
	}
	for _, r := range l.APIResources {
		if r.Name == "rollouts" {
			return true
		}
	}
	return false
}

// TestRolloutTarget installs the Argo Rollouts CRD (kwarp reads Rollouts with the dynamic
// client, so the CRD alone is enough) and resolves rollout/ targets, with a template and with
// a workloadRef, and lists them.
func TestRolloutTarget(t *testing.T) {
	ctx := testkube.Context(t, 3*time.Minute)
	ns := deploy(t, ctx, "rollout", "sample")
	if !rolloutsServed() {
		if _, err := testenv.Env.Apply(ctx, "", []byte(rolloutCRD)); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			dctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if err := testenv.Env.Client.Discovery().RESTClient().Delete().
				AbsPath("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/rollouts.argoproj.io").Do(dctx).Error(); err != nil {
				t.Errorf("delete the Rollout CRD: %v", err)
			}
		})
		if err := wait.PollUntilContextCancel(ctx, 250*time.Millisecond, true, func(context.Context) (bool, error) {
			return rolloutsServed(), nil
		}); err != nil {
			t.Fatalf("the Rollout CRD is not served: %v", err)
		}
	}
	if _, err := testenv.Env.Apply(ctx, ns, []byte(rollouts)); err != nil {
		t.Fatal(err)
	}
	pod, err := testenv.Env.RunningPodOf(ctx, ns, "sample")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"sample", "ref"} {
		r := kwarpOnLaptop(t, ctx, nil, "agent-ping", "--resolve-only", "-n", ns, "-t", "rollout/"+name)
		var out struct{ Target target.Resolved }
		if r.code != 0 || json.Unmarshal([]byte(r.stdout), &out) != nil || out.Target.Pod != pod.Name || out.Target.Container != "app" {
			t.Errorf("rollout/%s: want pod %s, container app: %s", name, pod.Name, r)
		}
	}
	r := kwarpOnLaptop(t, ctx, nil, "agent-ping", "--resolve-only", "-n", ns, "-t", "rollout/nope")
	if r.code != 3 || !strings.Contains(r.stderr, "rollouts there: ref, sample") {
		t.Errorf("rollout/nope: %s", r)
	}
	r = kwarpOnLaptop(t, ctx, nil, "ls", "-n", ns, "--json")
	var targets []target.Target
	if err := json.Unmarshal([]byte(r.stdout), &targets); err != nil {
		t.Fatalf("%s: %v", r, err)
	}
	found := map[string]bool{}
	for _, tg := range targets {
		if tg.Kind == target.KindRollout {
			found[tg.Name] = tg.Ready && equalContainers(tg.Containers, []target.Container{{Name: "istio-proxy", Sidecar: true}, {Name: "app"}})
		}
	}
	if !found["sample"] || !found["ref"] {
		t.Errorf("kwarp ls lists rollouts %v, want sample and ref, ready, with both containers", found)
	}
}

const workloadKinds = `apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db}
spec:
  serviceName: db
  replicas: 1
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
        - {name: linkerd-proxy, image: kwarp.test/workloads:dev, imagePullPolicy: IfNotPresent, command: [/probe, sleep]}
        - {name: db, image: kwarp.test/workloads:dev, imagePullPolicy: IfNotPresent, command: [/probe, sleep]}
---
apiVersion: batch/v1
kind: Job
metadata: {name: migrate}
spec:
  template:
    spec:
      restartPolicy: Never
      terminationGracePeriodSeconds: 1
      containers:
        - {name: migrate, image: kwarp.test/workloads:dev, imagePullPolicy: IfNotPresent, command: [/probe, sleep]}
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: nightly}
spec:
  schedule: "0 0 1 1 *"
  suspend: true
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: Never
          terminationGracePeriodSeconds: 1
          containers:
            - {name: task, image: kwarp.test/workloads:dev, imagePullPolicy: IfNotPresent, command: [/probe, sleep]}
`

// TestWorkloadKinds resolves sts/, job/ and cronjob/ targets: a CronJob with no Job yet says
// how to start one; once a Job of it runs (made as `kubectl create job --from=cronjob/…`
// makes it), cronjob/ resolves to that Job's pod.
func TestWorkloadKinds(t *testing.T) {
	ctx := testkube.Context(t, 3*time.Minute)
	ns := testenv.Env.NewNamespace(t, "kinds")
	if _, err := testenv.Env.Apply(ctx, ns, []byte(workloadKinds)); err != nil {
		t.Fatal(err)
	}
	resolve := func(ref string) (kwarpResult, target.Resolved) {
		var out struct{ Target target.Resolved }
		var r kwarpResult
		// the pods start in the background: retry while they are not running yet
		_ = wait.PollUntilContextCancel(ctx, 500*time.Millisecond, true, func(context.Context) (bool, error) {
			r = kwarpOnLaptop(t, ctx, nil, "agent-ping", "--resolve-only", "-n", ns, "-t", ref)
			return r.code != 3 || !strings.Contains(r.stderr, "no running pod") && !strings.Contains(r.stderr, "has no pods"), nil
		})
		if r.code == 0 {
			_ = json.Unmarshal([]byte(r.stdout), &out)
		}
		return r, out.Target
	}
	if r, got := resolve("sts/db"); r.code != 0 || got.Pod != "db-0" || got.Container != "db" {
		t.Errorf("sts/db: want pod db-0, container db (linkerd-proxy skipped): %s", r)
	}
	if r, got := resolve("job/migrate"); r.code != 0 || !strings.HasPrefix(got.Pod, "migrate-") || got.Container != "migrate" {
		t.Errorf("job/migrate: %s", r)
	}

	r := kwarpOnLaptop(t, ctx, nil, "agent-ping", "--resolve-only", "-n", ns, "-t", "cronjob/nightly")
	if r.code != 3 || !strings.Contains(r.stderr, `cronjob/nightly in namespace "`+ns+`" has no Job yet (schedule "0 0 1 1 *"); start one now with: kubectl create job --from=cronjob/nightly`) {
		t.Errorf("cronjob/nightly without jobs: %s", r)
	}
	cj, err := testenv.Env.Client.BatchV1().CronJobs(ns).Get(ctx, "nightly", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	job := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: "nightly-manual", OwnerReferences: []metav1.OwnerReference{{
			APIVersion: "batch/v1", Kind: "CronJob", Name: cj.Name, UID: cj.UID}}},
		Spec: cj.Spec.JobTemplate.Spec,
	}
	if _, err := testenv.Env.Client.BatchV1().Jobs(ns).Create(ctx, job, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	r, got := resolve("cronjob/nightly")
	if r.code != 0 || !strings.HasPrefix(got.Pod, "nightly-manual-") || got.Container != "task" ||
		!strings.Contains(got.Note, "cronjob/nightly → job nightly-manual, pod nightly-manual-") {
		t.Errorf("cronjob/nightly: %s", r)
	}
}
