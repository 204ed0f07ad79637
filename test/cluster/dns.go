package cluster

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// deployDNS applies CoreDNS and waits until the Service IP answers a cluster name from the
// node, which proves kube-proxy's rules and the pod network too.
func (c Config) deployDNS(ctx context.Context, d *daemons, kc kubernetes.Interface) error {
	cmd := exec.CommandContext(ctx, c.Kubectl(), "--kubeconfig", c.AdminKubeconfig(), "apply", "-f", "-")
	cmd.Stdin = strings.NewReader(coreDNSManifest)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("apply CoreDNS: %w: %s", err, out)
	}
	deadline := time.Now().Add(120 * time.Second)
	var last error
	for time.Now().Before(deadline) {
		if last = dnsReady(ctx, kc); last == nil {
			if last = resolveVia(ctx, DNSServiceIP, "kubernetes.default.svc.cluster.local"); last == nil {
				return nil
			}
		}
		time.Sleep(500 * time.Millisecond)
	}
	return fmt.Errorf("cluster DNS (CoreDNS in kube-system) not answering after 120s: %w; see `kubectl -n kube-system describe pod -l k8s-app=kube-dns` and %s", last, c.LogPath("kubelet"))
}

func dnsReady(ctx context.Context, kc kubernetes.Interface) error {
	dep, err := kc.AppsV1().Deployments("kube-system").Get(ctx, "coredns", metav1.GetOptions{})
	if err != nil {
		return err
	}
	if dep.Status.ReadyReplicas < 1 {
		return fmt.Errorf("CoreDNS has %d ready replicas", dep.Status.ReadyReplicas)
	}
	return nil
}

// resolveVia looks name up with the DNS server at server:53 only.
func resolveVia(ctx context.Context, server, name string) error {
	r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, net.JoinHostPort(server, "53"))
	}}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	addrs, err := r.LookupHost(ctx, name)
	if err != nil {
		return err
	}
	if len(addrs) == 0 {
		return fmt.Errorf("%s: no addresses", name)
	}
	return nil
}
