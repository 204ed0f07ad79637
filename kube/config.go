// Package kube turns the kubectl-style flags (--kubeconfig, --context, -n) into a client
// configuration, resolved the way kubectl resolves them, so a developer's existing kubeconfig
// works with kwarp unchanged. Connect builds the clients and fails within seconds, naming the
// server, when the API server cannot be reached; Explain turns any API failure into a message
// that says what to do (the verb and resource RBAC refused, the server that did not answer).
//
// Subpackages: target (what --target names, resolved to one container) and agentpod (the
// agent's Job or ephemeral container, and the port-forward to it).
package kube

import (
	"errors"
	"fmt"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// Flags are the connection flags every kwarp command shares, as kubectl names them.
type Flags struct {
	Kubeconfig string // --kubeconfig; else $KUBECONFIG; else ~/.kube/config
	Context    string // --context; else the kubeconfig's current-context
	Namespace  string // -n/--namespace; else the context's namespace; else "default"
}

// Loader builds the client-go loader for these flags.
func (f Flags) Loader() clientcmd.ClientConfig {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if f.Kubeconfig != "" {
		rules.ExplicitPath = f.Kubeconfig
	}
	overrides := &clientcmd.ConfigOverrides{CurrentContext: f.Context}
	if f.Namespace != "" {
		overrides.Context.Namespace = f.Namespace
	}
	return clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, overrides)
}

// RESTConfig returns the client configuration, or an error that says what to do.
func (f Flags) RESTConfig() (*rest.Config, error) {
	cfg, err := f.Loader().ClientConfig()
	if err != nil {
		if clientcmd.IsEmptyConfig(err) {
			return nil, errors.New("no kubeconfig found: pass --kubeconfig, set KUBECONFIG, or create ~/.kube/config")
		}
		return nil, fmt.Errorf("load kubeconfig: %w", err)
	}
	return cfg, nil
}

// ResolveNamespace is -n when given, else the context's namespace, else "default".
func (f Flags) ResolveNamespace() (string, error) {
	ns, _, err := f.Loader().Namespace()
	if err != nil {
		if clientcmd.IsEmptyConfig(err) && f.Namespace != "" {
			return f.Namespace, nil
		}
		return "", fmt.Errorf("namespace from kubeconfig: %w", err)
	}
	return ns, nil
}

// Server names the API server the flags point at, for messages such as "cannot reach …".
func (f Flags) Server() string {
	raw, err := f.Loader().RawConfig()
	if err != nil {
		return ""
	}
	name := f.Context
	if name == "" {
		name = raw.CurrentContext
	}
	ctx, ok := raw.Contexts[name]
	if !ok {
		return ""
	}
	if c, ok := raw.Clusters[ctx.Cluster]; ok {
		return c.Server
	}
	return ""
}
