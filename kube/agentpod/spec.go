package agentpod

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/big"
	"slices"
	"strconv"
	"strings"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	agentv1 "github.com/kwarp-dev/kwarp/agent/api/v1"
	"github.com/kwarp-dev/kwarp/kube/target"
)

// Labels on every agent Job, pod and (through the pod) ephemeral container's pod.
const (
	LabelName      = target.AgentLabel // app.kubernetes.io/name=kwarp-agent
	LabelTargetUID = "kwarp.dev/target-uid"
	LabelContainer = "kwarp.dev/container"
	// LabelTargetless marks targetless agents, which serve DNS and outgoing traffic only.
	LabelTargetless = "kwarp.dev/targetless"

	// AnnotationTarget records what the agent serves, for whoever finds the Job.
	AnnotationTarget  = "kwarp.dev/target"
	AnnotationSession = "kwarp.dev/started-by-session"
)

// ContainerName is the agent's container in a Job pod; ephemeral agents get this name plus a
// random suffix, because ephemeral containers can never be removed or renamed.
const ContainerName = "kwarp-agent"

// DefaultJobPort is where a Job agent listens: its own pod has nothing else on any port.
const DefaultJobPort = 7700

// Ephemeral agents share the target pod's network namespace, so their port must not clash with
// the application's: a random one in this range, unless the policy fixes one (meshes need a
// fixed port to exclude from interception).
const (
	ephemeralPortMin = 20000
	ephemeralPortMax = 40000
)

// ttlAfterFinished is how long a finished agent Job stays: long enough to read its logs when
// something went wrong, short enough that nothing lingers.
const ttlAfterFinished = 10

// capabilities the agent needs to enter the target container and work in it:
// SYS_PTRACE and DAC_READ_SEARCH to read /proc/<pid>/{root,environ} of another user's process,
// SYS_ADMIN for setns into its namespaces, NET_ADMIN for the netfilter rules that mirror or
// steal incoming traffic, DAC_OVERRIDE, FOWNER and CHOWN to write files as the pod's user in
// fs write mode.
var capabilities = []corev1.Capability{"SYS_PTRACE", "SYS_ADMIN", "NET_ADMIN", "DAC_READ_SEARCH", "DAC_OVERRIDE", "FOWNER", "CHOWN"}

// meshOptOut keeps meshes from injecting a proxy into a Job agent's pod: a sidecar would keep
// the Job from ever finishing and would sit in front of the agent's port. Each mesh reads
// its own key, some as a label and some as an annotation, so both carry them.
var meshOptOut = map[string]string{
	"sidecar.istio.io/inject":             "false",
	"linkerd.io/inject":                   "disabled",
	"kuma.io/sidecar-injection":           "disabled",
	"consul.hashicorp.com/connect-inject": "false",
	"dapr.io/enabled":                     "false",
}

// jobName is the agent Job for a target: one per target container, image, port and privilege,
// so that sessions on the same container share one agent (DESIGN.md) and a CLI of another
// release, or one asking for more privilege, gets an agent of its own instead of a wrong one.
func jobName(o Options) string {
	if o.Target == nil {
		return "kwarp-agent-tl-" + randomString(8)
	}
	h := sha256.New()
	fmt.Fprintf(h, "%s/%s\x00%s\x00%d\x00%t", o.Target.PodUID, o.Target.Container, o.Image, o.Port, o.Privileged)
	return "kwarp-agent-" + hex.EncodeToString(h.Sum(nil))[:10]
}

// labels select the agents of one target container (or the targetless ones).
func labels(o Options) map[string]string {
	l := map[string]string{LabelName: target.AgentLabelValue}
	if o.Target == nil {
		l[LabelTargetless] = "true"
		return l
	}
	l[LabelTargetUID] = string(o.Target.PodUID)
	l[LabelContainer] = o.Target.Container
	return l
}

