package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kwarp-dev/kwarp/test/cluster"
	"github.com/kwarp-dev/kwarp/test/kube"
	"github.com/kwarp-dev/kwarp/test/testenv"
	"github.com/kwarp-dev/kwarp/test/workloads"
	"github.com/kwarp-dev/kwarp/test/workloads/httpecho/server"
)

// deploy applies the named workload manifests into a fresh namespace and waits until they
// are Ready.
func deploy(t *testing.T, ctx context.Context, prefix string, manifests ...string) string {
	t.Helper()
	ns := testenv.Env.NewNamespace(t, prefix)
	for _, name := range manifests {
		m, err := workloads.Manifest(name)
		if err != nil {
			t.Fatal(err)
		}
		objs, err := testenv.Env.Apply(ctx, ns, m)
		if err != nil {
			t.Fatalf("apply %s: %v", name, err)
		}
		if err := testenv.Env.WaitReady(ctx, ns, objs...); err != nil {
			t.Fatalf("%s not ready: %v", name, err)
		}
	}
	return ns
}

// waitServiceNames waits until each Service of ns works from the node: the cluster DNS
// answers for its name and its ClusterIP accepts TCP on each of its TCP ports. A Deployment is
// Ready a moment before CoreDNS has its Service's record (a name asked in between falls
// through the search list to the machine's own resolver) and before kube-proxy has its rules
// (a connect in between is refused).
func waitServiceNames(t *testing.T, ctx context.Context, ns string, services ...string) {
	t.Helper()
	for _, name := range services {
		fqdn := name + "." + ns + ".svc.cluster.local"
		svc, err := testenv.Env.Client.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(30 * time.Second)
		for {
			ok, why := serviceAnswers(ctx, fqdn, svc)
			if ok {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("Service %s does not work from the node after 30s: %s", fqdn, why)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
}

func serviceAnswers(ctx context.Context, fqdn string, svc *corev1.Service) (bool, string) {
	out, err := probe(ctx, "node", "dns", "-timeout", "2s", "-server", cluster.DNSServiceIP+":53", fqdn)
	if err != nil || strings.TrimSpace(out) == "" {
		return false, fmt.Sprintf("DNS: %q %v", out, err)
	}
	for _, p := range svc.Spec.Ports {
		if p.Protocol != corev1.ProtocolTCP {
			continue
		}
		addr := net.JoinHostPort(svc.Spec.ClusterIP, strconv.Itoa(int(p.Port)))
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return false, fmt.Sprintf("connect %s: %v", addr, err)
		}
		c.Close()
	}
	return true, ""
}

// probe runs the probe tool on the node (where=="node") or in the laptop namespace.
func probe(ctx context.Context, where string, args ...string) (string, error) {
	var cmd *exec.Cmd
	if where == "laptop" {
		cmd = testenv.Laptop.Command(ctx, testenv.Tool("probe"), args...)
	} else {
		cmd = exec.CommandContext(ctx, testenv.Tool("probe"), args...)
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestLaptopReachesOnlyTheAPIServer proves the ground every later e2e test stands on: from the
// laptop namespace the API server answers while a Service IP, a pod IP, the cluster DNS and the
// kubelet do not; from the node, the same addresses answer.
func TestLaptopReachesOnlyTheAPIServer(t *testing.T) {
	ctx := kube.Context(t, 3*time.Minute)
	ns := deploy(t, ctx, "laptop", "sample")
	pod, err := testenv.Env.RunningPodOf(ctx, ns, "sample")
	if err != nil {
		t.Fatal(err)
	}
	svc, err := testenv.Env.Client.CoreV1().Services(ns).Get(ctx, "sample", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	svcURL := fmt.Sprintf("http://%s/", svc.Spec.ClusterIP)
	podURL := fmt.Sprintf("http://%s/", net.JoinHostPort(pod.Status.PodIP, "8080"))
	fqdn := fmt.Sprintf("sample.%s.svc.cluster.local", ns)
	dnsServer := net.JoinHostPort(cluster.DNSServiceIP, "53")
	kubelet := net.JoinHostPort(cluster.LaptopHostIP, "10250")

	t.Run("laptop reaches the API server", func(t *testing.T) {
		cmd := testenv.Laptop.Command(ctx, testenv.Cluster.Kubectl(), "get", "--raw", "/version")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("kubectl from the laptop: %v: %s", err, out)
		}
		var v struct{ GitVersion string }
		if err := json.Unmarshal(out, &v); err != nil || v.GitVersion != "v"+cluster.PinnedVersions().Kubernetes {
			t.Fatalf("/version from the laptop = %s (err %v), want gitVersion v%s", out, err, cluster.PinnedVersions().Kubernetes)
		}
	})

	unreachable := []struct {
		name string
		args []string
	}{
		{"Service IP", []string{"http", "-timeout", "2s", svcURL}},
		{"pod IP", []string{"http", "-timeout", "2s", podURL}},
		{"cluster DNS", []string{"dns", "-timeout", "2s", "-server", dnsServer, fqdn}},
		{"kubelet port on the node", []string{"tcp", "-timeout", "2s", kubelet, "hello"}},
	}
	for _, u := range unreachable {
		t.Run("laptop cannot reach "+u.name, func(t *testing.T) {
			if out, err := probe(ctx, "laptop", u.args...); err == nil {
				t.Fatalf("probe %v from the laptop succeeded: %s", u.args, out)
			}
		})
	}

	t.Run("Go code run in the laptop namespace", func(t *testing.T) {
		err := testenv.Laptop.Do(func() error {
			if c, err := net.DialTimeout("tcp", net.JoinHostPort(pod.Status.PodIP, "8080"), 2*time.Second); err == nil {
				c.Close()
				return fmt.Errorf("dial pod %s from the laptop succeeded", pod.Status.PodIP)
			}
			c, err := net.DialTimeout("tcp", net.JoinHostPort(cluster.LaptopHostIP, fmt.Sprint(cluster.APIPort)), 2*time.Second)
			if err != nil {
				return fmt.Errorf("dial the API server from the laptop: %w", err)
			}
			return c.Close()
		})
		if err != nil {
			t.Fatal(err)
		}
	})

	t.Run("node reaches all of them", func(t *testing.T) {
		for _, u := range []string{svcURL, podURL} {
			out, err := probe(ctx, "node", "http", "-timeout", "5s", u)
			if err != nil {
				t.Fatalf("probe http %s from the node: %v: %s", u, err, out)
			}
			var rec server.Record
			if err := json.Unmarshal([]byte(out), &rec); err != nil || rec.Pod != pod.Name {
				t.Fatalf("%s answered %q (err %v), want the pod %s", u, out, err, pod.Name)
			}
		}
		out, err := probe(ctx, "node", "dns", "-timeout", "5s", "-server", dnsServer, fqdn)
		if err != nil || strings.TrimSpace(out) != svc.Spec.ClusterIP {
			t.Fatalf("resolve %s from the node via %s: %q (err %v), want %s", fqdn, dnsServer, out, err, svc.Spec.ClusterIP)
		}
	})
}

// TestWorkloadFromLocalImage deploys the test workloads from the locally built image and
// checks them from inside the cluster: the sidecar-first pod is Ready, the Service answers
// from the pod, CoreDNS resolves the short name, TCP and UDP echo answer with the pod's name.
func TestWorkloadFromLocalImage(t *testing.T) {
	ctx := kube.Context(t, 3*time.Minute)
	ns := deploy(t, ctx, "workload", "sample", "echo", "client")
	sample, err := testenv.Env.RunningPodOf(ctx, ns, "sample")
	if err != nil {
		t.Fatal(err)
	}
	echo, err := testenv.Env.RunningPodOf(ctx, ns, "echo")
	if err != nil {
		t.Fatal(err)
	}
	svc, err := testenv.Env.Client.CoreV1().Services(ns).Get(ctx, "sample", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}

	t.Run("sidecar first, both containers from the local image", func(t *testing.T) {
		var names []string
		for _, c := range sample.Spec.Containers {
			names = append(names, c.Name)
			if c.Image != workloads.Image {
				t.Errorf("container %s image %s, want %s", c.Name, c.Image, workloads.Image)
			}
		}
		if strings.Join(names, ",") != "istio-proxy,app" {
			t.Errorf("containers %v, want [istio-proxy app]", names)
		}
		for _, cs := range sample.Status.ContainerStatuses {
			if !cs.Ready {
				t.Errorf("container %s not ready", cs.Name)
			}
		}
	})

	inClient := func(t *testing.T, args ...string) string {
		t.Helper()
		stdout, stderr, err := testenv.Env.Exec(ctx, ns, "client", "", append([]string{"/probe"}, args...), nil)
		if err != nil {
			t.Fatalf("probe %v in the client pod: %v: %s", args, err, stderr)
		}
		return stdout
	}

	t.Run("CoreDNS resolves the Service's names from a pod", func(t *testing.T) {
		for _, name := range []string{"sample", "sample." + ns, "sample." + ns + ".svc.cluster.local"} {
			if got := strings.TrimSpace(inClient(t, "dns", name)); got != svc.Spec.ClusterIP {
				t.Errorf("resolve %q in the pod = %q, want the Service IP %s", name, got, svc.Spec.ClusterIP)
			}
		}
	})

	t.Run("the Service answers from the pod with the pod's context", func(t *testing.T) {
		out := inClient(t, "http", "-H", "X-Kwarp-Test: yes", "http://sample/some/path?q=1")
		var rec server.Record
		if err := json.Unmarshal([]byte(out), &rec); err != nil {
			t.Fatalf("decode %q: %v", out, err)
		}
		if rec.Pod != sample.Name || rec.Namespace != ns || rec.Path != "/some/path" || rec.Query != "q=1" {
			t.Errorf("record %+v: want pod %s, namespace %s (downward API env), path /some/path, query q=1", rec, sample.Name, ns)
		}
		if got := rec.Headers["X-Kwarp-Test"]; len(got) != 1 || got[0] != "yes" {
			t.Errorf("header X-Kwarp-Test = %v", got)
		}
	})

	t.Run("TCP and UDP echo through the Service", func(t *testing.T) {
		out := inClient(t, "tcp", "echo:7000", "hello-tcp")
		if !strings.Contains(out, echo.Name) || !strings.Contains(out, "hello-tcp") {
			t.Errorf("tcp echo answered %q, want the banner %s and the message", out, echo.Name)
		}
		out = inClient(t, "udp", "echo:7001", "hello-udp")
		if strings.TrimSpace(out) != echo.Name+" hello-udp" {
			t.Errorf("udp echo answered %q, want %q", out, echo.Name+" hello-udp")
		}
	})

	t.Run("the app container has the spec's env and the ConfigMap file", func(t *testing.T) {
		for _, c := range []struct {
			args []string
			want string
		}{
			{[]string{"env", "GREETING"}, "hello-from-the-pod"},
			{[]string{"env", "POD_NAMESPACE"}, ns},
			{[]string{"cat", "/etc/sample/app.conf"}, "marker=kwarp-sample-config-7f3a"},
		} {
			stdout, stderr, err := testenv.Env.Exec(ctx, ns, sample.Name, "app", append([]string{"/probe"}, c.args...), nil)
			if err != nil {
				t.Fatalf("probe %v in the app container: %v: %s", c.args, err, stderr)
			}
			if !strings.Contains(stdout, c.want) {
				t.Errorf("probe %v in the app container = %q, want %q in it", c.args, stdout, c.want)
			}
		}
	})
}
