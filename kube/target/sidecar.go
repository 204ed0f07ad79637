package target

import (
	"slices"

	corev1 "k8s.io/api/core/v1"
)

// MeshSidecars are the container names service meshes inject next to the application. A
// developer never means one of them when they say "deploy/checkout", so the default container
// skips them; `kwarp ls` marks them. Names, not images, are matched: meshes fix the names
// (their tooling finds the proxy by name too) while images move between registries.
//
//   - Istio: istio-proxy (sidecar), istio-init and istio-validation (init, CNI mode).
//   - Linkerd: linkerd-proxy, linkerd-init, linkerd-network-validator.
//   - Consul: consul-dataplane (1.14+), envoy-sidecar and consul-sidecar (older injectors),
//     consul-connect-envoy-sidecar, consul-connect-inject-init, consul-connect-lifecycle-sidecar.
//   - Kuma / Kong Mesh: kuma-sidecar, kuma-init.
//   - Open Service Mesh: envoy, osm-init. AWS App Mesh: envoy, proxyinit.
//   - Cilium's per-pod Envoy mode: cilium-envoy.
//
// Not listed, on purpose: daprd (Dapr's runtime is an API the application calls, not a
// transparent proxy, and Dapr appends it after the application's containers, so the
// first-container rule never picks it); log shippers and other helpers, which users name
// freely and which may well be what someone wants to target.
//
// A pod whose containers are all in the list (an Envoy edge proxy Deployment whose only
// container is "envoy") still resolves: the first container is the default then.
var MeshSidecars = []string{
	"istio-proxy", "istio-init", "istio-validation",
	"linkerd-proxy", "linkerd-init", "linkerd-network-validator",
	"consul-dataplane", "envoy-sidecar", "consul-sidecar", "consul-connect-envoy-sidecar",
	"consul-connect-inject-init", "consul-connect-lifecycle-sidecar",
	"kuma-sidecar", "kuma-init",
	"envoy", "osm-init", "proxyinit",
	"cilium-envoy",
}

// IsMeshSidecar reports whether a container of that name is a mesh's injected proxy.
func IsMeshSidecar(name string) bool { return slices.Contains(MeshSidecars, name) }

// DefaultContainerAnnotation is kubectl's way for a workload to name its main container
// (kubectl logs/exec honour it); kwarp honours it too, before the sidecar rule.
const DefaultContainerAnnotation = "kubectl.kubernetes.io/default-container"

// DefaultContainer picks the container a session targets when -c is not given: the one the
// pod's kubectl.kubernetes.io/default-container annotation names, else the first container
// that is not a mesh sidecar, else the first container. skipped lists the sidecars passed
// over, for the note that tells the user what happened.
func DefaultContainer(spec *corev1.PodSpec, annotations map[string]string) (name string, skipped []string) {
	if len(spec.Containers) == 0 {
		return "", nil
	}
	if want := annotations[DefaultContainerAnnotation]; want != "" {
		for _, c := range spec.Containers {
			if c.Name == want {
				return want, nil
			}
		}
	}
	for _, c := range spec.Containers {
		if !IsMeshSidecar(c.Name) {
			return c.Name, skipped
		}
		skipped = append(skipped, c.Name)
	}
	return spec.Containers[0].Name, nil
}
