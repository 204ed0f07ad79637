package agent

// Integration without Kubernetes: the test makes a "pod" itself — a directory tree as the
// container's root and a process chroot'ed into it, in its own mount namespace with /proc
// mounted, running as uid 1000 — then serves it with the real agent over a loopback listener
// and drives it with a real gRPC client.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	agentv1 "github.com/kwarp-dev/kwarp/agent/api/v1"
	"github.com/kwarp-dev/kwarp/agent/netns/netnstest"
	"github.com/kwarp-dev/kwarp/agent/sessionserver"
	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

const targetUID, targetGID, setgidGroup = 1000, 1000, 2000

var podMtime = time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC)

var (
	sleeperOnce sync.Once
	sleeperPath string
	sleeperErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if sleeperPath != "" {
		os.RemoveAll(filepath.Dir(sleeperPath))
	}
	os.Exit(code)
}

// buildSleeper builds testdata/sleeper statically, once per test binary.
func buildSleeper(t *testing.T) string {
	t.Helper()
	sleeperOnce.Do(func() {
		dir, err := os.MkdirTemp("", "kwarp-sleeper-")
		if err != nil {
			sleeperErr = err
			return
		}
		sleeperPath = filepath.Join(dir, "sleeper")
		cmd := exec.Command("go", "build", "-o", sleeperPath, "./testdata/sleeper")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=-buildvcs=false")
		if out, err := cmd.CombinedOutput(); err != nil {
			sleeperErr = errors.New("build the sleeper: " + err.Error() + "\n" + string(out))
		}
	})
	if sleeperErr != nil {
		t.Fatal(sleeperErr)
	}
	return sleeperPath
}

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("the pod test chroots a process, mounts /proc in its namespace and changes uids: run as root")
	}
}

// pod is the test-made target.
type pod struct {
	root string
	pid  int
	cmd  *exec.Cmd
}

var podEnv = []string{"DATABASE_URL=postgres://db:5432/shop", "LOG_LEVEL=info", "HOME=/", "PATH=/"}

func startPod(t *testing.T) *pod {
	t.Helper()
	return startPodWith(t, false, nil)
}

// startPodWith is startPod with extra files in the pod's root (name relative to it → content)
// and, with ownNet, a network namespace of its own with its loopback up, as a pod has.
func startPodWith(t *testing.T, ownNet bool, extra map[string]string) *pod {
	t.Helper()
	needRoot(t)
	sleeper := buildSleeper(t)
	root := t.TempDir()
	// t.TempDir's parent is 0700; uid 1000 must reach the tree like a container's root.
	for _, d := range []string{filepath.Dir(root), root} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	files := []struct {
		name, content string
		mode          os.FileMode
	}{
		{"etc/app.conf", "hello from the pod\n", 0o644},
		{"etc/passwd", "root:x:0:0:tree:/:/sleeper\n", 0o644},
		{"etc/hostname", "checkout-7d9f5\n", 0o644},
		{"etc/secret", "s3cret\n", 0o600},
		{"config/..2024_x/app.conf", "from the configmap\n", 0o644},
		{"big", strings.Repeat("kwarp", 600<<10/5), 0o644},
	}
	for name, content := range extra {
		files = append(files, struct {
			name, content string
			mode          os.FileMode
		}{name, content, 0o644})
	}
	for _, f := range files {
		p := filepath.Join(root, f.name)
		must(t, os.MkdirAll(filepath.Dir(p), 0o755))
		must(t, os.WriteFile(p, []byte(f.content), f.mode))
		must(t, os.Chmod(p, f.mode))
	}
	must(t, os.Chtimes(filepath.Join(root, "etc/app.conf"), podMtime, podMtime))
	for name, to := range map[string]string{
		"etc/link":        "/etc/app.conf",
		"config/..data":   "..2024_x",
		"config/app.conf": "..data/app.conf",
		"escape":          "../../../../etc/passwd",
		"magic":           "/proc/self/root/etc/passwd",
	} {
		must(t, os.Symlink(to, filepath.Join(root, name)))
	}
	for _, d := range []struct {
		name     string
		mode     os.FileMode
		uid, gid int
	}{
		{"proc", 0o555, 0, 0},
		{"tmp", 0o777 | os.ModeSticky, 0, 0},
		{"data", 0o755, targetUID, targetGID},
		{"data/shared", 0o775 | os.ModeSetgid, targetUID, setgidGroup},
	} {
		p := filepath.Join(root, d.name)
		must(t, os.MkdirAll(p, 0o755))
		must(t, os.Chown(p, d.uid, d.gid))
		must(t, os.Chmod(p, d.mode))
	}
	b, err := os.ReadFile(sleeper)
	must(t, err)
	must(t, os.WriteFile(filepath.Join(root, "sleeper"), b, 0o755))

	cmd := exec.Command("/sleeper", "-mount-proc", "-uid=1000", "-gid=1000", "-umask=022")
	cmd.Env = podEnv
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Chroot: root,
		// Its own mount namespace (Go makes it private), so its /proc mount stays its own.
		Unshareflags: syscall.CLONE_NEWNS,
	}
	if ownNet {
		cmd.SysProcAttr.Unshareflags |= syscall.CLONE_NEWNET
	}
	cmd.Dir = "/"
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	must(t, err)
	must(t, cmd.Start())
	p := &pod{root: root, pid: cmd.Process.Pid, cmd: cmd}
	t.Cleanup(p.kill)
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || line != "ready\n" {
		t.Fatalf("sleeper did not start: %q, %v; stderr: %s", line, err, stderr.String())
	}
	if ownNet {
		must(t, netnstest.LoopbackUp(p.pid))
	}
	return p
}

