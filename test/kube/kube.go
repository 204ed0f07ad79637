// Package kube is what every end-to-end test package shares to use the real test cluster: a
// connection (Connect), a namespace per test that explains itself and goes away (NewNamespace),
// manifests applied the way kubectl would (Apply), waits that say why they failed (WaitReady and
// friends), and exec and logs through the API server (Exec, Logs).
//
// The package takes a kubeconfig path and does not know how the cluster is started, so that it
// stays usable against any cluster; the e2e packages wire it to test/cluster. The decisions worth
// testing without a cluster (names, manifest decoding, readiness, the failure dump) are pure
// functions next to the client calls and are unit tested; the client calls themselves are only
// exercised against the real cluster, because a fake clientset would agree with whatever we
// assumed.
package kube

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/tools/clientcmd"
)

// FieldManager is the server-side apply field manager of everything the tests apply, so that a
// test re-applying a changed manifest takes over its own fields and nobody else's.
const FieldManager = "kwarp-e2e"

// TestLabel marks every namespace NewNamespace creates, so that namespaces leaked by a killed
// test run can be found and removed with one label selector.
const TestLabel = "kwarp.dev/test"

// Env is a connection to one cluster. Its fields are exported so that a test can do what the
// helpers do not cover with the same clients.
type Env struct {
	Config     *rest.Config
	Client     kubernetes.Interface
	Dynamic    dynamic.Interface
	Mapper     meta.RESTMapper
	Kubeconfig string
}

// Connect builds the clients for the cluster that kubeconfig (a file path) points at.
func Connect(kubeconfig string) (*Env, error) {
	// An empty path would make client-go fall back to in-cluster config or ~/.kube/config, and an
	// e2e test must never create and delete namespaces in whatever cluster that happens to be.
	if kubeconfig == "" {
		return nil, errors.New("kube: connect: empty kubeconfig path")
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("kube: connect: load kubeconfig %s: %w", kubeconfig, err)
	}
	// The waits poll several objects at a time; client-go's default of 5 QPS would make them
	// throttle themselves and log about it, against a local API server that has no other users.
	cfg.QPS = 50
	cfg.Burst = 100
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("kube: connect: clientset for %s: %w", cfg.Host, err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("kube: connect: dynamic client for %s: %w", cfg.Host, err)
	}
	// Discovery is deferred and cached so that Connect does not need the API server to answer
	// yet, and a CRD applied by a test can be found after a Reset (see Apply).
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(client.Discovery()))
	return &Env{Config: cfg, Client: client, Dynamic: dyn, Mapper: mapper, Kubeconfig: kubeconfig}, nil
}

// Context returns a context that ends after d, or earlier if the test would otherwise hit its
// own deadline (go test -timeout) first, and that is cancelled when the test ends. Ending before
// the test deadline matters: the waits then fail with an explanation and the namespace cleanup
// still runs, instead of the test binary panicking with a goroutine dump.
func Context(t testing.TB, d time.Duration) context.Context {
	t.Helper()
	var testDeadline time.Time
	var hasDeadline bool
	// Only *testing.T has a deadline; benchmarks and fuzz targets run until they are done.
	if dl, ok := t.(interface{ Deadline() (time.Time, bool) }); ok {
		testDeadline, hasDeadline = dl.Deadline()
	}
	deadline := contextDeadline(time.Now(), d, testDeadline, hasDeadline)
	// t.Context is cancelled just before the cleanups run, which is the "cancelled at cleanup"
	// we want: nothing started under this context outlives the test.
	ctx, cancel := context.WithDeadline(t.Context(), deadline)
	t.Cleanup(cancel)
	return ctx
}

// contextDeadline is the earlier of now+d and the test deadline minus a margin. The margin is a
// tenth of the time left, between 5s and 30s: enough for DumpNamespace and the namespace
// deletion, without eating much of a short test's budget.
func contextDeadline(now time.Time, d time.Duration, testDeadline time.Time, hasDeadline bool) time.Time {
	deadline := now.Add(d)
	if !hasDeadline {
		return deadline
	}
	margin := min(max(testDeadline.Sub(now)/10, 5*time.Second), 30*time.Second)
	if limit := testDeadline.Add(-margin); limit.Before(deadline) {
		return limit
	}
	return deadline
}
