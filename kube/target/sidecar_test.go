package target

import (
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

func spec(names ...string) *corev1.PodSpec {
	s := &corev1.PodSpec{}
	for _, n := range names {
		s.Containers = append(s.Containers, corev1.Container{Name: n})
	}
	return s
}

func TestIsMeshSidecar(t *testing.T) {
	for _, n := range []string{"istio-proxy", "istio-init", "linkerd-proxy", "linkerd-init", "envoy", "envoy-sidecar",
		"consul-dataplane", "consul-connect-envoy-sidecar", "kuma-sidecar", "cilium-envoy"} {
		if !IsMeshSidecar(n) {
			t.Errorf("IsMeshSidecar(%q) = false", n)
		}
	}
	for _, n := range []string{"app", "daprd", "istio", "proxy", "envoy-app", "fluent-bit", ""} {
		if IsMeshSidecar(n) {
			t.Errorf("IsMeshSidecar(%q) = true", n)
		}
	}
}

func TestDefaultContainer(t *testing.T) {
	tests := []struct {
		name        string
		spec        *corev1.PodSpec
		annotations map[string]string
		want        string
		wantSkipped []string
	}{
		{"single", spec("app"), nil, "app", nil},
		{"sidecar first (the sample workload)", spec("istio-proxy", "app"), nil, "app", []string{"istio-proxy"}},
		{"two sidecars first", spec("linkerd-proxy", "envoy", "api", "worker"), nil, "api", []string{"linkerd-proxy", "envoy"}},
		{"sidecar last", spec("app", "istio-proxy"), nil, "app", nil},
		{"only sidecars: an Envoy edge proxy", spec("envoy"), nil, "envoy", nil},
		{"dapr is not skipped", spec("daprd", "app"), nil, "daprd", nil},
		{"kubectl's default-container annotation wins", spec("istio-proxy", "app", "worker"),
			map[string]string{DefaultContainerAnnotation: "worker"}, "worker", nil},
		{"annotation naming a missing container is ignored", spec("istio-proxy", "app"),
			map[string]string{DefaultContainerAnnotation: "gone"}, "app", []string{"istio-proxy"}},
		{"no containers", spec(), nil, "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, skipped := DefaultContainer(tt.spec, tt.annotations)
			if got != tt.want || !reflect.DeepEqual(skipped, tt.wantSkipped) {
				t.Errorf("DefaultContainer = %q, skipped %v; want %q, skipped %v", got, skipped, tt.want, tt.wantSkipped)
			}
		})
	}
}

func TestChooseContainer(t *testing.T) {
	s := spec("istio-proxy", "app")
	s.InitContainers = []corev1.Container{{Name: "migrate"}}
	if got, _, err := chooseContainer("deploy/sample", s, nil, ""); err != nil || got != "app" {
		t.Errorf("default = %q, %v; want app", got, err)
	}
	if got, _, err := chooseContainer("deploy/sample", s, nil, "istio-proxy"); err != nil || got != "istio-proxy" {
		t.Errorf("-c istio-proxy = %q, %v; an explicit -c may name a sidecar", got, err)
	}
	_, _, err := chooseContainer("deploy/sample", s, nil, "nope")
	want := `deploy/sample has no container "nope"; its containers: istio-proxy (mesh sidecar), app`
	if err == nil || err.Error() != want {
		t.Errorf("-c nope: %v\nwant %s", err, want)
	}
	_, _, err = chooseContainer("deploy/sample", s, nil, "migrate")
	if err == nil || err.Error() != `"migrate" is an init container of deploy/sample; kwarp targets running containers; its containers: istio-proxy (mesh sidecar), app` {
		t.Errorf("-c migrate: %v", err)
	}
}