func (p *pod) kill() {
	p.cmd.Process.Kill()
	p.cmd.Wait()
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// serve runs an agent with opts on a loopback listener and returns a client connection and a
// channel that yields Serve's result.
func serve(t *testing.T, opts Options) (*grpc.ClientConn, *Server, <-chan error) {
	t.Helper()
	srv, err := New(zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.DebugLevel), opts)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- srv.Serve(ctx, lis)
		close(done) // a test that took the result leaves the cleanup a closed channel
	}()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	must(t, err)
	t.Cleanup(func() {
		conn.Close()
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("Serve did not return after cancel")
		}
	})
	return conn, srv, done
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestPod(t *testing.T) {
	p := startPod(t)
	conn, _, _ := serve(t, Options{TargetPID: p.pid, Namespace: "shop", Pod: "checkout-7d9f5", Container: "app", ContainerID: "containerd://abc"})
	ctx := ctxT(t)
	fs := agentv1.NewFsClient(conn)

	t.Run("session", func(t *testing.T) {
		resp, err := agentv1.NewSessionClient(conn).Open(ctx, &agentv1.OpenRequest{SessionId: "s-1", User: "alice", Host: "laptop"})
		must(t, err)
		tg := resp.Target
		if tg.Pid != int32(p.pid) || tg.Hostname != "checkout-7d9f5" || tg.Namespace != "shop" || tg.Pod != "checkout-7d9f5" ||
			tg.Container != "app" || tg.ContainerId != "containerd://abc" || resp.ActiveSessions != 1 {
			t.Errorf("Open = %+v", resp)
		}
	})

	t.Run("env", func(t *testing.T) {
		resp, err := agentv1.NewEnvClient(conn).Get(ctx, &agentv1.GetEnvRequest{})
		must(t, err)
		var got []string
		for _, v := range resp.Vars {
			got = append(got, v.Name+"="+v.Value)
		}
		if strings.Join(got, " ") != strings.Join(podEnv, " ") {
			t.Errorf("env = %q, want %q", got, podEnv)
		}
	})

	t.Run("stat", func(t *testing.T) {
		resp, err := fs.Stat(ctx, &agentv1.StatRequest{Path: "/etc/app.conf"})
		must(t, err)
		i := resp.Info
		if resp.Errno != 0 || i.Mode != unix.S_IFREG|0o644 || i.Size != 19 || i.Uid != 0 || i.Gid != 0 || i.MtimeNs != podMtime.UnixNano() {
			t.Errorf("stat /etc/app.conf = %d %+v", resp.Errno, i)
		}
		resp, err = fs.Stat(ctx, &agentv1.StatRequest{Path: "/etc/link", NoFollow: true})
		must(t, err)
		if resp.Errno != 0 || resp.Info.Mode&unix.S_IFMT != unix.S_IFLNK {
			t.Errorf("lstat /etc/link = %d %+v", resp.Errno, resp.Info)
		}
		resp, err = fs.Stat(ctx, &agentv1.StatRequest{Path: "/data"})
		must(t, err)
		if resp.Info.Uid != targetUID || resp.Info.Gid != targetGID {
			t.Errorf("stat /data = %+v", resp.Info)
		}
		for path, want := range map[string]unix.Errno{"/nope": unix.ENOENT, "/etc/app.conf/x": unix.ENOTDIR, "relative": unix.EINVAL, "": unix.ENOENT} {
			resp, err := fs.Stat(ctx, &agentv1.StatRequest{Path: path})
			must(t, err)
			if unix.Errno(resp.Errno) != want {
				t.Errorf("stat %q errno %v, want %v", path, unix.Errno(resp.Errno), want)
			}
		}
	})

	t.Run("read", func(t *testing.T) {
		hostPasswd, _ := os.ReadFile("/etc/passwd")
		tests := []struct {
			path  string
			want  string
			errno unix.Errno
		}{
			{"/etc/app.conf", "hello from the pod\n", 0},
			{"/etc/link", "hello from the pod\n", 0},        // absolute symlink inside the pod
			{"/config/app.conf", "from the configmap\n", 0}, // ConfigMap's ..data farm
			{"/escape", "root:x:0:0:tree:/:/sleeper\n", 0},  // ../../../../etc/passwd stays in
			{"/../../../etc/passwd", "root:x:0:0:tree:/:/sleeper\n", 0},
			{"/magic", "", unix.ELOOP},                     // -> /proc/self/root/…, a magic link
			{"/proc/self/root/etc/passwd", "", unix.ELOOP}, // the pod's real procfs
			{"/proc/thread-self/root/etc/passwd", "", unix.ELOOP},
			// Another process's root: EACCES first here (the sleeper is not dumpable after its
			// setuid, so uid 1000 may not look), as the pod's process would be told.
			{"/proc/" + strconv.Itoa(p.pid) + "/root/etc/passwd", "", unix.EACCES},
			{"/etc/secret", "", unix.EACCES}, // 0600 root: uid 1000 may not
			{"/etc", "", unix.EISDIR},
			{"/nope", "", unix.ENOENT},
		}
		for _, tt := range tests {
			got, info, errno := read(t, fs, tt.path, 0)
			if errno != tt.errno || got != tt.want {
				t.Errorf("read %q = %q, %v; want %q, %v", tt.path, got, errno, tt.want, tt.errno)
			}
			if errno == 0 && info == nil {
				t.Errorf("read %q: no FileInfo on the first message", tt.path)
			}
			if len(hostPasswd) > 0 && got == string(hostPasswd) {
				t.Errorf("read %q gave the host's /etc/passwd", tt.path)
			}
		}
		// A file over several chunks.
		got, info, errno := read(t, fs, "/big", 0)
		want, _ := os.ReadFile(filepath.Join(p.root, "big"))
		if errno != 0 || got != string(want) || info.Size != int64(len(want)) {
			t.Errorf("read /big: %d bytes, errno %v, info %+v; want %d bytes", len(got), errno, info, len(want))
		}
		if _, _, errno := read(t, fs, "/big", 1000); errno != unix.EFBIG {
			t.Errorf("read /big with max_bytes 1000: %v, want EFBIG", errno)
		}
	})

	t.Run("readdir and readlink", func(t *testing.T) {
		resp, err := fs.ReadDir(ctx, &agentv1.ReadDirRequest{Path: "/config"})
		must(t, err)
		var names []string
		for _, e := range resp.Entries {
			names = append(names, e.Name)
		}
		sort.Strings(names)
		if resp.Errno != 0 || strings.Join(names, " ") != "..2024_x ..data app.conf" {
			t.Errorf("readdir /config = %v, %v", names, unix.Errno(resp.Errno))
		}
		rl, err := fs.ReadLink(ctx, &agentv1.ReadLinkRequest{Path: "/config/app.conf"})
		must(t, err)
		if rl.Errno != 0 || rl.Target != "..data/app.conf" {
			t.Errorf("readlink = %+v", rl)
		}
	})

	t.Run("access as the target", func(t *testing.T) {
		tests := []struct {
			path  string
			mode  uint32
			errno unix.Errno
		}{
			{"/etc/app.conf", unix.R_OK, 0},
			{"/etc/app.conf", unix.W_OK, unix.EACCES}, // root's file: not for uid 1000
			{"/etc/secret", unix.R_OK, unix.EACCES},   // although the agent is root
			{"/etc/secret", unix.F_OK, 0},
			{"/data", unix.W_OK | unix.X_OK, 0}, // its own directory
			{"/sleeper", unix.X_OK, 0},
			{"/nope", unix.F_OK, unix.ENOENT},
		}
		for _, tt := range tests {
			resp, err := fs.Access(ctx, &agentv1.AccessRequest{Path: tt.path, Mode: tt.mode})
			must(t, err)
			if unix.Errno(resp.Errno) != tt.errno {
				t.Errorf("access(%q, %d) = %v, want %v", tt.path, tt.mode, unix.Errno(resp.Errno), tt.errno)
			}
		}
	})

	t.Run("write as the target", func(t *testing.T) {
		if errno, n := write(t, fs, "/data/new.txt", 0o666, false, "one ", "two"); errno != 0 || n != 7 {
			t.Fatalf("write /data/new.txt: %v, %d", errno, n)
		}
		if errno, _ := write(t, fs, "/data/new.txt", 0o666, true, "+three"); errno != 0 {
			t.Fatalf("append: %v", errno)
		}
		checkFile(t, filepath.Join(p.root, "data/new.txt"), "one two+three", targetUID, targetGID, 0o644) // 0666 &^ umask 022
		// A setgid directory gives its group, as in the pod.
		if errno, _ := write(t, fs, "/data/shared/f", 0o640, false, "x"); errno != 0 {
			t.Fatalf("write in a setgid dir: %v", errno)
		}
		checkFile(t, filepath.Join(p.root, "data/shared/f"), "x", targetUID, setgidGroup, 0o640)
		// Where uid 1000 may not write, neither may the agent on its behalf.
		if errno, _ := write(t, fs, "/etc/app.conf", 0o644, false, "pwned"); errno != unix.EACCES {
			t.Errorf("write /etc/app.conf: %v, want EACCES", errno)
		}
		checkFile(t, filepath.Join(p.root, "etc/app.conf"), "hello from the pod\n", 0, 0, 0o644)
		// ".." cannot climb out: this lands in the pod's /tmp, not the host's.
		name := "kwarp-escape-" + filepath.Base(p.root)
		if errno, _ := write(t, fs, "/../../../tmp/"+name, 0o644, false, "x"); errno != 0 {
			t.Errorf("write /../../../tmp/x: %v", errno)
		}
		if _, err := os.Stat(filepath.Join(p.root, "tmp", name)); err != nil {
			t.Errorf("not in the pod's /tmp: %v", err)
		}
		if _, err := os.Stat(filepath.Join("/tmp", name)); err == nil {
			os.Remove(filepath.Join("/tmp", name))
			t.Errorf("the write escaped to the host's /tmp")
		}
	})

	t.Run("mkdir rename unlink", func(t *testing.T) {
		errno := func(r *agentv1.ErrnoResponse, err error) unix.Errno {
			t.Helper()
			must(t, err)
			return unix.Errno(r.Errno)
		}
		if e := errno(fs.Mkdir(ctx, &agentv1.MkdirRequest{Path: "/data/d", Mode: 0o777})); e != 0 {
			t.Fatalf("mkdir: %v", e)
		}
		var st unix.Stat_t
		must(t, unix.Stat(filepath.Join(p.root, "data/d"), &st))
		if st.Uid != targetUID || st.Gid != targetGID || st.Mode&0o777 != 0o755 {
			t.Errorf("mkdir made uid %d gid %d mode %o", st.Uid, st.Gid, st.Mode&0o777)
		}
		if e := errno(fs.Mkdir(ctx, &agentv1.MkdirRequest{Path: "/etc/d", Mode: 0o777})); e != unix.EACCES {
			t.Errorf("mkdir /etc/d: %v, want EACCES", e)
		}
		if e := errno(fs.Rename(ctx, &agentv1.RenameRequest{From: "/data/new.txt", To: "/data/d/x"})); e != 0 {
			t.Errorf("rename: %v", e)
		}
		if e := errno(fs.Rename(ctx, &agentv1.RenameRequest{From: "/data/d/x", To: "/proc/x"})); e != unix.EXDEV {
			t.Errorf("rename onto procfs: %v, want EXDEV", e)
		}
		if e := errno(fs.Rename(ctx, &agentv1.RenameRequest{From: "/etc/app.conf", To: "/data/stolen"})); e != unix.EACCES {
			t.Errorf("rename out of /etc: %v, want EACCES", e)
		}
		if e := errno(fs.Unlink(ctx, &agentv1.UnlinkRequest{Path: "/data/d"})); e != unix.EISDIR {
			t.Errorf("unlink of a dir: %v, want EISDIR", e)
		}
		if e := errno(fs.Unlink(ctx, &agentv1.UnlinkRequest{Path: "/data/d", Dir: true})); e != unix.ENOTEMPTY {
			t.Errorf("rmdir of a full dir: %v, want ENOTEMPTY", e)
		}
		if e := errno(fs.Unlink(ctx, &agentv1.UnlinkRequest{Path: "/data/d/x"})); e != 0 {
			t.Errorf("unlink: %v", e)
		}
		if e := errno(fs.Unlink(ctx, &agentv1.UnlinkRequest{Path: "/data/d", Dir: true})); e != 0 {
			t.Errorf("rmdir: %v", e)
		}
		if e := errno(fs.Unlink(ctx, &agentv1.UnlinkRequest{Path: "/etc/secret"})); e != unix.EACCES {
			t.Errorf("unlink /etc/secret: %v, want EACCES", e)
		}
	})

	t.Run("target gone", func(t *testing.T) {
		p.kill()
		_, err := fs.Stat(ctx, &agentv1.StatRequest{Path: "/etc/app.conf"})
		if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "exited") {
			t.Errorf("stat after the target exited: %v, want FailedPrecondition", err)
		}
		_, err = agentv1.NewEnvClient(conn).Get(ctx, &agentv1.GetEnvRequest{})
		if status.Code(err) != codes.FailedPrecondition {
			t.Errorf("env after the target exited: %v, want FailedPrecondition", err)
		}
	})
}

