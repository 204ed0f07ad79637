package kube

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/rs/zerolog"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

func TestExplain(t *testing.T) {
	const server = "https://10.0.0.1:6443"
	forbidden := apierrors.NewForbidden(schema.GroupResource{Group: "apps", Resource: "deployments"}, "sample",
		errors.New(`User "system:serviceaccount:t:nobody" cannot get resource "deployments" in API group "apps" in the namespace "t"`))
	refused := &url.Error{Op: "Get", URL: server + "/version?timeout=5s",
		Err: &net.OpError{Op: "dial", Net: "tcp", Err: fmt.Errorf("connect: %w", syscall.ECONNREFUSED)}}
	timeout := &url.Error{Op: "Get", URL: server + "/version", Err: context.DeadlineExceeded}
	psa := apierrors.NewForbidden(schema.GroupResource{Resource: "pods"}, "x", errors.New(`violates PodSecurity "baseline:latest": host namespaces (hostPID=true)`))

	tests := []struct {
		name      string
		verb, res string
		err       error
		problem   Problem
		want      []string
		notWant   []string
	}{
		{"forbidden names verb and resource", "get", "deployments.apps", forbidden, ProblemForbidden,
			[]string{`forbidden: cannot get deployments.apps in namespace "t"`, `system:serviceaccount:t:nobody`, `allows "get" on "deployments.apps"`}, nil},
		{"forbidden with the resource from the details", "list", "", forbidden, ProblemForbidden,
			[]string{"cannot list deployments.apps in namespace"}, nil},
		{"admission is not RBAC", "create", "pods", psa, ProblemForbidden,
			[]string{"violates PodSecurity"}, []string{"Role"}},
		{"refused", "get", "/version", refused, ProblemUnreachable,
			[]string{"cannot reach the API server at " + server, "connection refused"}, []string{"/version?timeout"}},
		{"timeout", "get", "/version", timeout, ProblemUnreachable,
			[]string{"cannot reach the API server at " + server + ": no answer within the timeout"}, nil},
		{"unauthorized", "list", "pods", apierrors.NewUnauthorized("Unauthorized"), ProblemUnauthorized,
			[]string{"rejected the kubeconfig's credentials (401 Unauthorized)", server}, nil},
		{"not found", "get", "pods", apierrors.NewNotFound(schema.GroupResource{Resource: "pods"}, "x"), ProblemNotFound,
			[]string{"get pods"}, nil},
		{"other", "list", "pods", apierrors.NewInternalError(errors.New("etcd is sad")), ProblemOther,
			[]string{"list pods", "etcd is sad"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Explain(server, tt.verb, tt.res, "t", tt.err)
			var ae *APIError
			if !errors.As(err, &ae) || ae.Problem != tt.problem {
				t.Fatalf("Explain = %#v, want problem %s", err, tt.problem)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("%q\nlacks %q", err, w)
				}
			}
			for _, w := range tt.notWant {
				if strings.Contains(err.Error(), w) {
					t.Errorf("%q\nshould not contain %q", err, w)
				}
			}
			if !errors.Is(err, tt.err) {
				t.Errorf("the original error is not wrapped")
			}
		})
	}
	if Explain(server, "get", "pods", "", nil) != nil {
		t.Error("Explain(nil) != nil")
	}
}

func TestConnectUnreachableIsQuickAndNamesTheServer(t *testing.T) {
	// A port nobody listens on: refused at once. (The e2e test covers the dropped-SYN case.)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	path := t.TempDir() + "/config"
	cfg := fmt.Sprintf("apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {server: https://%s}\nusers:\n- name: u\n  user: {token: t}\ncontexts:\n- name: x\n  context: {cluster: c, user: u}\ncurrent-context: x\n", addr)
	if err := writeFile(path, cfg); err != nil {
		t.Fatal(err)
	}
	_, err = Flags{Kubeconfig: path}.Connect(context.Background(), nopLogger)
	if err == nil || !strings.Contains(err.Error(), "cannot reach the API server at https://"+addr) {
		t.Fatalf("Connect = %v", err)
	}
}

var nopLogger = zerolog.Nop()

func writeFile(path, content string) error { return os.WriteFile(path, []byte(content), 0o600) }
