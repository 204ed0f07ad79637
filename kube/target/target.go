// Package target turns what a developer types after --target ("deploy/checkout") into the one
// container kwarp works on: a running pod of the workload, the container in it that is the
// application (not the mesh sidecar), and what the agent needs to find it on its node
// (container ID, node, pod UID and IP).
//
// Everything kwarp can say without asking the cluster (Parse) fails with ErrInvalid, a usage
// error; everything the cluster says (the target does not exist, has no running pod, has no
// such container, RBAC, an unreachable API server) is a cluster error. The messages name what
// does exist, so the next command the developer types is the right one.
package target

import (
	"errors"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
)

// Kind is a target kind, in its canonical (long) form.
type Kind string

const (
	KindPod         Kind = "pod"
	KindDeployment  Kind = "deployment"
	KindStatefulSet Kind = "statefulset"
	KindJob         Kind = "job"
	KindCronJob     Kind = "cronjob"
	KindRollout     Kind = "rollout" // Argo Rollouts (argoproj.io), when its CRD is installed
)

// kindNames are the spellings DESIGN.md's contract accepts, exactly: no plurals, no "po",
// so that a policy file reads the same everywhere.
var kindNames = map[string]Kind{
	"pod":         KindPod,
	"deploy":      KindDeployment,
	"deployment":  KindDeployment,
	"sts":         KindStatefulSet,
	"statefulset": KindStatefulSet,
	"job":         KindJob,
	"cronjob":     KindCronJob,
	"rollout":     KindRollout,
}

// AcceptedKinds is the list error messages show.
const AcceptedKinds = "pod, deploy (deployment), sts (statefulset), job, cronjob, rollout"

// Plural is the resource name as RBAC and kubectl name it, for messages.
func (k Kind) Plural() string {
	switch k {
	case KindDeployment:
		return "deployments"
	case KindStatefulSet:
		return "statefulsets"
	case KindJob:
		return "jobs"
	case KindCronJob:
		return "cronjobs"
	case KindRollout:
		return "rollouts"
	default:
		return "pods"
	}
}

// Resource is the RBAC resource ("deployments.apps") the kind's get and list go to.
func (k Kind) Resource() string {
	switch k {
	case KindDeployment, KindStatefulSet:
		return k.Plural() + ".apps"
	case KindJob, KindCronJob:
		return k.Plural() + ".batch"
	case KindRollout:
		return "rollouts.argoproj.io"
	default:
		return "pods"
	}
}

// ErrInvalid marks a target kwarp cannot parse: the user's mistake, exit 2.
var ErrInvalid = errors.New("invalid target")

// ParseError says why a --target value is not KIND/NAME.
type ParseError struct {
	Input string
	Why   string
}

func (e *ParseError) Error() string {
	return fmt.Sprintf("invalid target %q: %s; use KIND/NAME with KIND one of %s", e.Input, e.Why, AcceptedKinds)
}

func (e *ParseError) Is(target error) bool { return target == ErrInvalid }

// Parse splits "deploy/sample" into its kind and name. Kinds compare case-insensitively (as
// kubectl's do); names must be valid Kubernetes object names.
func Parse(s string) (Kind, string, error) {
	in := strings.TrimSpace(s)
	if in == "" {
		return "", "", &ParseError{Input: s, Why: "it is empty"}
	}
	kindPart, name, ok := strings.Cut(in, "/")
	if !ok {
		return "", "", &ParseError{Input: s, Why: fmt.Sprintf("it has no kind (did you mean pod/%s or deploy/%s?)", in, in)}
	}
	kind, known := kindNames[strings.ToLower(kindPart)]
	if !known {
		return "", "", &ParseError{Input: s, Why: fmt.Sprintf("unknown kind %q", kindPart)}
	}
	if name == "" {
		return "", "", &ParseError{Input: s, Why: "the name is missing"}
	}
	if strings.Contains(name, "/") {
		return "", "", &ParseError{Input: s, Why: "the name contains '/' (the namespace goes in -n, the container in -c)"}
	}
	if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
		return "", "", &ParseError{Input: s, Why: fmt.Sprintf("%q is not a valid object name: %s", name, errs[0])}
	}
	return kind, name, nil
}

// ParseKind accepts a kind alone ("deploy"), as the policy file's target block writes it.
func ParseKind(s string) (Kind, error) {
	kind, ok := kindNames[strings.ToLower(strings.TrimSpace(s))]
	if !ok {
		return "", &ParseError{Input: s, Why: fmt.Sprintf("unknown kind %q", s)}
	}
	return kind, nil
}

// Resolved is the container a session works on and what the agent needs to find it.
type Resolved struct {
	Kind      Kind   `json:"kind"` // as asked for
	Name      string `json:"name"` // as asked for
	Namespace string `json:"namespace"`

	Pod    string    `json:"pod"`
	PodUID types.UID `json:"podUID"`
	PodIP  string    `json:"podIP"`
	Node   string    `json:"node"`

	Container string `json:"container"`
	// ContainerID is the runtime's ID without its scheme ("containerd://"): what the agent
	// looks for in /proc/<pid>/cgroup on the node.
	ContainerID string                 `json:"containerID"`
	Runtime     string                 `json:"runtime"` // "containerd", "cri-o", "docker"
	Ports       []corev1.ContainerPort `json:"ports,omitempty"`

	// Note says which pod and container were chosen and why, for the progress line:
	// "deploy/sample → pod sample-6df6c-x7k2p, container app (skipped mesh sidecar istio-proxy)".
	Note string `json:"note"`
}

// Ref is KIND/NAME as the user would type it.
func (r *Resolved) Ref() string { return string(r.Kind) + "/" + r.Name }

// splitContainerID turns "containerd://abc…" into ("containerd", "abc…").
func splitContainerID(id string) (runtime, bare string) {
	if rt, rest, ok := strings.Cut(id, "://"); ok {
		return rt, rest
	}
	return "", id
}