// read reads a whole file through Fs.Read.
func read(t *testing.T, fs agentv1.FsClient, path string, max int64) (string, *agentv1.FileInfo, unix.Errno) {
	t.Helper()
	stream, err := fs.Read(ctxT(t), &agentv1.ReadRequest{Path: path, MaxBytes: max})
	must(t, err)
	var data bytes.Buffer
	var info *agentv1.FileInfo
	for i := 0; ; i++ {
		chunk, err := stream.Recv()
		if err == io.EOF {
			return data.String(), info, 0
		}
		must(t, err)
		if chunk.Errno != 0 {
			return "", info, unix.Errno(chunk.Errno)
		}
		if i == 0 {
			info = chunk.Info
		} else if chunk.Info != nil {
			t.Errorf("read %q: FileInfo on message %d", path, i)
		}
		if len(chunk.Data) > 256<<10 {
			t.Errorf("read %q: a %d-byte chunk", path, len(chunk.Data))
		}
		data.Write(chunk.Data)
	}
}

// write writes chunks through Fs.Write.
func write(t *testing.T, fs agentv1.FsClient, path string, mode uint32, appendTo bool, chunks ...string) (unix.Errno, int64) {
	t.Helper()
	stream, err := fs.Write(ctxT(t))
	must(t, err)
	for i, c := range chunks {
		msg := &agentv1.WriteChunk{Data: []byte(c)}
		if i == 0 {
			msg.Path, msg.Mode, msg.Append = path, mode, appendTo
		}
		if err := stream.Send(msg); err != nil {
			break // the agent answered early (an errno); CloseAndRecv has it
		}
	}
	resp, err := stream.CloseAndRecv()
	must(t, err)
	return unix.Errno(resp.Errno), resp.Written
}

