package agentpod

import (
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	agentv1 "github.com/kwarp-dev/kwarp/agent/api/v1"
	"github.com/kwarp-dev/kwarp/kube/target"
)

func sampleTarget() *target.Resolved {
	return &target.Resolved{
		Kind: target.KindDeployment, Name: "sample", Namespace: "shop",
		Pod: "sample-6df6c-x7k2p", PodUID: "2b1f6a5e-0000-4000-8000-000000000001", PodIP: "10.244.0.7", Node: "node1",
		Container: "app", ContainerID: "0123456789abcdef", Runtime: "containerd",
	}
}

func opts(mutate ...func(*Options)) Options {
	o := Options{Target: sampleTarget(), Namespace: "shop", Image: "kwarp.dev/kwarp-agent:v1", Mode: ModeJob,
		TTL: 30 * time.Second, Port: DefaultJobPort}
	for _, m := range mutate {
		m(&o)
	}
	return o
}

func TestBuildJob(t *testing.T) {
	o := opts(func(o *Options) { o.SessionID = "s-1"; o.LogLevel = "debug" })
	name := jobName(o)
	j := buildJob(o, name)
	ps := j.Spec.Template.Spec
	c := ps.Containers[0]

	if j.Name != name || !strings.HasPrefix(name, "kwarp-agent-") || len(name) != len("kwarp-agent-")+10 {
		t.Errorf("name %q", j.Name)
	}
	if j.Namespace != "shop" {
		t.Errorf("namespace %q", j.Namespace)
	}
	if *j.Spec.TTLSecondsAfterFinished != 10 || *j.Spec.BackoffLimit != 0 {
		t.Errorf("ttlSecondsAfterFinished %d backoffLimit %d, want 10 and 0", *j.Spec.TTLSecondsAfterFinished, *j.Spec.BackoffLimit)
	}
	if ps.NodeName != "node1" || !ps.HostPID || ps.RestartPolicy != corev1.RestartPolicyNever || *ps.TerminationGracePeriodSeconds != 2 {
		t.Errorf("pod spec nodeName %q hostPID %v restartPolicy %s grace %d", ps.NodeName, ps.HostPID, ps.RestartPolicy, *ps.TerminationGracePeriodSeconds)
	}
	if len(ps.Tolerations) != 1 || ps.Tolerations[0].Operator != corev1.TolerationOpExists || ps.Tolerations[0].Key != "" {
		t.Errorf("tolerations %v, want one that tolerates everything", ps.Tolerations)
	}
	if *ps.AutomountServiceAccountToken {
		t.Error("the agent pod mounts a service account token it never uses")
	}
	wantLabels := map[string]string{"app.kubernetes.io/name": "kwarp-agent",
		"kwarp.dev/target-uid": "2b1f6a5e-0000-4000-8000-000000000001", "kwarp.dev/container": "app"}
	if !reflect.DeepEqual(j.Labels, wantLabels) {
		t.Errorf("Job labels %v, want %v", j.Labels, wantLabels)
	}
	for k, v := range wantLabels {
		if j.Spec.Template.Labels[k] != v {
			t.Errorf("pod label %s = %q, want %q", k, j.Spec.Template.Labels[k], v)
		}
	}
	if j.Spec.Template.Labels["sidecar.istio.io/inject"] != "false" || j.Spec.Template.Annotations["linkerd.io/inject"] != "disabled" {
		t.Errorf("meshes may inject a proxy into the agent pod: labels %v annotations %v", j.Spec.Template.Labels, j.Spec.Template.Annotations)
	}
	if j.Annotations[AnnotationSession] != "s-1" || !strings.Contains(j.Annotations[AnnotationTarget], "deployment/sample") {
		t.Errorf("annotations %v", j.Annotations)
	}
	wantArgs := []string{"--listen=:7700", "--ttl=30s", "--container-id=0123456789abcdef", "--namespace=shop",
		"--pod=sample-6df6c-x7k2p", "--container=app", "--log-level=debug"}
	if !reflect.DeepEqual(c.Args, wantArgs) {
		t.Errorf("args %q\nwant %q", c.Args, wantArgs)
	}
	if c.Name != ContainerName || c.Image != o.Image || c.ImagePullPolicy != corev1.PullIfNotPresent {
		t.Errorf("container %s image %s pull %s", c.Name, c.Image, c.ImagePullPolicy)
	}
	if len(c.Env) != 1 || c.Env[0].Name != agentv1.NodeIPEnv || c.Env[0].ValueFrom == nil || c.Env[0].ValueFrom.FieldRef == nil ||
		c.Env[0].ValueFrom.FieldRef.FieldPath != "status.hostIP" {
		t.Errorf("env %+v, want %s from status.hostIP", c.Env, agentv1.NodeIPEnv)
	}
	if c.ReadinessProbe == nil || c.ReadinessProbe.GRPC == nil || c.ReadinessProbe.GRPC.Port != 7700 {
		t.Errorf("readiness probe %+v, want gRPC on 7700", c.ReadinessProbe)
	}
	if len(c.Ports) != 1 || c.Ports[0].ContainerPort != 7700 {
		t.Errorf("ports %v", c.Ports)
	}
	caps := c.SecurityContext.Capabilities.Add
	for _, want := range []corev1.Capability{"SYS_PTRACE", "SYS_ADMIN", "NET_ADMIN", "DAC_READ_SEARCH", "DAC_OVERRIDE", "FOWNER", "CHOWN"} {
		if !slices.Contains(caps, want) {
			t.Errorf("capabilities %v lack %s", caps, want)
		}
	}
	if c.SecurityContext.Privileged != nil {
		t.Error("privileged without Options.Privileged")
	}
}

