package files

import (
	"context"
	"io"
	"net"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	agentv1 "github.com/kwarp-dev/kwarp/agent/api/v1"
	"github.com/kwarp-dev/kwarp/core/fsroute"
	"github.com/kwarp-dev/kwarp/sdk"
)

// fakePod is an agent's fs service over an in-memory tree: files by path, directories by
// their entries. It counts calls, to prove which path took how many round trips.
type fakePod struct {
	agentv1.UnimplementedFsServer
	mu      sync.Mutex
	files   map[string]string
	dirs    map[string][]*agentv1.DirEntry
	reads   int
	written map[string]string
}

func (p *fakePod) Read(req *agentv1.ReadRequest, s agentv1.Fs_ReadServer) error {
	p.mu.Lock()
	p.reads++
	content, ok := p.files[req.Path]
	_, isDir := p.dirs[req.Path]
	p.mu.Unlock()
	switch {
	case isDir:
		return s.Send(&agentv1.ReadChunk{Errno: int32(unix.EISDIR)})
	case !ok:
		return s.Send(&agentv1.ReadChunk{Errno: int32(unix.ENOENT)})
	}
	if err := s.Send(&agentv1.ReadChunk{Info: &agentv1.FileInfo{Mode: unix.S_IFREG | 0o644, Size: int64(len(content))}, Data: []byte(content[:len(content)/2])}); err != nil {
		return err
	}
	return s.Send(&agentv1.ReadChunk{Data: []byte(content[len(content)/2:])})
}

func (p *fakePod) ReadDir(_ context.Context, req *agentv1.ReadDirRequest) (*agentv1.ReadDirResponse, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	ents, ok := p.dirs[req.Path]
	if !ok {
		return &agentv1.ReadDirResponse{Errno: int32(unix.ENOENT)}, nil
	}
	return &agentv1.ReadDirResponse{Entries: ents}, nil
}

func (p *fakePod) Write(s agentv1.Fs_WriteServer) error {
	var path string
	var b strings.Builder
	for {
		c, err := s.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		if c.Path != "" {
			path = c.Path
		}
		b.Write(c.Data)
	}
	p.mu.Lock()
	p.written[path] = b.String()
	p.mu.Unlock()
	return s.SendAndClose(&agentv1.WriteResponse{Written: int64(b.Len())})
}

// decider answers like the fs plugin in write mode: directories are listed, files read or
// written back.
type decider struct{ pod *fakePod }

func (d decider) Open(_ context.Context, path string, flags int, _ uint32) (sdk.OpenDecision, error) {
	d.pod.mu.Lock()
	defer d.pod.mu.Unlock()
	if _, ok := d.pod.dirs[path]; ok {
		return sdk.OpenDecision{Action: sdk.OpenReadDir, Info: sdk.FileInfo{Mode: unix.S_IFDIR | 0o755}}, nil
	}
	content, ok := d.pod.files[path]
	if flags&(unix.O_WRONLY|unix.O_RDWR) != 0 {
		info := sdk.FileInfo{}
		if ok {
			info = sdk.FileInfo{Mode: unix.S_IFREG | 0o640, Size: int64(len(content))}
		}
		return sdk.OpenDecision{Action: sdk.OpenWrite, Info: info}, nil
	}
	if !ok {
		return sdk.OpenDecision{Errno: int(unix.ENOENT)}, nil
	}
	return sdk.OpenDecision{Action: sdk.OpenRead}, nil
}

func (decider) Stat(context.Context, string, bool) (sdk.FileInfo, int, error) {
	return sdk.FileInfo{}, int(unix.ENOENT), nil
}
func (decider) Readlink(context.Context, string) (string, int, error) {
	return "", int(unix.EINVAL), nil
}
func (decider) Access(context.Context, string, uint32) (int, error) { return 0, nil }

