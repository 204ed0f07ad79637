package cluster

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// Logf receives progress lines.
type Logf func(format string, args ...any)

// Up starts the cluster, or reuses the running one, and returns when the node is Ready, the
// cluster DNS answers and the laptop namespace exists. Every failure names the component and
// its log.
func Up(ctx context.Context, c Config, logf Logf) error {
	if logf == nil {
		logf = func(string, ...any) {}
	}
	if err := preflight(c); err != nil {
		return err
	}
	if c.HostIP == "" {
		ip, err := detectHostIP()
		if err != nil {
			return err
		}
		c.HostIP = ip.String()
	}
	for _, dir := range []string{c.Root, c.path("logs"), c.path("pids"), c.path("cni"), c.RunDir} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("create %s: %w", dir, err)
		}
	}
	if err := writePKI(c.path("pki"), net.ParseIP(c.HostIP)); err != nil {
		return fmt.Errorf("certificates: %w", err)
	}
	if err := c.writeKubeconfigs(); err != nil {
		return err
	}
	if err := c.writeConfigs(); err != nil {
		return err
	}
	if err := hostSettings(); err != nil {
		return err
	}

	d := newDaemons()
	P := c.pki
	comps := []component{
		{name: "etcd", ports: []int{2379, 2380}, args: []string{c.binary("etcd"),
			"--data-dir", c.path("etcd"), "--listen-client-urls", "http://127.0.0.1:2379",
			"--advertise-client-urls", "http://127.0.0.1:2379", "--listen-peer-urls", "http://127.0.0.1:2380",
			"--quota-backend-bytes", "2147483648"}},
		{name: "containerd", args: []string{"containerd", "--config", c.path("containerd.toml")}},
	}
	logf("starting etcd and containerd")
	for _, comp := range comps {
		if err := c.start(d, comp); err != nil {
			return err
		}
	}
	if err := c.waitFor(d, "etcd", 30*time.Second, func() error { return httpOK(ctx, "http://127.0.0.1:2379/health") }); err != nil {
		return err
	}
	if err := c.waitFor(d, "containerd", 30*time.Second, func() error {
		return exec.CommandContext(ctx, "ctr", "-a", c.ContainerdSocket(), "version").Run()
	}); err != nil {
		return err
	}

	logf("starting kube-apiserver")
	api := component{name: "kube-apiserver", ports: []int{APIPort}, args: []string{c.binary("kube-apiserver"),
		"--etcd-servers=http://127.0.0.1:2379", fmt.Sprintf("--secure-port=%d", APIPort),
		"--advertise-address=" + c.HostIP, "--tls-cert-file=" + P("apiserver.crt"), "--tls-private-key-file=" + P("apiserver.key"),
		"--client-ca-file=" + P("ca.crt"), "--service-account-issuer=https://kubernetes.default.svc",
		"--service-account-key-file=" + P("sa.pub"), "--service-account-signing-key-file=" + P("sa.key"),
		"--service-cluster-ip-range=" + ServiceCIDR, "--authorization-mode=Node,RBAC", "--allow-privileged=true",
		"--kubelet-client-certificate=" + P("apiserver-kubelet-client.crt"), "--kubelet-client-key=" + P("apiserver-kubelet-client.key"),
		"--kubelet-certificate-authority=" + P("ca.crt"),
		// the node name does not resolve on this machine; the kubelet is reached by address
		"--kubelet-preferred-address-types=InternalIP,Hostname",
		"--profiling=false"}}
	if err := c.start(d, api); err != nil {
		return err
	}
	kc, err := c.client()
	if err != nil {
		return err
	}
	if err := c.waitFor(d, "kube-apiserver", 90*time.Second, func() error {
		_, err := kc.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		return err
	}); err != nil {
		return err
	}

	logf("starting controller-manager, scheduler and kubelet")
	if err := c.ensureImages(ctx); err != nil {
		return err
	}
	cm := c.path("controller-manager.kubeconfig")
	sk := c.path("scheduler.kubeconfig")
	for _, comp := range []component{
		{name: "kube-controller-manager", ports: []int{10257}, args: []string{c.binary("kube-controller-manager"),
			"--kubeconfig=" + cm, "--authentication-kubeconfig=" + cm, "--authorization-kubeconfig=" + cm,
			"--service-account-private-key-file=" + P("sa.key"), "--root-ca-file=" + P("ca.crt"),
			"--use-service-account-credentials=true", "--cluster-signing-cert-file=" + P("ca.crt"),
			"--cluster-signing-key-file=" + P("ca.key"), "--leader-elect=false", "--bind-address=127.0.0.1"}},
		{name: "kube-scheduler", ports: []int{10259}, args: []string{c.binary("kube-scheduler"),
			"--kubeconfig=" + sk, "--authentication-kubeconfig=" + sk, "--authorization-kubeconfig=" + sk,
			"--leader-elect=false", "--bind-address=127.0.0.1"}},
		{name: "kubelet", ports: []int{10250, 10248}, args: []string{c.binary("kubelet"),
			"--config=" + c.path("kubelet.yaml"), "--kubeconfig=" + c.path("kubelet.kubeconfig"),
			"--hostname-override=" + NodeName, "--node-ip=" + c.HostIP, "--root-dir=" + c.path("kubelet")}},
	} {
		if err := c.start(d, comp); err != nil {
			return err
		}
	}
	if err := c.waitFor(d, "kube-controller-manager", 60*time.Second, func() error { return httpOK(ctx, "https://127.0.0.1:10257/healthz") }); err != nil {
		return err
	}
	if err := c.waitFor(d, "kube-scheduler", 60*time.Second, func() error { return httpOK(ctx, "https://127.0.0.1:10259/healthz") }); err != nil {
		return err
	}
	if err := c.waitFor(d, "kubelet", 120*time.Second, func() error { return nodeReady(ctx, kc) }); err != nil {
		return err
	}
	if err := c.waitFor(d, "kube-controller-manager", 60*time.Second, func() error {
		_, err := kc.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{})
		return err
	}); err != nil {
		return err
	}

	logf("starting kube-proxy")
	if err := c.start(d, component{name: "kube-proxy", ports: []int{10256, 10249}, args: []string{c.binary("kube-proxy"),
		"--kubeconfig=" + c.path("kube-proxy.kubeconfig"), "--cluster-cidr=" + ClusterCIDR,
		"--hostname-override=" + NodeName, "--proxy-mode=iptables",
		"--healthz-bind-address=127.0.0.1:10256", "--metrics-bind-address=127.0.0.1:10249"}}); err != nil {
		return err
	}
	if err := c.waitFor(d, "kube-proxy", 60*time.Second, func() error { return httpOK(ctx, "http://127.0.0.1:10256/healthz") }); err != nil {
		return err
	}

	logf("deploying CoreDNS")
	if err := c.deployDNS(ctx, d, kc); err != nil {
		return err
	}
	if err := c.ensureLaptop(ctx); err != nil {
		return fmt.Errorf("laptop network namespace: %w", err)
	}
	logf("ready: export KUBECONFIG=%s (laptop side: %s)", c.AdminKubeconfig(), c.LaptopKubeconfig())
	return nil
}