func TestBuildJobPrivilegedAndTargetless(t *testing.T) {
	j := buildJob(opts(func(o *Options) { o.Privileged = true }), "x")
	sc := j.Spec.Template.Spec.Containers[0].SecurityContext
	if sc.Privileged == nil || !*sc.Privileged || sc.Capabilities != nil {
		t.Errorf("privileged security context %+v", sc)
	}

	tl := opts(func(o *Options) { o.Target = nil; o.Namespace = "dev" })
	name := jobName(tl)
	if !strings.HasPrefix(name, "kwarp-agent-tl-") || name == jobName(tl) {
		t.Errorf("targetless names %q: want kwarp-agent-tl-<random>", name)
	}
	j = buildJob(tl, name)
	ps := j.Spec.Template.Spec
	if ps.NodeName != "" || ps.HostPID {
		t.Errorf("targetless agent pinned to a node (%q) or in the host PID namespace (%v)", ps.NodeName, ps.HostPID)
	}
	if j.Labels[LabelTargetless] != "true" || j.Labels[LabelTargetUID] != "" {
		t.Errorf("targetless labels %v", j.Labels)
	}
	sc = ps.Containers[0].SecurityContext
	if sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.Capabilities == nil || sc.Capabilities.Drop[0] != "ALL" {
		t.Errorf("targetless security context %+v: want restricted", sc)
	}
	for _, a := range ps.Containers[0].Args {
		if strings.HasPrefix(a, "--container-id") || strings.HasPrefix(a, "--pod") {
			t.Errorf("targetless args carry %s", a)
		}
	}
}

func TestJobName(t *testing.T) {
	base := opts()
	if jobName(base) != jobName(opts()) {
		t.Error("the same target gets different Job names: sessions could not share one agent")
	}
	for what, o := range map[string]Options{
		"another container": opts(func(o *Options) { t := sampleTarget(); t.Container = "worker"; o.Target = t }),
		"another pod":       opts(func(o *Options) { t := sampleTarget(); t.PodUID = "other"; o.Target = t }),
		"another image":     opts(func(o *Options) { o.Image = "kwarp.dev/kwarp-agent:v2" }),
		"privileged":        opts(func(o *Options) { o.Privileged = true }),
		"another port":      opts(func(o *Options) { o.Port = 7701 }),
	} {
		if jobName(o) == jobName(base) {
			t.Errorf("%s: same Job name %s", what, jobName(o))
		}
	}
}

