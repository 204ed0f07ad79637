package cli

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kwarp-dev/kwarp/kube/target"
)

// refusedKubeconfig writes a kubeconfig whose server refuses connections (a port just freed).
func refusedKubeconfig(t *testing.T) (path, server string) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	server = "https://" + l.Addr().String()
	l.Close()
	path = filepath.Join(t.TempDir(), "config")
	cfg := fmt.Sprintf("apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {server: %s}\nusers:\n- name: u\n  user: {token: t}\ncontexts:\n- name: x\n  context: {cluster: c, user: u, namespace: shop}\ncurrent-context: x\n", server)
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path, server
}

func TestTargetErrorExitCodes(t *testing.T) {
	_, _, parseErr := target.Parse("svc/x")
	var ee *ExitError
	if !errors.As(targetError(parseErr), &ee) || ee.Code != ExitUsage {
		t.Errorf("a target that does not parse: exit %v, want %d", ee, ExitUsage)
	}
	notFound := &target.Error{Class: target.ErrNotFound, Msg: "deployment/x not found"}
	if !errors.As(targetError(notFound), &ee) || ee.Code != ExitCluster {
		t.Errorf("a target the cluster does not have: exit %v, want %d", ee, ExitCluster)
	}
	if targetError(nil) != nil || clusterError(nil) != nil {
		t.Error("nil is not an error")
	}
	usage := UsageError(errors.New("x"))
	if !errors.As(clusterError(usage), &ee) || ee.Code != ExitUsage {
		t.Error("clusterError must keep an existing exit code")
	}
}

func TestLsUnreachableServer(t *testing.T) {
	path, server := refusedKubeconfig(t)
	start := time.Now()
	code, out, errOut := run(t, "--kubeconfig", path, "ls")
	if code != ExitCluster {
		t.Errorf("exit %d, want %d (stderr %q)", code, ExitCluster, errOut)
	}
	if !strings.Contains(errOut, "cannot reach the API server at "+server) {
		t.Errorf("stderr %q does not name the server", errOut)
	}
	if out != "" {
		t.Errorf("stdout %q", out)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("took %s", d)
	}
}

func TestAgentPingBadTargetIsUsage(t *testing.T) {
	// The target is checked before any cluster is asked: no kubeconfig is needed for exit 2.
	code, _, errOut := run(t, "--kubeconfig", "/nonexistent", "agent-ping", "-t", "service/x")
	if code != ExitUsage || !strings.Contains(errOut, "use KIND/NAME with KIND one of pod, deploy (deployment), sts (statefulset), job, cronjob, rollout") {
		t.Errorf("exit %d, stderr %q", code, errOut)
	}
}

func TestPrintTargets(t *testing.T) {
	ts := []target.Target{
		{Kind: target.KindDeployment, Name: "sample", Namespace: "shop", Ready: true, Pods: "1/1",
			Containers: []target.Container{{Name: "istio-proxy", Sidecar: true}, {Name: "app"}}},
		{Kind: target.KindPod, Name: "client", Namespace: "shop", Pods: "0/1", Containers: []target.Container{{Name: "client"}}},
	}
	var b bytes.Buffer
	if err := printTargets(&b, ts, false); err != nil {
		t.Fatal(err)
	}
	want := "TARGET             READY  PODS  CONTAINERS\n" +
		"deployment/sample  yes    1/1   istio-proxy (sidecar), app\n" +
		"pod/client         no     0/1   client\n"
	if b.String() != want {
		t.Errorf("table\n%s\nwant\n%s", b.String(), want)
	}
	b.Reset()
	_ = printTargets(&b, ts[:1], true)
	if !strings.HasPrefix(b.String(), "NAMESPACE  TARGET") || !strings.Contains(b.String(), "shop       deployment/sample") {
		t.Errorf("-A table\n%s", b.String())
	}
}
