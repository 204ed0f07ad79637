package kube

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

func TestDecodeManifest(t *testing.T) {
	manifest := `
# leading comment, then an explicit start
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: cfg
data:
  k: v
---
# a document of comments only
---

---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: other
spec:
  replicas: 2
--- # a separator may carry a comment
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Service
  metadata:
    name: svc-a
- apiVersion: v1
  kind: Service
  metadata:
    name: svc-b
---
`
	objs, err := decodeManifest([]byte(manifest))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, o := range objs {
		got = append(got, objectRef(o))
	}
	want := "configmap/cfg deployment.apps/web service/svc-a service/svc-b"
	if strings.Join(got, " ") != want {
		t.Fatalf("objects = %v, want %s", got, want)
	}
	// Integers stay int64, which unstructured's typed accessors require.
	replicas, found, err := unstructured.NestedInt64(objs[1].Object, "spec", "replicas")
	if err != nil || !found || replicas != 2 {
		t.Errorf("spec.replicas = %v, %v, %v; want 2", replicas, found, err)
	}
	if ns := objs[1].GetNamespace(); ns != "other" {
		t.Errorf("decoding must keep the manifest's namespace (Apply decides), got %q", ns)
	}
}

func TestDecodeManifestEmpty(t *testing.T) {
	for _, m := range []string{"", "\n", "---\n", "# nothing\n---\n# here\n"} {
		objs, err := decodeManifest([]byte(m))
		if err != nil || len(objs) != 0 {
			t.Errorf("decodeManifest(%q) = %d objects, %v; want none", m, len(objs), err)
		}
	}
}

func TestDecodeManifestErrors(t *testing.T) {
	good := "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ok\n"
	tests := []struct {
		name, manifest string
		want           []string // substrings of the error
	}{
		{"bad yaml", good + "---\n# comment\nkind: [unclosed\n", []string{`document 2 (starts at line 6: "kind: [unclosed")`, "invalid YAML", "line 2"}},
		{"bad indentation", good + "---\n" + good + "---\napiVersion: v1\n kind: x\n  y: z\n", []string{"document 3 (starts at line 11", "invalid YAML"}},
		{"no kind", good + "---\napiVersion: v1\nmetadata:\n  name: x\n", []string{"document 2", "apiVersion and kind are required"}},
		{"scalar", "just a string\n", []string{"document 1", "not a Kubernetes object"}},
		{"no name", "apiVersion: v1\nkind: ConfigMap\n", []string{"document 1", "ConfigMap without metadata.name"}},
		{"generateName", "apiVersion: v1\nkind: Pod\nmetadata:\n  generateName: p-\n", []string{"document 1", "generateName", "needs metadata.name"}},
		{"bad separator", good + "--- junk\n" + good, []string{"after document 1", "separator: junk"}},
		{"bad list item", "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Service\n  metadata:\n    name: a\n- apiVersion: v1\n  kind: Service\n", []string{"document 1", "item 2", "without metadata.name"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := decodeManifest([]byte(tt.manifest))
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestPlaceObject(t *testing.T) {
	obj := func(ns string) *unstructured.Unstructured {
		u := &unstructured.Unstructured{}
		u.SetAPIVersion("v1")
		u.SetKind("ConfigMap")
		u.SetName("c")
		u.SetNamespace(ns)
		return u
	}
	tests := []struct {
		name       string
		manifestNS string
		namespaced bool
		ns         string
		wantNS     string
		wantErr    string
	}{
		{"namespaced gets ns", "", true, "t1", "t1", ""},
		{"same ns kept", "t1", true, "t1", "t1", ""},
		{"other ns refused", "kube-system", true, "t1", "", `namespace "kube-system"`},
		{"no ns to put it in", "", true, "", "", "no namespace given"},
		{"cluster-scoped loses ns", "t1", false, "t1", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := obj(tt.manifestNS)
			err := placeObject(u, tt.namespaced, tt.ns)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if u.GetNamespace() != tt.wantNS {
				t.Errorf("namespace = %q, want %q", u.GetNamespace(), tt.wantNS)
			}
		})
	}
}