func checkFile(t *testing.T, path, content string, uid, gid int, perm uint32) {
	t.Helper()
	b, err := os.ReadFile(path)
	must(t, err)
	var st unix.Stat_t
	must(t, unix.Stat(path, &st))
	if string(b) != content || int(st.Uid) != uid || int(st.Gid) != gid || st.Mode&0o7777 != perm {
		t.Errorf("%s: %q uid %d gid %d mode %o; want %q %d %d %o", path, b, st.Uid, st.Gid, st.Mode&0o7777, content, uid, gid, perm)
	}
}

func TestTargetless(t *testing.T) {
	conn, _, _ := serve(t, Options{Namespace: "shop"})
	ctx := ctxT(t)
	resp, err := agentv1.NewSessionClient(conn).Open(ctx, &agentv1.OpenRequest{SessionId: "s"})
	must(t, err)
	if resp.Target.Pid != 0 || resp.Target.Namespace != "shop" {
		t.Errorf("targetless Open target = %+v", resp.Target)
	}
	_, err = agentv1.NewEnvClient(conn).Get(ctx, &agentv1.GetEnvRequest{})
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "targetless session: no target container") {
		t.Errorf("targetless env: %v", err)
	}
	_, err = agentv1.NewFsClient(conn).Stat(ctx, &agentv1.StatRequest{Path: "/etc/passwd"})
	if status.Code(err) != codes.FailedPrecondition {
		t.Errorf("targetless stat: %v", err)
	}
}