// agentArgs are the agent's command line (cmd/kwarp-agent). Flags are written --name=value so
// an empty value cannot swallow the next flag.
func agentArgs(o Options, ephemeral bool) []string {
	args := []string{
		"--listen=:" + strconv.Itoa(o.Port),
		"--ttl=" + o.TTL.String(),
	}
	if o.IdleStart > 0 {
		args = append(args, "--idle-start="+o.IdleStart.String())
	}
	if t := o.Target; t != nil {
		args = append(args,
			"--container-id="+t.ContainerID,
			"--namespace="+t.Namespace,
			"--pod="+t.Pod,
			"--container="+t.Container)
	}
	if ephemeral {
		args = append(args, "--ephemeral")
	}
	if o.LogLevel != "" {
		args = append(args, "--log-level="+o.LogLevel)
	}
	return args
}

// portFromArgs reads --listen back from a running agent's args: ephemeral containers cannot
// declare ports, so the args are where a reused one's port is written.
func portFromArgs(args []string) int {
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, "--listen="); ok {
			if i := strings.LastIndex(v, ":"); i >= 0 {
				if p, err := strconv.Atoi(v[i+1:]); err == nil {
					return p
				}
			}
		}
	}
	return 0
}

// securityContext grants the agent what it needs to enter a target (or everything, when the
// policy says privileged: SELinux and Bottlerocket nodes need it). A targetless agent enters
// nothing, so it runs as restricted as the "restricted" Pod Security level asks and can start
// in any namespace.
func securityContext(o Options) *corev1.SecurityContext {
	if o.Privileged {
		return &corev1.SecurityContext{Privileged: ptr.To(true)}
	}
	if o.Target == nil {
		return &corev1.SecurityContext{
			RunAsNonRoot:             ptr.To(true),
			RunAsUser:                ptr.To(int64(65532)),
			AllowPrivilegeEscalation: ptr.To(false),
			Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
			SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
		}
	}
	return &corev1.SecurityContext{Capabilities: &corev1.Capabilities{Add: slices.Clone(capabilities)}}
}

// buildJob is the agent Job: on the target's node (nodeName skips the scheduler, so a full or
// tainted node still takes it), in the host PID namespace (the agent finds the target's
// process by its container ID in /proc/<pid>/cgroup), never restarted (a failed agent is
// reported, not retried), removed ttlAfterFinished seconds after its lease ends it.
func buildJob(o Options, name string) *batchv1.Job {
	lbl := labels(o)
	podLabels := map[string]string{}
	for k, v := range lbl {
		podLabels[k] = v
	}
	// Istio and Kuma read their opt-out from a label in current releases.
	podLabels["sidecar.istio.io/inject"] = "false"
	podLabels["kuma.io/sidecar-injection"] = "disabled"
	annotations := map[string]string{}
	if o.SessionID != "" {
		annotations[AnnotationSession] = o.SessionID
	}
	if t := o.Target; t != nil {
		annotations[AnnotationTarget] = fmt.Sprintf("%s (%s/%s, container %s)", t.Ref(), t.Namespace, t.Pod, t.Container)
	}
	podAnnotations := map[string]string{}
	for k, v := range meshOptOut {
		podAnnotations[k] = v
	}
	spec := corev1.PodSpec{
		RestartPolicy:                 corev1.RestartPolicyNever,
		TerminationGracePeriodSeconds: ptr.To(int64(2)),
		// The agent enters every container kind on a node, whatever its taints say.
		Tolerations: []corev1.Toleration{{Operator: corev1.TolerationOpExists}},
		// The agent never calls the API server: no token in its pod.
		AutomountServiceAccountToken: ptr.To(false),
		EnableServiceLinks:           ptr.To(false),
		Containers: []corev1.Container{{
			Name:            ContainerName,
			Image:           o.Image,
			ImagePullPolicy: corev1.PullIfNotPresent,
			Args:            agentArgs(o, false),
			Env:             nodeIPEnv(),
			Ports:           []corev1.ContainerPort{{Name: "grpc", ContainerPort: int32(o.Port), Protocol: corev1.ProtocolTCP}},
			// The kubelet's gRPC probe asks the agent's health service: Ready means serving.
			ReadinessProbe: &corev1.Probe{
				ProbeHandler:     corev1.ProbeHandler{GRPC: &corev1.GRPCAction{Port: int32(o.Port)}},
				PeriodSeconds:    1,
				FailureThreshold: 3,
				TimeoutSeconds:   1,
			},
			SecurityContext: securityContext(o),
			// Requests only: a namespace's LimitRange fills in limits if it wants them, and a
			// memory limit would kill an agent reassembling a burst of mirrored traffic.
			Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
				corev1.ResourceCPU:    resource.MustParse("10m"),
				corev1.ResourceMemory: resource.MustParse("32Mi"),
			}},
			TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
		}},
	}
	if t := o.Target; t != nil {
		spec.NodeName = t.Node
		spec.HostPID = true
	}
	return &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: o.Namespace, Labels: lbl, Annotations: annotations},
		Spec: batchv1.JobSpec{
			TTLSecondsAfterFinished: ptr.To(int32(ttlAfterFinished)),
			BackoffLimit:            ptr.To(int32(0)),
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: podLabels, Annotations: podAnnotations},
				Spec:       spec,
			},
		},
	}
}

