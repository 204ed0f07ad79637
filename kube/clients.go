package kube

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/rs/zerolog"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
)

// FirstContactTimeout bounds the dial to the API server and the first request kwarp makes.
// A developer whose VPN is down should hear so in seconds, not after client-go's default of
// 30s per attempt; a working API server answers /version in milliseconds.
const FirstContactTimeout = 5 * time.Second

// Clients are the API clients of one kubeconfig context, and the server they talk to (for
// messages such as "cannot reach https://…").
type Clients struct {
	Config  *rest.Config
	Kube    *Clientset
	Dynamic dynamic.Interface
	Server  string
}

// NewClients builds the clients for cfg. It makes no request. server names the API server
// in messages; empty means cfg.Host.
func NewClients(cfg *rest.Config, server string) (*Clients, error) {
	cfg = rest.CopyConfig(cfg)
	if server == "" {
		server = cfg.Host
	}
	// A dial that waits for an unreachable address (a dropped SYN) would otherwise hang for
	// the kernel's TCP timeout. This bounds every connection, the port-forward's included.
	if cfg.Dial == nil {
		cfg.Dial = (&net.Dialer{Timeout: FirstContactTimeout, KeepAlive: 30 * time.Second}).DialContext
	}
	// kwarp polls a few objects while an agent starts; client-go's default of 5 QPS would
	// throttle those polls against an API server that can take far more from one user.
	if cfg.QPS == 0 {
		cfg.QPS = 20
		cfg.Burst = 40
	}
	kc, err := NewClientset(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client for %s: %w", server, err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("dynamic client for %s: %w", server, err)
	}
	return &Clients{Config: cfg, Kube: kc, Dynamic: dyn, Server: server}, nil
}

// Connect loads the kubeconfig the flags name, builds the clients and checks that the API
// server answers, so that every command fails within seconds, naming the server, when it
// cannot be reached. log receives client-go's own log lines (see RouteKlog).
func (f Flags) Connect(ctx context.Context, log zerolog.Logger) (*Clients, error) {
	RouteKlog(log)
	cfg, err := f.RESTConfig()
	if err != nil {
		return nil, err
	}
	c, err := NewClients(cfg, f.Server())
	if err != nil {
		return nil, err
	}
	if err := c.Ping(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

// Ping asks the API server for /version within FirstContactTimeout. /version needs no
// permission (system:public-info-viewer), so a failure here is about reaching the server or
// about the credentials, never about RBAC.
func (c *Clients) Ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, FirstContactTimeout)
	defer cancel()
	_, err := c.Kube.RESTClient().Get().AbsPath("/version").DoRaw(ctx)
	if err != nil {
		return c.Explain(err, "get", "/version", "")
	}
	return nil
}

// Explain is the package's Explain for this server.
func (c *Clients) Explain(err error, verb, resource, ns string) error {
	return Explain(c.Server, verb, resource, ns, err)
}