// The lease through the wire: with ttl 0 the agent exits when the only session's Hold ends.
func TestLeaseEndsServe(t *testing.T) {
	conn, srv, done := serve(t, Options{TTL: 0, IdleStart: time.Minute})
	ctx := ctxT(t)
	if _, err := agentv1.NewSessionClient(conn).Open(ctx, &agentv1.OpenRequest{SessionId: "s-9", User: "bob"}); err != nil {
		t.Fatal(err)
	}
	hctx, hcancel := context.WithCancel(metadata.AppendToOutgoingContext(ctx, sessionserver.SessionIDKey, "s-9"))
	hold, err := agentv1.NewSessionClient(conn).Hold(hctx)
	must(t, err)
	for seq := int64(1); seq <= 3; seq++ {
		must(t, hold.Send(&agentv1.Ping{Seq: seq}))
		pong, err := hold.Recv()
		must(t, err)
		if pong.Seq != seq {
			t.Fatalf("pong %d for ping %d", pong.Seq, seq)
		}
	}
	select {
	case <-done:
		t.Fatal("agent exited while a session held it")
	case <-time.After(200 * time.Millisecond):
	}
	hcancel() // the CLI dies: the port-forward breaks
	select {
	case err := <-done:
		if err != nil || !srv.Expired() {
			t.Errorf("Serve = %v, expired %v; want nil after the lease", err, srv.Expired())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("agent did not exit after the last session ended with ttl 0")
	}
}

// A signal (context end) stops the agent even while a session holds it: Hold streams end.
func TestStopWhileHeld(t *testing.T) {
	srv, err := New(zerolog.New(zerolog.NewTestWriter(t)), Options{TTL: time.Hour})
	must(t, err)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, lis) }()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	must(t, err)
	defer conn.Close()
	hold, err := agentv1.NewSessionClient(conn).Hold(metadata.AppendToOutgoingContext(ctxT(t), sessionserver.SessionIDKey, "s"))
	must(t, err)
	must(t, hold.Send(&agentv1.Ping{Seq: 1}))
	if _, err := hold.Recv(); err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil || srv.Expired() {
			t.Errorf("Serve = %v, expired %v; want nil, not expired", err, srv.Expired())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return while a Hold was open")
	}
	if _, err := hold.Recv(); status.Code(err) != codes.Unavailable {
		t.Errorf("Hold after stop: %v, want Unavailable", err)
	}
}
