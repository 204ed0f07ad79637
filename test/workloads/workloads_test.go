package workloads

import (
	"bufio"
	"bytes"
	"errors"
	"go/build"
	"io"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/kwarp-dev/kwarp/internal/imagepack"
)

type object struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name      string `json:"name"`
		Namespace string `json:"namespace"`
	} `json:"metadata"`
	raw []byte
}

// documents splits a manifest into its YAML documents and reads their identity.
func documents(t *testing.T, manifest []byte) []object {
	t.Helper()
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(manifest)))
	var objs []object
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return objs
		}
		if err != nil {
			t.Fatal(err)
		}
		if len(bytes.TrimSpace(doc)) == 0 {
			continue
		}
		var o object
		if err := yaml.Unmarshal(doc, &o); err != nil {
			t.Fatalf("document %d: %v", len(objs), err)
		}
		o.raw = doc
		objs = append(objs, o)
	}
}

// strict decodes into a typed API object and rejects unknown fields, so a misspelt field (which
// the API server would silently drop) fails here instead of in a cluster.
func strict[T any](t *testing.T, o object) *T {
	t.Helper()
	v := new(T)
	if err := yaml.UnmarshalStrict(o.raw, v); err != nil {
		t.Fatalf("%s %s: %v", o.Kind, o.Metadata.Name, err)
	}
	return v
}

func TestManifestKinds(t *testing.T) {
	tests := []struct {
		name string
		want []string // "Kind/name" in file order
	}{
		{"sample", []string{"ConfigMap/sample-config", "Deployment/sample", "Service/sample"}},
		{"echo", []string{"Deployment/echo", "Service/echo"}},
		{"client", []string{"Pod/client"}},
		{"redis", []string{"Deployment/redis", "Service/redis"}},
	}
	var names []string
	for _, tt := range tests {
		names = append(names, tt.name)
		t.Run(tt.name, func(t *testing.T) {
			for _, name := range []string{tt.name, tt.name + ".yaml"} {
				b, err := Manifest(name)
				if err != nil {
					t.Fatalf("Manifest(%q): %v", name, err)
				}
				var got []string
				for _, o := range documents(t, b) {
					got = append(got, o.Kind+"/"+o.Metadata.Name)
					if o.Metadata.Namespace != "" {
						t.Errorf("%s/%s has namespace %q; tests choose the namespace", o.Kind, o.Metadata.Name, o.Metadata.Namespace)
					}
					checkObject(t, o)
				}
				if !slices.Equal(got, tt.want) {
					t.Errorf("Manifest(%q) objects = %v, want %v", name, got, tt.want)
				}
			}
		})
	}
	slices.Sort(names)
	if got := ManifestNames(); !slices.Equal(got, names) {
		t.Errorf("ManifestNames() = %v, want %v (add a case here for every new manifest)", got, names)
	}
}

// checkObject applies the rules every manifest must follow.
func checkObject(t *testing.T, o object) {
	t.Helper()
	var spec *corev1.PodSpec
	switch o.Kind {
	case "Deployment":
		spec = &strict[appsv1.Deployment](t, o).Spec.Template.Spec
	case "Pod":
		spec = &strict[corev1.Pod](t, o).Spec
	case "Service":
		strict[corev1.Service](t, o)
	case "ConfigMap":
		strict[corev1.ConfigMap](t, o)
	default:
		t.Errorf("unexpected kind %s", o.Kind)
	}
	if spec == nil {
		return
	}
	if g := spec.TerminationGracePeriodSeconds; g == nil || *g != 1 {
		t.Errorf("%s %s: terminationGracePeriodSeconds must be 1 so test namespaces delete fast", o.Kind, o.Metadata.Name)
	}
	for _, c := range spec.Containers {
		if c.Image != Image || c.ImagePullPolicy != corev1.PullIfNotPresent {
			t.Errorf("%s: image %q pull %q, want %q IfNotPresent", c.Name, c.Image, c.ImagePullPolicy, Image)
		}
		packed := slices.ContainsFunc(DebianPrograms, func(f imagepack.File) bool { return len(c.Command) > 0 && f.Dst == c.Command[0] })
		if len(c.Command) == 0 || !packed && !slices.Contains(Binaries, strings.TrimPrefix(c.Command[0], "/")) {
			t.Errorf("%s: command %q does not run one of %v or %v", c.Name, c.Command, Binaries, DebianPrograms)
		}
	}
}

