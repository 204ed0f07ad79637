package env

import (
	"context"
	"strings"
	"testing"

	"github.com/kwarp-dev/kwarp/sdk"
	"github.com/kwarp-dev/kwarp/sdk/plugintest"
)

func configured(t *testing.T, cfgJSON string) *Plugin {
	t.Helper()
	p := New()
	blocks := map[string][]byte{}
	if cfgJSON != "" {
		blocks["env"] = []byte(cfgJSON)
	}
	if _, err := p.Configure(context.Background(), sdk.Config{Blocks: blocks}); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestMerge(t *testing.T) {
	local := []sdk.EnvVar{{Name: "PATH", Value: "/usr/bin"}, {Name: "HOME", Value: "/home/dev"}, {Name: "GREETING", Value: "local"}, {Name: "EDITOR", Value: "vi"}}
	remote := []sdk.EnvVar{{Name: "PATH", Value: "/pod/bin"}, {Name: "HOME", Value: "/root"}, {Name: "GREETING", Value: "hello-from-the-pod"},
		{Name: "DATABASE_URL", Value: "postgres://db"}, {Name: "NODE_ENV", Value: "production"}, {Name: "HOSTNAME", Value: "sample-1"}}
	tests := []struct {
		name     string
		cfg      string
		want     map[string]string
		absent   []string
		imported []string
	}{
		{"default: all remote but the local-only list", "",
			map[string]string{"PATH": "/usr/bin", "HOME": "/home/dev", "GREETING": "hello-from-the-pod", "DATABASE_URL": "postgres://db", "HOSTNAME": "sample-1", "EDITOR": "vi"},
			nil, []string{"GREETING", "DATABASE_URL", "NODE_ENV", "HOSTNAME"}},
		{"include globs", `{"include":["DATABASE_*"]}`,
			map[string]string{"GREETING": "local", "DATABASE_URL": "postgres://db"}, []string{"NODE_ENV"}, []string{"DATABASE_URL"}},
		{"exclude wins", `{"exclude":["NODE_ENV","GREET*"]}`,
			map[string]string{"GREETING": "local", "DATABASE_URL": "postgres://db"}, []string{"NODE_ENV"}, nil},
		{"a local-only name only by exact include", `{"include":["PATH","*"]}`,
			map[string]string{"PATH": "/pod/bin", "HOME": "/home/dev"}, nil, nil},
		{"override last", `{"override":{"LOG_LEVEL":"debug","GREETING":"over"}}`,
			map[string]string{"LOG_LEVEL": "debug", "GREETING": "over"}, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := configured(t, tt.cfg)
			res := Merge(local, remote, p.Selected, p.cfg.Override)
			got := map[string]string{}
			for _, v := range res.Vars {
				if _, dup := got[v.Name]; dup {
					t.Fatalf("%s twice in %v", v.Name, res.Vars)
				}
				got[v.Name] = v.Value
			}
			for k, v := range tt.want {
				if got[k] != v {
					t.Errorf("%s = %q, want %q", k, got[k], v)
				}
			}
			for _, k := range tt.absent {
				if _, ok := got[k]; ok {
					t.Errorf("%s present, want absent", k)
				}
			}
			for _, k := range tt.imported {
				if !strings.Contains(","+strings.Join(res.Imported, ",")+",", ","+k+",") {
					t.Errorf("%s not in Imported %v", k, res.Imported)
				}
			}
			if res.Vars[0].Name != "PATH" {
				t.Errorf("local order lost: %v", res.Vars)
			}
		})
	}
}

func TestTargetlessComputesLocalOnly(t *testing.T) {
	p := New()
	if _, err := p.Configure(context.Background(), sdk.Config{Session: sdk.Session{Targetless: true}}); err != nil {
		t.Fatal(err)
	}
	res, err := p.Compute(context.Background(), []sdk.EnvVar{{Name: "A", Value: "1"}})
	if err != nil || len(res.Vars) != 1 || len(res.Imported) != 0 {
		t.Fatalf("targetless compute = %+v, %v", res, err)
	}
}

func TestBadGlobRefused(t *testing.T) {
	p := New()
	if _, err := p.Configure(context.Background(), sdk.Config{Blocks: map[string][]byte{"env": []byte(`{"include":["[A"]}`)}}); err == nil {
		t.Fatal("a bad include glob was accepted")
	}
}

func TestConformance(t *testing.T) { plugintest.Run(t, func() sdk.Plugin { return New() }) }
