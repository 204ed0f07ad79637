package agentpod

import (
	"k8s.io/client-go/rest"

	"github.com/kwarp-dev/kwarp/kube"
)

// fakeClient only satisfies Options' required fields; no test here calls through it (its
// server does not exist).
func fakeClient() *kube.Clientset {
	c, err := kube.NewClientset(restConfig())
	if err != nil {
		panic(err)
	}
	return c
}

func restConfig() *rest.Config { return &rest.Config{Host: "https://10.0.0.1:6443"} }
