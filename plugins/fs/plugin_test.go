package fs

import (
	"context"
	"testing"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc"

	agentv1 "github.com/kwarp-dev/kwarp/agent/api/v1"
	"github.com/kwarp-dev/kwarp/sdk"
	"github.com/kwarp-dev/kwarp/sdk/plugintest"
)

// statOnly answers Stat from a map; the plugin calls nothing else to decide an open.
type statOnly struct {
	agentv1.FsClient
	files map[string]uint32 // path → st_mode
}

func (s statOnly) Stat(_ context.Context, r *agentv1.StatRequest, _ ...grpc.CallOption) (*agentv1.StatResponse, error) {
	m, ok := s.files[r.Path]
	if !ok {
		return &agentv1.StatResponse{Errno: int32(unix.ENOENT)}, nil
	}
	return &agentv1.StatResponse{Info: &agentv1.FileInfo{Mode: m, Size: 10}}, nil
}

func TestOpenDecisions(t *testing.T) {
	files := map[string]uint32{"/etc/app.conf": unix.S_IFREG | 0o644, "/etc/sample": unix.S_IFDIR | 0o755,
		"/data/x": unix.S_IFREG | 0o644, "/ro/x": unix.S_IFREG | 0o644}
	tests := []struct {
		mode       string
		path       string
		flags      int
		wantAction sdk.OpenAction
		wantErrno  unix.Errno
	}{
		{"read", "/etc/app.conf", unix.O_RDONLY, sdk.OpenRead, 0},
		{"read", "/etc/sample", unix.O_RDONLY | unix.O_DIRECTORY, sdk.OpenReadDir, 0},
		{"read", "/etc/app.conf", unix.O_RDONLY | unix.O_DIRECTORY, 0, unix.ENOTDIR},
		{"read", "/etc/sample", unix.O_WRONLY, 0, unix.EISDIR},
		{"read", "/missing", unix.O_RDONLY, 0, unix.ENOENT},
		{"read", "/missing", unix.O_WRONLY | unix.O_CREAT, sdk.OpenLocal, 0},
		{"read", "/etc/app.conf", unix.O_WRONLY, sdk.OpenLocal, 0},
		{"read", "/ro/x", unix.O_RDWR, 0, unix.EROFS},
		{"read", "/etc/app.conf", unix.O_WRONLY | unix.O_CREAT | unix.O_EXCL, 0, unix.EEXIST},
		{"write", "/data/x", unix.O_WRONLY | unix.O_TRUNC, sdk.OpenWrite, 0},
		{"write", "/new", unix.O_WRONLY | unix.O_CREAT, sdk.OpenWrite, 0},
	}
	for _, tt := range tests {
		t.Run(tt.mode+tt.path, func(t *testing.T) {
			p := New()
			cfg := `{"mode":"` + tt.mode + `","read_only":["/ro/**"]}`
			if _, err := p.Configure(context.Background(), sdk.Config{Blocks: map[string][]byte{"fs": []byte(cfg)}}); err != nil {
				t.Fatal(err)
			}
			p.agent = statOnly{files: files}
			d, err := p.Open(context.Background(), tt.path, tt.flags, 0o644)
			if err != nil {
				t.Fatal(err)
			}
			if unix.Errno(d.Errno) != tt.wantErrno || (tt.wantErrno == 0 && d.Action != tt.wantAction) {
				t.Errorf("Open(%s, %#x) = action %v errno %v; want action %v errno %v", tt.path, tt.flags, d.Action, unix.Errno(d.Errno), tt.wantAction, tt.wantErrno)
			}
		})
	}
}

func TestTargetlessIsLocal(t *testing.T) {
	p := New()
	r, err := p.Configure(context.Background(), sdk.Config{Session: sdk.Session{Targetless: true}})
	if err != nil {
		t.Fatal(err)
	}
	if rules := r.Tables["fs"].(sdk.FsRules); rules.Default != sdk.RouteLocal || len(rules.Rules) != 0 {
		t.Fatalf("targetless rules %+v notes %v", rules, r.Notes)
	}
}

func TestConformance(t *testing.T) { plugintest.Run(t, func() sdk.Plugin { return New() }) }
