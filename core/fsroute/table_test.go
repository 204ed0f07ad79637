package fsroute

import (
	"testing"

	"github.com/kwarp-dev/kwarp/layer"
	"github.com/kwarp-dev/kwarp/plugins/fs"
)

func TestDefaultTables(t *testing.T) {
	home, wd := "/home/dev", "/home/dev/src/app"
	tests := []struct {
		mode string
		path string
		want layer.Route
	}{
		{"read", "/etc/sample/app.conf", layer.Remote},
		{"read", "/etc/hostname", layer.Remote},
		{"read", "/etc/resolv.conf", layer.Remote},
		{"read", "/var/run/secrets/kubernetes.io/serviceaccount/token", layer.Remote},
		{"read", "/usr/lib/python3.11/json/__init__.py", layer.Local},
		{"read", "/lib/x86_64-linux-gnu/libc.so.6", layer.Local},
		{"read", "/proc/self/maps", layer.Local},
		{"read", "/tmp/x", layer.Local},
		{"read", "/etc/ld.so.cache", layer.Local},
		{"read", "/etc/passwd", layer.Local},
		{"read", wd + "/main.go", layer.Local},
		{"read", wd, layer.Local},
		{"read", home + "/.bashrc", layer.Local},
		{"read", home + "/.aws/credentials", layer.NotFound},
		{"read", home + "/.kube/config", layer.NotFound},
		{"read", "/app/config.yaml", layer.Remote},
		{"write", "/data/out.txt", layer.Remote},
		{"localwithoverrides", "/etc/sample/app.conf", layer.Local},
		{"localwithoverrides", "/etc/hostname", layer.Remote},
		{"local", "/etc/hostname", layer.Local},
		{"local", home + "/.aws/credentials", layer.Local},
	}
	for _, tt := range tests {
		t.Run(tt.mode+" "+tt.path, func(t *testing.T) {
			tab, err := Compile(fs.BuildRules(fs.Config{Mode: tt.mode}, home, wd))
			if err != nil {
				t.Fatal(err)
			}
			if got := tab.Route(tt.path); got != tt.want {
				t.Errorf("Route(%q) in mode %s = %v, want %v", tt.path, tt.mode, got, tt.want)
			}
		})
	}
}

func TestUserGlobsWin(t *testing.T) {
	cfg := fs.Config{Mode: "read", Local: []string{"/etc/sample/local.conf"}, NotFound: []string{"/etc/hostname"},
		ReadOnly: []string{"/usr/share/app/**"}}
	tab, err := Compile(fs.BuildRules(cfg, "/home/dev", "/home/dev/app"))
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]layer.Route{
		"/etc/sample/local.conf":   layer.Local,
		"/etc/sample/app.conf":     layer.Remote,
		"/etc/hostname":            layer.NotFound, // over the kubelet default
		"/usr/share/app/data.json": layer.Remote,   // over the /usr/** default
		"/usr/share/other":         layer.Local,
	} {
		if got := tab.Route(path); got != want {
			t.Errorf("Route(%q) = %v, want %v", path, got, want)
		}
	}
}

func TestBadGlobInTable(t *testing.T) {
	if _, err := Compile(fs.BuildRules(fs.Config{Mode: "read", Local: []string{"/a/[b"}}, "", "")); err == nil {
		t.Fatal("a table with a bad glob compiled")
	}
}