func TestBuildEphemeral(t *testing.T) {
	o := opts(func(o *Options) { o.Mode = ModeEphemeral; o.Port = 23456; o.IdleStart = time.Minute })
	name := ephemeralName()
	ec := buildEphemeral(o, name)
	if !strings.HasPrefix(ec.Name, "kwarp-agent-") || ec.Name == ephemeralName() {
		t.Errorf("name %q", ec.Name)
	}
	if ec.TargetContainerName != "app" {
		t.Errorf("targetContainerName %q, want the target container", ec.TargetContainerName)
	}
	if !slices.Contains(ec.Args, "--ephemeral") || !slices.Contains(ec.Args, "--listen=:23456") || !slices.Contains(ec.Args, "--idle-start=1m0s") {
		t.Errorf("args %q", ec.Args)
	}
	if len(ec.Ports) != 0 || ec.ReadinessProbe != nil {
		t.Error("ephemeral containers may not have ports or probes: the API server would refuse it")
	}
	if portFromArgs(ec.Args) != 23456 {
		t.Errorf("portFromArgs = %d", portFromArgs(ec.Args))
	}
	// as in a Job: the kubelet's probes from the node stay with the app under a whole-port steal
	if len(ec.Env) != 1 || ec.Env[0].Name != agentv1.NodeIPEnv || ec.Env[0].ValueFrom == nil || ec.Env[0].ValueFrom.FieldRef == nil ||
		ec.Env[0].ValueFrom.FieldRef.FieldPath != "status.hostIP" {
		t.Errorf("env %+v, want %s from status.hostIP", ec.Env, agentv1.NodeIPEnv)
	}
}

func TestPickPortAvoidsUsedPorts(t *testing.T) {
	p := &corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app"}}}}
	for port := ephemeralPortMin; port < ephemeralPortMax; port++ {
		if port != 31337 {
			p.Spec.Containers[0].Ports = append(p.Spec.Containers[0].Ports, corev1.ContainerPort{ContainerPort: int32(port)})
		}
	}
	if got := pickPort(p); got != 31337 {
		t.Errorf("pickPort = %d, want the only free one", got)
	}
	for range 100 {
		if got := pickPort(&corev1.Pod{}); got < ephemeralPortMin || got >= ephemeralPortMax {
			t.Fatalf("pickPort = %d out of range", got)
		}
	}
}

func TestRunningEphemeral(t *testing.T) {
	o := opts(func(o *Options) { o.Mode = ModeEphemeral; o.Port = 0 })
	ec := buildEphemeral(func() Options { o := o; o.Port = 25000; return o }(), "kwarp-agent-abcde")
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "sample-6df6c-x7k2p"},
		Spec:       corev1.PodSpec{EphemeralContainers: []corev1.EphemeralContainer{ec}},
		Status: corev1.PodStatus{EphemeralContainerStatuses: []corev1.ContainerStatus{
			{Name: "kwarp-agent-abcde", State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}}},
	}
	if name, port := runningEphemeral(pod, o); name != "kwarp-agent-abcde" || port != 25000 {
		t.Errorf("runningEphemeral = %q, %d", name, port)
	}
	other := o
	other.Image = "kwarp.dev/kwarp-agent:v2"
	if name, _ := runningEphemeral(pod, other); name != "" {
		t.Error("reused an agent of another image")
	}
	priv := o
	priv.Privileged = true
	if name, _ := runningEphemeral(pod, priv); name != "" {
		t.Error("reused an unprivileged agent for a privileged request")
	}
	pod.Status.EphemeralContainerStatuses[0].State = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{}}
	if name, _ := runningEphemeral(pod, o); name != "" {
		t.Error("reused a terminated agent")
	}
}

func TestWithDefaults(t *testing.T) {
	o, err := opts(func(o *Options) { o.Client, o.RESTConfig = nil, nil }).withDefaults()
	if err == nil {
		t.Fatalf("no client: %+v", o)
	}
	_, err = Options{Client: fakeClient(), RESTConfig: restConfig(), Mode: ModeEphemeral}.withDefaults()
	if err == nil || !strings.Contains(err.Error(), "needs a target") {
		t.Errorf("ephemeral targetless: %v", err)
	}
	_, err = Options{Client: fakeClient(), RESTConfig: restConfig(), Mode: "daemonset", Target: sampleTarget()}.withDefaults()
	if err == nil || !strings.Contains(err.Error(), `"job" or "ephemeral"`) {
		t.Errorf("bad mode: %v", err)
	}
	o, err = Options{Client: fakeClient(), RESTConfig: restConfig(), Target: sampleTarget()}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if o.Mode != ModeJob || o.Port != 7700 || o.TTL != 30*time.Second || o.StartTimeout != time.Minute || o.Namespace != "shop" || o.Image == "" {
		t.Errorf("defaults %+v", o)
	}
	o, _ = Options{Client: fakeClient(), RESTConfig: restConfig(), Target: sampleTarget(), Mode: ModeEphemeral}.withDefaults()
	if o.Port != 0 {
		t.Errorf("ephemeral default port %d, want 0 (picked against the pod's ports)", o.Port)
	}
}
