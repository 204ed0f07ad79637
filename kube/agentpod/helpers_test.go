package agentpod

import (
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/rest"
)

// fakeClient only satisfies Options' required fields; no test here calls through it.
func fakeClient() kubernetes.Interface { return fake.NewSimpleClientset() }

func restConfig() *rest.Config { return &rest.Config{Host: "https://10.0.0.1:6443"} }
