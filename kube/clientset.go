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

// RESTClient is the core group's client, also for raw paths (AbsPath) and subresources such as
// portforward.
func (c *Clientset) RESTClient() rest.Interface { return c.core }

// PodClient is the pods of a namespace, with the subresources kwarp uses.
type PodClient struct {
	*gentype.ClientWithList[*corev1.Pod, *corev1.PodList]
}

// Pods of namespace ns.
func (c *Clientset) Pods(ns string) PodClient {
	return PodClient{gentype.NewClientWithList[*corev1.Pod, *corev1.PodList]("pods", c.core, parameterCodec, ns,
		func() *corev1.Pod { return &corev1.Pod{} }, func() *corev1.PodList { return &corev1.PodList{} })}
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
	return gentype.NewClientWithList[*corev1.Event, *corev1.EventList]("events", c.core, parameterCodec, ns,
		func() *corev1.Event { return &corev1.Event{} }, func() *corev1.EventList { return &corev1.EventList{} })
}

// Namespaces of the cluster.
func (c *Clientset) Namespaces() *gentype.ClientWithList[*corev1.Namespace, *corev1.NamespaceList] {
	return gentype.NewClientWithList[*corev1.Namespace, *corev1.NamespaceList]("namespaces", c.core, parameterCodec, "",
		func() *corev1.Namespace { return &corev1.Namespace{} }, func() *corev1.NamespaceList { return &corev1.NamespaceList{} })
}

// Deployments of namespace ns.
func (c *Clientset) Deployments(ns string) *gentype.ClientWithList[*appsv1.Deployment, *appsv1.DeploymentList] {
	return gentype.NewClientWithList[*appsv1.Deployment, *appsv1.DeploymentList]("deployments", c.apps, parameterCodec, ns,
		func() *appsv1.Deployment { return &appsv1.Deployment{} }, func() *appsv1.DeploymentList { return &appsv1.DeploymentList{} })
}

// StatefulSets of namespace ns.
func (c *Clientset) StatefulSets(ns string) *gentype.ClientWithList[*appsv1.StatefulSet, *appsv1.StatefulSetList] {
	return gentype.NewClientWithList[*appsv1.StatefulSet, *appsv1.StatefulSetList]("statefulsets", c.apps, parameterCodec, ns,
		func() *appsv1.StatefulSet { return &appsv1.StatefulSet{} }, func() *appsv1.StatefulSetList { return &appsv1.StatefulSetList{} })
}

// Jobs of namespace ns.
func (c *Clientset) Jobs(ns string) *gentype.ClientWithList[*batchv1.Job, *batchv1.JobList] {
	return gentype.NewClientWithList[*batchv1.Job, *batchv1.JobList]("jobs", c.batch, parameterCodec, ns,
		func() *batchv1.Job { return &batchv1.Job{} }, func() *batchv1.JobList { return &batchv1.JobList{} })
}

// CronJobs of namespace ns.
func (c *Clientset) CronJobs(ns string) *gentype.ClientWithList[*batchv1.CronJob, *batchv1.CronJobList] {
	return gentype.NewClientWithList[*batchv1.CronJob, *batchv1.CronJobList]("cronjobs", c.batch, parameterCodec, ns,
		func() *batchv1.CronJob { return &batchv1.CronJob{} }, func() *batchv1.CronJobList { return &batchv1.CronJobList{} })
}

// SelfSubjectReviews asks who the credentials are.
func (c *Clientset) SelfSubjectReviews() *gentype.Client[*authenticationv1.SelfSubjectReview] {
	return gentype.NewClient[*authenticationv1.SelfSubjectReview]("selfsubjectreviews", c.authn, parameterCodec, "",
		func() *authenticationv1.SelfSubjectReview { return &authenticationv1.SelfSubjectReview{} })
}

// SelfSubjectAccessReviews asks whether the credentials may do something.
func (c *Clientset) SelfSubjectAccessReviews() *gentype.Client[*authorizationv1.SelfSubjectAccessReview] {
	return gentype.NewClient[*authorizationv1.SelfSubjectAccessReview]("selfsubjectaccessreviews", c.authz, parameterCodec, "",
		func() *authorizationv1.SelfSubjectAccessReview { return &authorizationv1.SelfSubjectAccessReview{} })
}