// nodeIPEnv gives the agent its node's address: connections from it (the kubelet's probes)
// stay with the app under a whole-port steal, whatever address the CNI gives the node on the
// pod side.
func nodeIPEnv() []corev1.EnvVar {
	return []corev1.EnvVar{{Name: agentv1.NodeIPEnv, ValueFrom: &corev1.EnvVarSource{
		FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.hostIP"}}}}
}

// buildEphemeral is the agent as an ephemeral container of the target pod. targetContainerName
// puts it in the target container's PID namespace (where the runtime supports it), so the
// agent finds the process without hostPID. Ephemeral containers may not declare ports or
// probes; the port is in the args.
func buildEphemeral(o Options, name string) corev1.EphemeralContainer {
	return corev1.EphemeralContainer{
		EphemeralContainerCommon: corev1.EphemeralContainerCommon{
			Name:                     name,
			Image:                    o.Image,
			ImagePullPolicy:          corev1.PullIfNotPresent,
			Args:                     agentArgs(o, true),
			Env:                      nodeIPEnv(),
			SecurityContext:          securityContext(o),
			TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
		},
		TargetContainerName: o.Target.Container,
	}
}

// ephemeralName is a fresh name for an ephemeral agent: the pod keeps every ephemeral
// container it ever had, so names are never reused.
func ephemeralName() string { return ContainerName + "-" + randomString(5) }

// pickPort chooses an ephemeral agent's port: random in [ephemeralPortMin, ephemeralPortMax),
// avoiding the ports the pod's containers declare.
func pickPort(pod *corev1.Pod) int {
	used := map[int]bool{}
	for _, c := range pod.Spec.Containers {
		for _, p := range c.Ports {
			used[int(p.ContainerPort)] = true
		}
	}
	for _, ec := range pod.Spec.EphemeralContainers {
		used[portFromArgs(ec.Args)] = true
	}
	for {
		n, _ := rand.Int(rand.Reader, big.NewInt(ephemeralPortMax-ephemeralPortMin))
		p := ephemeralPortMin + int(n.Int64())
		if !used[p] {
			return p
		}
	}
}

// randomString is n characters of [a-z0-9], valid in any Kubernetes name.
func randomString(n int) string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, n)
	for i := range b {
		k, _ := rand.Int(rand.Reader, big.NewInt(int64(len(alphabet))))
		b[i] = alphabet[k.Int64()]
	}
	return string(b)
}

// durationOr returns d, or def when d is zero.
func durationOr(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}
