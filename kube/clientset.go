package kube

import (
	"context"
	"fmt"
	"net/http"

	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/client-go/gentype"
	"k8s.io/client-go/rest"
)

// Clientset holds typed clients for the few API groups kwarp uses (core, apps, batch,
// authentication, authorization), built on client-go's gentype. client-go's full clientset
// links every API group of Kubernetes and registers each in its scheme at start-up: that cost
// every kwarp process (the session, its plugin process, the launcher) about 11 MiB of resident
// memory and part of its start, for types kwarp never touches.
type Clientset struct {
	core, apps, batch, authn, authz rest.Interface
}

var (
	scheme         = runtime.NewScheme()
	codecs         = serializer.NewCodecFactory(scheme)
	parameterCodec = runtime.NewParameterCodec(scheme)
)

func init() {
	for _, add := range []func(*runtime.Scheme) error{corev1.AddToScheme, appsv1.AddToScheme, batchv1.AddToScheme,
		authenticationv1.AddToScheme, authorizationv1.AddToScheme} {
		if err := add(scheme); err != nil {
			panic(fmt.Sprintf("kube: register API types: %v", err)) // static data: a bug, not input
		}
	}
	metav1.AddToGroupVersion(scheme, schema.GroupVersion{Version: "v1"})
}

// NewClientset builds the clients for cfg; they share one HTTP client (one connection pool).
func NewClientset(cfg *rest.Config) (*Clientset, error) {
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return nil, err
	}
	var c Clientset
	for _, g := range []struct {
		gv  schema.GroupVersion
		out *rest.Interface
	}{
		{corev1.SchemeGroupVersion, &c.core},
		{appsv1.SchemeGroupVersion, &c.apps},
		{batchv1.SchemeGroupVersion, &c.batch},
		{authenticationv1.SchemeGroupVersion, &c.authn},
		{authorizationv1.SchemeGroupVersion, &c.authz},
	} {
		rc, err := restClient(cfg, hc, g.gv)
		if err != nil {
			return nil, fmt.Errorf("client for %s: %w", g.gv, err)
		}
		*g.out = rc
	}
	return &c, nil
}

func restClient(cfg *rest.Config, hc *http.Client, gv schema.GroupVersion) (*rest.RESTClient, error) {
	c := rest.CopyConfig(cfg)
	c.GroupVersion = &gv
	c.APIPath = "/apis"
	if gv.Group == "" {
		c.APIPath = "/api"
	}
	c.NegotiatedSerializer = codecs.WithoutConversion()
	if c.UserAgent == "" {
		c.UserAgent = rest.DefaultKubernetesUserAgent()
	}
	return rest.RESTClientForConfigAndClient(c, hc)
}

// object is an API type as gentype's clients hold it: a pointer.
type object[T any] interface {
	*T
	runtime.Object
	metav1.Object
}

// withList is gentype's client of resource (of type T, listed as L) in namespace ns, "" for a
// cluster-scoped one.
func withList[T, L any, PT object[T], PL interface {
	*L
	runtime.Object
}](c rest.Interface, resource, ns string) *gentype.ClientWithList[PT, PL] {
	return gentype.NewClientWithList[PT, PL](resource, c, parameterCodec, ns,
		func() PT { return new(T) }, func() PL { return new(L) })
}

// clusterClient is gentype's client of a cluster-scoped resource that is only created (a
// review).
func clusterClient[T any, PT object[T]](c rest.Interface, resource string) *gentype.Client[PT] {
	return gentype.NewClient[PT](resource, c, parameterCodec, "", func() PT { return new(T) })
}

// RESTClient is the core group's client, also for raw paths (AbsPath) and subresources such as
// portforward.
func (c *Clientset) RESTClient() rest.Interface { return c.core }

// PodClient is the pods of a namespace, with the subresources kwarp uses.
type PodClient struct {
	*gentype.ClientWithList[*corev1.Pod, *corev1.PodList]
}

// Pods of namespace ns.
func (c *Clientset) Pods(ns string) PodClient {
	return PodClient{withList[corev1.Pod, corev1.PodList](c.core, "pods", ns)}
}

// GetLogs is the request for a container's log.
func (p PodClient) GetLogs(name string, opts *corev1.PodLogOptions) *rest.Request {
	return p.GetClient().Get().Namespace(p.GetNamespace()).Resource("pods").Name(name).SubResource("log").
		VersionedParams(opts, parameterCodec)
}

// UpdateEphemeralContainers replaces the pod's ephemeral containers (the only way to add one).
func (p PodClient) UpdateEphemeralContainers(ctx context.Context, name string, pod *corev1.Pod, opts metav1.UpdateOptions) (*corev1.Pod, error) {
	out := &corev1.Pod{}
	err := p.GetClient().Put().Namespace(p.GetNamespace()).Resource("pods").Name(name).SubResource("ephemeralcontainers").
		VersionedParams(&opts, parameterCodec).Body(pod).Do(ctx).Into(out)
	return out, err
}

// Events of namespace ns.
func (c *Clientset) Events(ns string) *gentype.ClientWithList[*corev1.Event, *corev1.EventList] {
	return withList[corev1.Event, corev1.EventList](c.core, "events", ns)
}

// Namespaces of the cluster.
func (c *Clientset) Namespaces() *gentype.ClientWithList[*corev1.Namespace, *corev1.NamespaceList] {
	return withList[corev1.Namespace, corev1.NamespaceList](c.core, "namespaces", "")
}

// Deployments of namespace ns.
func (c *Clientset) Deployments(ns string) *gentype.ClientWithList[*appsv1.Deployment, *appsv1.DeploymentList] {
	return withList[appsv1.Deployment, appsv1.DeploymentList](c.apps, "deployments", ns)
}

// StatefulSets of namespace ns.
func (c *Clientset) StatefulSets(ns string) *gentype.ClientWithList[*appsv1.StatefulSet, *appsv1.StatefulSetList] {
	return withList[appsv1.StatefulSet, appsv1.StatefulSetList](c.apps, "statefulsets", ns)
}

// Jobs of namespace ns.
func (c *Clientset) Jobs(ns string) *gentype.ClientWithList[*batchv1.Job, *batchv1.JobList] {
	return withList[batchv1.Job, batchv1.JobList](c.batch, "jobs", ns)
}

// CronJobs of namespace ns.
func (c *Clientset) CronJobs(ns string) *gentype.ClientWithList[*batchv1.CronJob, *batchv1.CronJobList] {
	return withList[batchv1.CronJob, batchv1.CronJobList](c.batch, "cronjobs", ns)
}

// SelfSubjectReviews asks who the credentials are.
func (c *Clientset) SelfSubjectReviews() *gentype.Client[*authenticationv1.SelfSubjectReview] {
	return clusterClient[authenticationv1.SelfSubjectReview](c.authn, "selfsubjectreviews")
}

// SelfSubjectAccessReviews asks whether the credentials may do something.
func (c *Clientset) SelfSubjectAccessReviews() *gentype.Client[*authorizationv1.SelfSubjectAccessReview] {
	return clusterClient[authorizationv1.SelfSubjectAccessReview](c.authz, "selfsubjectaccessreviews")
}
