package podfiles

import (
	"context"
	"errors"
	"io"
	"os"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/kwarp-dev/kwarp/layer"
)

// next stands for the files handler behind: everything under /remote is Remote.
type next struct{ opened []string }

func (n *next) Route(path string) layer.Route {
	if len(path) > 7 && path[:8] == "/remote/" {
		return layer.Remote
	}
	return layer.Local
}
func (n *next) Open(_ context.Context, path string, _ int, _ uint32) (*os.File, error) {
	n.opened = append(n.opened, path)
	return nil, unix.ENOENT
}
func (n *next) Stat(context.Context, string, bool) (unix.Stat_t, error) {
	return unix.Stat_t{Size: 99}, nil
}
func (n *next) Readlink(context.Context, string) (string, error) { return "t", nil }
func (n *next) Access(context.Context, string, uint32) error     { return nil }

func TestFixedFiles(t *testing.T) {
	n := &next{}
	conf := []byte("search ns.svc.cluster.local\nnameserver 10.96.0.10\n")
	h := New(n, map[string][]byte{"/etc/resolv.conf": conf, "/etc/hosts": nil})
	ctx := context.Background()
	if r := h.Route("/etc/resolv.conf"); r != layer.Remote {
		t.Errorf("resolv.conf routed %s", r)
	}
	if r := h.Route("/etc/hosts"); r != layer.Local {
		t.Errorf("hosts mapped to nil routed %s, want local", r)
	}
	if r := h.Route("/remote/x"); r != layer.Remote {
		t.Errorf("other paths are not passed on: %s", r)
	}
	f, err := h.Open(ctx, "/etc/resolv.conf", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got, _ := io.ReadAll(f)
	if string(got) != string(conf) {
		t.Fatalf("content %q", got)
	}
	st, err := h.Stat(ctx, "/etc/resolv.conf", false)
	if err != nil || st.Size != int64(len(conf)) || st.Mode&unix.S_IFMT != unix.S_IFREG {
		t.Fatalf("stat %+v, %v", st, err)
	}
	if _, err := h.Open(ctx, "/etc/resolv.conf", unix.O_WRONLY, 0); !errors.Is(err, unix.EROFS) {
		t.Errorf("open for writing: %v, want EROFS", err)
	}
	if err := h.Access(ctx, "/etc/resolv.conf", unix.W_OK); !errors.Is(err, unix.EACCES) {
		t.Errorf("access W_OK: %v", err)
	}
	if err := h.Access(ctx, "/etc/resolv.conf", unix.R_OK); err != nil {
		t.Errorf("access R_OK: %v", err)
	}
	if _, err := h.Readlink(ctx, "/etc/resolv.conf"); !errors.Is(err, unix.EINVAL) {
		t.Errorf("readlink: %v", err)
	}
	h.Open(ctx, "/remote/x", 0, 0)
	if len(n.opened) != 1 || n.opened[0] != "/remote/x" {
		t.Errorf("opens passed on: %v", n.opened)
	}
	if st, _ := h.Stat(ctx, "/remote/x", false); st.Size != 99 {
		t.Errorf("stat not passed on")
	}
}