func (c Config) writeConfigs() error {
	for _, f := range []struct {
		path string
		tmpl func(Config) ([]byte, error)
	}{
		{c.path("containerd.toml"), func(c Config) ([]byte, error) { return render(containerdTmpl, c) }},
		{c.path("kubelet.yaml"), func(c Config) ([]byte, error) { return render(kubeletTmpl, c) }},
		{c.path("cni", "10-"+CNINetwork+".conflist"), func(c Config) ([]byte, error) { return render(cniTmpl, c) }},
	} {
		b, err := f.tmpl(c)
		if err != nil {
			return fmt.Errorf("render %s: %w", f.path, err)
		}
		if err := os.WriteFile(f.path, b, 0o644); err != nil {
			return fmt.Errorf("write %s: %w", f.path, err)
		}
	}
	return nil
}

// client is a clientset with the admin kubeconfig.
func (c Config) client() (*kubernetes.Clientset, error) {
	rc, err := clientcmd.BuildConfigFromFlags("", c.AdminKubeconfig())
	if err != nil {
		return nil, fmt.Errorf("admin kubeconfig: %w", err)
	}
	rc.Timeout = 10 * time.Second
	return kubernetes.NewForConfig(rc)
}

var insecureHTTP = &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{
	// the components' own health ports serve self-signed certificates
	TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // health probe of a local daemon
}}

func httpOK(ctx context.Context, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := insecureHTTP.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s: %s", url, resp.Status, strings.TrimSpace(string(body)))
	}
	return nil
}

func nodeReady(ctx context.Context, kc kubernetes.Interface) error {
	n, err := kc.CoreV1().Nodes().Get(ctx, NodeName, metav1.GetOptions{})
	if err != nil {
		return err
	}
	for _, cond := range n.Status.Conditions {
		if cond.Type == corev1.NodeReady {
			if cond.Status == corev1.ConditionTrue {
				return nil
			}
			return fmt.Errorf("node %s not Ready: %s", NodeName, cond.Message)
		}
	}
	return fmt.Errorf("node %s has no Ready condition yet", NodeName)
}

// detectHostIP is the source address of the default route: pods reach the API server there.
func detectHostIP() (net.IP, error) {
	// the address the kernel would use toward the default gateway (a lookup; nothing is sent)
	if out, err := exec.Command("ip", "-4", "-o", "route", "show", "default").Output(); err == nil {
		if gw := fieldAfter(string(out), "via"); gw != "" {
			if out, err := exec.Command("ip", "-4", "-o", "route", "get", gw).Output(); err == nil {
				if ip := net.ParseIP(fieldAfter(string(out), "src")); ip != nil {
					return ip, nil
				}
			}
		}
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, fmt.Errorf("find the node address: %w", err)
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && n.IP.IsGlobalUnicast() && !n.IP.IsLinkLocalUnicast() {
			return n.IP, nil
		}
	}
	return nil, errors.New("find the node address: no IPv4 address outside loopback; pods need one to reach the API server")
}

// fieldAfter returns the word after key in `ip route` output ("via 192.0.2.1", "src …").
func fieldAfter(out, key string) string {
	f := strings.Fields(out)
	for i := 0; i+1 < len(f); i++ {
		if f[i] == key {
			return f[i+1]
		}
	}
	return ""
}