func TestSampleManifest(t *testing.T) {
	b, err := Manifest("sample")
	if err != nil {
		t.Fatal(err)
	}
	objs := documents(t, b)
	cm := strict[corev1.ConfigMap](t, objs[0])
	dep := strict[appsv1.Deployment](t, objs[1])
	svc := strict[corev1.Service](t, objs[2])

	if !strings.Contains(cm.Data["app.conf"], "\nmarker=kwarp-sample-config-7f3a\n") {
		t.Errorf("app.conf lacks the marker line: %q", cm.Data["app.conf"])
	}
	spec := dep.Spec.Template.Spec
	if dep.Spec.Replicas == nil || *dep.Spec.Replicas != 1 || dep.Spec.Template.Labels["app"] != "sample" {
		t.Errorf("replicas/labels wrong: %v %v", dep.Spec.Replicas, dep.Spec.Template.Labels)
	}
	var names []string
	for _, c := range spec.Containers {
		names = append(names, c.Name)
	}
	// The sidecar must come first: that is the case default-container selection has to handle.
	if !slices.Equal(names, []string{"istio-proxy", "app"}) {
		t.Fatalf("containers = %v", names)
	}
	if spec.Containers[0].Command[0] != "/meshproxy" || spec.Containers[1].Command[0] != "/httpecho" {
		t.Errorf("commands = %v, %v", spec.Containers[0].Command, spec.Containers[1].Command)
	}
	app := spec.Containers[1]
	env := map[string]corev1.EnvVar{}
	for _, e := range app.Env {
		env[e.Name] = e
	}
	for k, v := range map[string]string{"GREETING": "hello-from-the-pod", "DATABASE_URL": "postgres://db.sample.svc:5432/app"} {
		if env[k].Value != v {
			t.Errorf("env %s = %q, want %q", k, env[k].Value, v)
		}
	}
	for k, path := range map[string]string{"POD_NAME": "metadata.name", "POD_NAMESPACE": "metadata.namespace"} {
		if vf := env[k].ValueFrom; vf == nil || vf.FieldRef == nil || vf.FieldRef.FieldPath != path {
			t.Errorf("env %s is not from the downward API field %s", k, path)
		}
	}
	if len(app.VolumeMounts) != 1 || app.VolumeMounts[0].MountPath != "/etc/sample" {
		t.Errorf("volume mounts = %+v", app.VolumeMounts)
	} else {
		vol := app.VolumeMounts[0].Name
		i := slices.IndexFunc(spec.Volumes, func(v corev1.Volume) bool { return v.Name == vol })
		if i < 0 || spec.Volumes[i].ConfigMap == nil || spec.Volumes[i].ConfigMap.Name != cm.Name {
			t.Errorf("volume %q is not the ConfigMap %q", vol, cm.Name)
		}
	}
	rp := app.ReadinessProbe
	if rp == nil || rp.HTTPGet == nil || rp.HTTPGet.Path != "/healthz" || rp.HTTPGet.Port.IntValue() != 8080 || rp.PeriodSeconds != 1 {
		t.Errorf("readiness probe = %+v", rp)
	}
	if !slices.Equal(app.Args, []string{"-listen", ":8080"}) {
		t.Errorf("app args = %q", app.Args)
	}
	if svc.Spec.Selector["app"] != "sample" || len(svc.Spec.Ports) != 1 {
		t.Fatalf("service = %+v", svc.Spec)
	}
	if p := svc.Spec.Ports[0]; p.Name != "http" || p.Port != 80 || p.TargetPort.IntValue() != 8080 {
		t.Errorf("service port = %+v", p)
	}
}

func TestEchoManifest(t *testing.T) {
	b, err := Manifest("echo")
	if err != nil {
		t.Fatal(err)
	}
	objs := documents(t, b)
	dep := strict[appsv1.Deployment](t, objs[0])
	svc := strict[corev1.Service](t, objs[1])
	c := dep.Spec.Template.Spec.Containers[0]
	// $(POD_NAME) is expanded by the kubelet only if POD_NAME is defined in the container's env.
	if !slices.Equal(c.Args, []string{"-tcp", ":7000", "-udp", ":7001", "-banner", "$(POD_NAME)"}) {
		t.Errorf("args = %q", c.Args)
	}
	if len(c.Env) != 1 || c.Env[0].Name != "POD_NAME" || c.Env[0].ValueFrom == nil || c.Env[0].ValueFrom.FieldRef.FieldPath != "metadata.name" {
		t.Errorf("env = %+v", c.Env)
	}
	if rp := c.ReadinessProbe; rp == nil || rp.TCPSocket == nil || rp.TCPSocket.Port.IntValue() != 7000 {
		t.Errorf("readiness probe = %+v", rp)
	}
	want := map[string]corev1.Protocol{"tcp": corev1.ProtocolTCP, "udp": corev1.ProtocolUDP}
	wantPort := map[string]int32{"tcp": 7000, "udp": 7001}
	if len(svc.Spec.Ports) != 2 {
		t.Fatalf("service ports = %+v", svc.Spec.Ports)
	}
	for _, p := range svc.Spec.Ports {
		if p.Protocol != want[p.Name] || p.Port != wantPort[p.Name] || p.TargetPort.IntValue() != int(wantPort[p.Name]) {
			t.Errorf("service port %+v", p)
		}
	}
}

func TestClientManifest(t *testing.T) {
	b, err := Manifest("client")
	if err != nil {
		t.Fatal(err)
	}
	pod := strict[corev1.Pod](t, documents(t, b)[0])
	if got := pod.Spec.Containers[0].Command; !slices.Equal(got, []string{"/probe", "sleep"}) {
		t.Errorf("command = %q", got)
	}
}

func TestManifestErrors(t *testing.T) {
	tests := []struct{ name string }{{"missing"}, {"../workloads.go"}, {"manifests/sample"}, {""}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if b, err := Manifest(tt.name); err == nil {
				t.Errorf("Manifest(%q) = %d bytes, want error", tt.name, len(b))
			}
		})
	}
}

// TestBinariesArePackages keeps Binaries in step with the directories the image build compiles.
func TestBinariesArePackages(t *testing.T) {
	for _, name := range Binaries {
		t.Run(name, func(t *testing.T) {
			pkg, err := build.ImportDir(name, 0)
			if err != nil {
				t.Fatal(err)
			}
			if pkg.Name != "main" {
				t.Errorf("package %s is %q, not main", name, pkg.Name)
			}
			if got := PackagePath(name); got != "github.com/kwarp-dev/kwarp/test/workloads/"+name {
				t.Errorf("PackagePath = %q", got)
			}
		})
	}
}
