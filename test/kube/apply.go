package kube

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// Apply server-side applies every object of a multi-document YAML manifest, namespaced objects
// into ns, and returns them as the API server stored them. It stops at the first object that
// fails; the objects before it stay applied (the namespace cleanup removes them).
func (e *Env) Apply(ctx context.Context, ns string, manifest []byte) ([]*unstructured.Unstructured, error) {
	objs, err := decodeManifest(manifest)
	if err != nil {
		return nil, fmt.Errorf("kube: apply: %w", err)
	}
	out := make([]*unstructured.Unstructured, 0, len(objs))
	for _, obj := range objs {
		applied, err := e.applyOne(ctx, ns, obj)
		if err != nil {
			return out, fmt.Errorf("kube: apply %s: %w", objectRef(obj), err)
		}
		out = append(out, applied)
	}
	return out, nil
}

func (e *Env) applyOne(ctx context.Context, ns string, obj *unstructured.Unstructured) (*unstructured.Unstructured, error) {
	gvk := obj.GroupVersionKind()
	mapping, err := e.Mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if meta.IsNoMatchError(err) {
		// The cached discovery predates a CRD applied since (possibly earlier in this manifest);
		// forget it and ask once more.
		if r, ok := e.Mapper.(interface{ Reset() }); ok {
			r.Reset()
			mapping, err = e.Mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("map %s to a resource: %w", gvk, err)
	}
	namespaced := mapping.Scope.Name() == meta.RESTScopeNameNamespace
	if err := placeObject(obj, namespaced, ns); err != nil {
		return nil, err
	}
	// Server-side apply with force is kubectl apply --server-side --force-conflicts: the test's
	// manifest is the truth, even for fields another manager (a controller, an earlier
	// client-side apply) set.
	opts := metav1.ApplyOptions{FieldManager: FieldManager, Force: true}
	if namespaced {
		return e.Dynamic.Resource(mapping.Resource).Namespace(obj.GetNamespace()).Apply(ctx, obj.GetName(), obj, opts)
	}
	return e.Dynamic.Resource(mapping.Resource).Apply(ctx, obj.GetName(), obj, opts)
}

// placeObject puts obj in namespace ns if its kind is namespaced. A manifest that names another
// namespace is refused rather than followed: the object would escape the test's namespace and
// its cleanup.
func placeObject(obj *unstructured.Unstructured, namespaced bool, ns string) error {
	if !namespaced {
		obj.SetNamespace("")
		return nil
	}
	if ns == "" {
		return errors.New("namespaced object but no namespace given")
	}
	if cur := obj.GetNamespace(); cur != "" && cur != ns {
		return fmt.Errorf("manifest puts it in namespace %q, not the test namespace %q", cur, ns)
	}
	obj.SetNamespace(ns)
	return nil
}

// objectRef names an object the way kubectl does in its output: "deployment.apps/web".
func objectRef(obj *unstructured.Unstructured) string {
	gvk := obj.GroupVersionKind()
	kind := strings.ToLower(gvk.Kind)
	if gvk.Group != "" {
		kind += "." + gvk.Group
	}
	return kind + "/" + obj.GetName()
}

// decodeManifest splits a multi-document YAML manifest into objects. Documents that are empty or
// hold only comments are skipped; a kind: List is expanded into its items. Errors give the
// document's index (1-based, counting the documents the YAML reader returns, which skips
// documents with nothing at all between two "---"), the line it starts at and its first line.
func decodeManifest(manifest []byte) ([]*unstructured.Unstructured, error) {
	reader := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(manifest)))
	var out []*unstructured.Unstructured
	searchFrom := 0 // where the next document can start in manifest, to find its line number
	for index := 1; ; index++ {
		doc, err := reader.Read()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			// The reader's only error is a malformed "---" line, found while reading the
			// document it ends.
			return nil, fmt.Errorf("manifest: after document %d: %w", index, err)
		}
		// The reader returns each document's lines unchanged, so it is found verbatim.
		line := 0
		if at := bytes.Index(manifest[searchFrom:], doc); at >= 0 {
			line = 1 + bytes.Count(manifest[:searchFrom+at], []byte("\n"))
			searchFrom += at + len(doc)
		}
		objs, err := decodeDocument(doc)
		if err != nil {
			return nil, fmt.Errorf("manifest document %d (%s): %w", index, describeDocument(doc, line), err)
		}
		out = append(out, objs...)
	}
}

func decodeDocument(doc []byte) ([]*unstructured.Unstructured, error) {
	js, err := yaml.YAMLToJSON(doc)
	if err != nil {
		return nil, fmt.Errorf("invalid YAML: %w", err)
	}
	js = bytes.TrimSpace(js)
	if len(js) == 0 || bytes.Equal(js, []byte("null")) {
		return nil, nil // empty or comments only
	}
	// Checked on a plain map first, because Unstructured's own errors quote the whole object.
	var head struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
	}
	if err := json.Unmarshal(js, &head); err != nil {
		return nil, fmt.Errorf("not a Kubernetes object: %w", err)
	}
	if head.APIVersion == "" || head.Kind == "" {
		return nil, errors.New("not a Kubernetes object: apiVersion and kind are required")
	}
	obj := &unstructured.Unstructured{}
	// UnmarshalJSON (not encoding/json into a map) keeps integers int64, as the rest of
	// apimachinery expects.
	if err := obj.UnmarshalJSON(js); err != nil {
		return nil, fmt.Errorf("decode %s: %w", head.Kind, err)
	}
	if obj.IsList() {
		var items []*unstructured.Unstructured
		err := obj.EachListItem(func(o runtime.Object) error {
			u, ok := o.(*unstructured.Unstructured)
			if !ok {
				return fmt.Errorf("list item of type %T", o)
			}
			if err := checkObject(u); err != nil {
				return fmt.Errorf("item %d: %w", len(items)+1, err)
			}
			items = append(items, u)
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("%s: %w", head.Kind, err)
		}
		return items, nil
	}
	if err := checkObject(obj); err != nil {
		return nil, err
	}
	return []*unstructured.Unstructured{obj}, nil
}

// checkObject refuses what server-side apply cannot take, with a clearer message than the API
// server's.
func checkObject(u *unstructured.Unstructured) error {
	if u.GetKind() == "" || u.GetAPIVersion() == "" {
		return errors.New("apiVersion and kind are required")
	}
	if u.GetName() == "" {
		if u.GetGenerateName() != "" {
			return fmt.Errorf("%s with generateName %q: apply needs metadata.name", u.GetKind(), u.GetGenerateName())
		}
		return fmt.Errorf("%s without metadata.name", u.GetKind())
	}
	return nil
}

// describeDocument locates doc for a reader of the error: the manifest line it starts at (0 if
// unknown; YAML errors count lines from there) and its first line that is neither blank nor a
// comment, shortened.
func describeDocument(doc []byte, line int) string {
	first := "only comments"
	for _, l := range strings.Split(string(doc), "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		if len(l) > 60 {
			l = l[:60] + "..."
		}
		first = fmt.Sprintf("%q", l)
		break
	}
	if line == 0 {
		return first
	}
	return fmt.Sprintf("starts at line %d: %s", line, first)
}
