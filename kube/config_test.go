package kube

import (
	"os"
	"path/filepath"
	"testing"
)

const twoContexts = `apiVersion: v1
kind: Config
clusters:
- name: a
  cluster: {server: https://a.example:6443}
- name: b
  cluster: {server: https://b.example:6443}
users:
- name: u
  user: {token: t}
contexts:
- name: ctx-a
  context: {cluster: a, user: u, namespace: team-a}
- name: ctx-b
  context: {cluster: b, user: u}
current-context: ctx-a
`

func TestFlagsResolveLikeKubectl(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config")
	if err := os.WriteFile(path, []byte(twoContexts), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name          string
		flags         Flags
		wantServer    string
		wantNamespace string
	}{
		{"current context", Flags{Kubeconfig: path}, "https://a.example:6443", "team-a"},
		{"--context", Flags{Kubeconfig: path, Context: "ctx-b"}, "https://b.example:6443", "default"},
		{"-n wins", Flags{Kubeconfig: path, Namespace: "x"}, "https://a.example:6443", "x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := tt.flags.RESTConfig()
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Host != tt.wantServer {
				t.Errorf("Host = %q, want %q", cfg.Host, tt.wantServer)
			}
			if s := tt.flags.Server(); s != tt.wantServer {
				t.Errorf("Server() = %q, want %q", s, tt.wantServer)
			}
			ns, err := tt.flags.ResolveNamespace()
			if err != nil {
				t.Fatal(err)
			}
			if ns != tt.wantNamespace {
				t.Errorf("ResolveNamespace() = %q, want %q", ns, tt.wantNamespace)
			}
		})
	}
}

func TestKubeconfigEnv(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config")
	if err := os.WriteFile(path, []byte(twoContexts), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("KUBECONFIG", path)
	cfg, err := Flags{}.RESTConfig()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Host != "https://a.example:6443" {
		t.Errorf("Host = %q from $KUBECONFIG", cfg.Host)
	}
}

func TestMissingKubeconfigSaysWhatToDo(t *testing.T) {
	t.Setenv("KUBECONFIG", "")
	t.Setenv("HOME", t.TempDir())
	_, err := Flags{}.RESTConfig()
	if err == nil {
		t.Fatal("RESTConfig() with no kubeconfig anywhere: want an error")
	}
	if got := err.Error(); got != "no kubeconfig found: pass --kubeconfig, set KUBECONFIG, or create ~/.kube/config" {
		t.Errorf("error = %q", got)
	}
}

func TestUnknownContext(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config")
	if err := os.WriteFile(path, []byte(twoContexts), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := (Flags{Kubeconfig: path, Context: "nope"}).RESTConfig(); err == nil {
		t.Fatal("want an error for an unknown context")
	}
}