func newFiles(t *testing.T) (*Files, *fakePod) {
	t.Helper()
	pod := &fakePod{
		files: map[string]string{"/etc/app.conf": "marker=from-the-pod\n", "/data/log": "old\n"},
		dirs: map[string][]*agentv1.DirEntry{"/etc/sample": {
			{Name: "app.conf", Type: unix.DT_LNK}, {Name: "..data", Type: unix.DT_LNK}, {Name: "sub", Type: unix.DT_DIR}, {Name: "../escape", Type: unix.DT_REG},
		}},
		written: map[string]string{},
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	agentv1.RegisterFsServer(s, pod)
	go s.Serve(l)
	t.Cleanup(s.Stop)
	conn, err := grpc.NewClient(l.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	table, err := fsroute.Compile(sdk.FsRules{Mode: "write", Default: sdk.RouteRemote})
	if err != nil {
		t.Fatal(err)
	}
	return New(table, decider{pod}, agentv1.NewFsClient(conn), t.TempDir(), zerolog.Nop()), pod
}

func TestPlainReadIsOneRoundTrip(t *testing.T) {
	f, pod := newFiles(t)
	file, err := f.Open(context.Background(), "/etc/app.conf", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	b, err := io.ReadAll(file)
	if err != nil || string(b) != "marker=from-the-pod\n" {
		t.Fatalf("content %q, %v", b, err)
	}
	if pod.reads != 1 {
		t.Errorf("%d agent reads for one open", pod.reads)
	}
	if _, err := f.Open(context.Background(), "/etc/missing", unix.O_RDONLY, 0); err != unix.ENOENT {
		t.Errorf("missing file: %v, want ENOENT", err)
	}
}

func TestDirectoryStandInIsKeptAndSynced(t *testing.T) {
	f, pod := newFiles(t)
	ctx := context.Background()
	d1, err := f.Open(ctx, "/etc/sample", unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	names, _ := d1.Readdirnames(-1)
	sort.Strings(names)
	if strings.Join(names, ",") != "..data,app.conf,sub" {
		t.Fatalf("entries %v: want the pod's, and no name that climbs out", names)
	}
	var st1 unix.Stat_t
	unix.Fstat(int(d1.Fd()), &st1)
	d1.Close()

	// the pod's directory changed; a process may still have the stand-in as its cwd
	pod.mu.Lock()
	pod.dirs["/etc/sample"] = []*agentv1.DirEntry{{Name: "app.conf", Type: unix.DT_LNK}, {Name: "new.conf", Type: unix.DT_REG}}
	pod.mu.Unlock()
	d2, err := f.Open(ctx, "/etc/sample", unix.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer d2.Close()
	var st2 unix.Stat_t
	unix.Fstat(int(d2.Fd()), &st2)
	if st1.Ino != st2.Ino {
		t.Error("the stand-in directory was replaced: a process inside it would lose its cwd")
	}
	names, _ = d2.Readdirnames(-1)
	sort.Strings(names)
	if strings.Join(names, ",") != "app.conf,new.conf" {
		t.Errorf("entries after the change %v", names)
	}
}

func TestWriteBackOnClose(t *testing.T) {
	f, pod := newFiles(t)
	ctx := context.Background()
	w, err := f.Open(ctx, "/data/log", unix.O_WRONLY|unix.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.WriteString("new\n"); err != nil {
		t.Fatal(err)
	}
	w.Close()
	// the session reads its own write at once, before the upload lands
	r, err := f.Open(ctx, "/data/log", unix.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(r)
	r.Close()
	if string(b) != "old\nnew\n" {
		t.Errorf("read back %q, want the pod's content with the appended line", b)
	}
	st, err := f.Stat(ctx, "/data/log", false)
	if err != nil || st.Size != int64(len("old\nnew\n")) {
		t.Errorf("stat of the written file: size %d, %v", st.Size, err)
	}
	f.Flush()
	deadline := time.Now().Add(5 * time.Second)
	for {
		pod.mu.Lock()
		got := pod.written["/data/log"]
		pod.mu.Unlock()
		if got == "old\nnew\n" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the pod got %q, want the whole file after close", got)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestToStat(t *testing.T) {
	now := time.Unix(1700000000, 5)
	st := ToStat(sdk.FileInfo{Mode: unix.S_IFREG | 0o600, Size: 42, UID: 1000, Mtime: now})
	if st.Mode != unix.S_IFREG|0o600 || st.Size != 42 || st.Uid != 1000 || st.Mtim.Sec != now.Unix() || st.Mtim.Nsec != 5 {
		t.Errorf("ToStat = %+v", st)
	}
}
