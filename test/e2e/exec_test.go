package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kwarp-dev/kwarp/test/kube"
	"github.com/kwarp-dev/kwarp/test/testenv"
)

// contextProgram builds (where needed) one of testdata/context's programs and returns the
// command that runs it.
func contextProgram(t *testing.T, ctx context.Context, lang, dir string) []string {
	t.Helper()
	src, err := filepath.Abs("testdata/context")
	if err != nil {
		t.Fatal(err)
	}
	build := func(name string, args ...string) {
		t.Helper()
		cmd := exec.CommandContext(ctx, name, args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("build the %s program: %v\n%s", lang, err, out)
		}
	}
	switch lang {
	case "c":
		build("gcc", "-O2", "-o", filepath.Join(dir, "context-c"), filepath.Join(src, "context.c"))
		return []string{filepath.Join(dir, "context-c")}
	case "python":
		return []string{"python3", filepath.Join(src, "context.py")}
	case "node":
		return []string{"node", filepath.Join(src, "context.js")}
	case "java":
		build("javac", "-d", dir, filepath.Join(src, "Context.java"))
		return []string{"java", "-cp", dir, "Context"}
	case "go-static":
		cmd := exec.CommandContext(ctx, "go", "build", "-o", filepath.Join(dir, "gocontext"), ".")
		cmd.Dir = filepath.Join(src, "gocontext")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=-mod=mod")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("build the static Go program: %v\n%s", err, out)
		}
		return []string{filepath.Join(dir, "gocontext")}
	case "shell":
		return []string{"bash", filepath.Join(src, "context.sh")}
	}
	t.Fatalf("no program for %s", lang)
	return nil
}

// TestExecGivesThePodsContext runs a program in each language under kwarp exec from the laptop
// and checks it sees values only the target pod has: its env var, a ConfigMap file (through
// the ConfigMap volume's symlink farm), its hostname and its service account namespace.
func TestExecGivesThePodsContext(t *testing.T) {
	ctx := kube.Context(t, 8*time.Minute)
	ns := deploy(t, ctx, "exec", "sample")
	pod, err := testenv.Env.RunningPodOf(ctx, ns, "sample")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"hello-from-the-pod", "marker=kwarp-sample-config-7f3a", pod.Name, ns, "size>0 1", "listed app.conf 1"}
	for _, lang := range []string{"shell", "c", "python", "node", "java", "go-static"} {
		t.Run(lang, func(t *testing.T) {
			if lang != "shell" && lang != "go-static" && lang != "c" {
				bin := map[string]string{"python": "python3", "node": "node", "java": "javac"}[lang]
				if _, err := exec.LookPath(bin); err != nil {
					t.Skipf("%s is not installed on this machine", bin)
				}
			}
			dir := t.TempDir()
			argv := contextProgram(t, ctx, lang, dir)
			r := kwarpOnLaptop(t, ctx, nil, append([]string{"exec", "-n", ns, "-t", "deploy/sample", "--"}, argv...)...)
			if r.code != 0 {
				t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
			}
			got := strings.Split(strings.TrimSpace(r.stdout), "\n")
			if strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Errorf("%s under kwarp printed:\n%s\nwant:\n%s\nstderr:\n%s", lang, r.stdout, strings.Join(want, "\n"), r.stderr)
			}
			if strings.Contains(r.stdout, "kwarp:") {
				t.Errorf("kwarp wrote to stdout, which is the command's: %q", r.stdout)
			}
		})
	}
	// the same program without kwarp, on the same laptop, sees none of it
	t.Run("without kwarp", func(t *testing.T) {
		out, _ := testenv.Laptop.Command(ctx, "bash", "testdata/context/context.sh").CombinedOutput()
		if strings.Contains(string(out), "hello-from-the-pod") || strings.Contains(string(out), "marker=kwarp-sample") {
			t.Fatalf("the laptop has the pod's context without kwarp; the test proves nothing:\n%s", out)
		}
	})
}

// TestExecStatusAndErrors checks the exit statuses a user's scripts rely on and the bad input
// that must stop before the command runs.
func TestExecStatusAndErrors(t *testing.T) {
	ctx := kube.Context(t, 5*time.Minute)
	ns := deploy(t, ctx, "execerr", "sample")
	dir := t.TempDir()
	badPolicy := filepath.Join(dir, "bad.hcl")
	if err := os.WriteFile(badPolicy, []byte("fs {\n  mode = \"raed\"\n}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	marker := filepath.Join(dir, "ran")
	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantStderr []string
	}{
		{"exit status passes through", []string{"exec", "-n", ns, "-t", "deploy/sample", "--", "sh", "-c", "exit 7"}, 7, nil},
		{"death by signal is 128+n", []string{"exec", "-n", ns, "-t", "deploy/sample", "--", "sh", "-c", "kill -TERM $$"}, 128 + 15, nil},
		{"command not found", []string{"exec", "-n", ns, "-t", "deploy/sample", "--", "kwarp-no-such-command"}, 127, []string{"kwarp-no-such-command", "not found"}},
		{"target that does not exist names the ones that do", []string{"exec", "-n", ns, "-t", "deploy/nope", "--", "touch", marker}, 3, []string{"nope", "sample"}},
		{"unknown container names the containers", []string{"exec", "-n", ns, "-t", "deploy/sample", "-c", "nope", "--", "touch", marker}, 3, []string{"nope", "app", "istio-proxy"}},
		{"bad target kind", []string{"exec", "-n", ns, "-t", "widget/sample", "--", "touch", marker}, 2, []string{"widget"}},
		{"unknown fs mode", []string{"exec", "-n", ns, "-t", "deploy/sample", "--fs-mode", "sideways", "--", "touch", marker}, 2, []string{"sideways"}},
		{"unknown flag", []string{"exec", "--frobnicate", "--", "touch", marker}, 2, []string{"frobnicate"}},
		{"bad policy", []string{"exec", "-n", ns, "-t", "deploy/sample", "-f", badPolicy, "--", "touch", marker}, 2, []string{"bad.hcl:2:10", `mode = "raed"`, "^", `Did you mean "read"?`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := kwarpOnLaptop(t, ctx, nil, tt.args...)
			if r.code != tt.wantCode {
				t.Errorf("exit %d, want %d\nstderr:\n%s", r.code, tt.wantCode, r.stderr)
			}
			for _, w := range tt.wantStderr {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("stderr lacks %q:\n%s", w, r.stderr)
				}
			}
			if _, err := os.Stat(marker); err == nil {
				t.Fatalf("the command ran although kwarp refused: %s exists", marker)
			}
		})
	}
}

// TestExecLeavesNoProcesses checks that after a session no plugin or launcher of kwarp's is
// left running.
func TestExecLeavesNoProcesses(t *testing.T) {
	ctx := kube.Context(t, 3*time.Minute)
	ns := deploy(t, ctx, "execclean", "sample")
	r := kwarpOnLaptop(t, ctx, nil, "exec", "-n", ns, "-t", "deploy/sample", "--", "true")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	waitGone(t, 5*time.Second, testenv.KwarpBinary(t))
}

// TestExecWriteModeWritesToThePod: in fs mode write, a file the command writes appears in the
// target container, and an existing file it appends to keeps its content.
func TestExecWriteModeWritesToThePod(t *testing.T) {
	ctx := kube.Context(t, 3*time.Minute)
	ns := deploy(t, ctx, "execwrite", "sample")
	pod, err := testenv.Env.RunningPodOf(ctx, ns, "sample")
	if err != nil {
		t.Fatal(err)
	}
	name := "/kwarp-written-" + pod.Name + ".txt"
	r := kwarpOnLaptop(t, ctx, nil, "exec", "-n", ns, "-t", "deploy/sample", "--fs-mode", "write", "--",
		"sh", "-c", "echo first > "+name+" && echo second >> "+name+" && cat "+name)
	if r.code != 0 || r.stdout != "first\nsecond\n" {
		t.Fatalf("exit %d, stdout %q (want both lines read back)\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	if _, err := os.Stat(name); err == nil {
		os.Remove(name)
		t.Fatalf("%s was written on this machine, not in the pod", name)
	}
	stdout, stderr, err := testenv.Env.Exec(ctx, ns, pod.Name, "app", []string{"/probe", "cat", name}, nil)
	if err != nil || stdout != "first\nsecond\n" {
		t.Fatalf("%s in the pod = %q (err %v, %s); want the two lines kwarp's command wrote", name, stdout, err, stderr)
	}
}

// TestExecTargetless: without a target the session runs on an agent pod of its own; the
// environment and remote files are empty by design, and kwarp says so once on stderr.
func TestExecTargetless(t *testing.T) {
	ctx := kube.Context(t, 3*time.Minute)
	ns := testenv.Env.NewNamespace(t, "targetless")
	r := kwarpOnLaptop(t, ctx, nil, "exec", "-n", ns, "--", "sh", "-c", `echo "G=${GREETING:-unset}"; cat /etc/hostname`)
	host, _ := os.Hostname()
	if r.code != 0 || r.stdout != "G=unset\n"+host+"\n" {
		t.Fatalf("exit %d stdout %q; want no pod env and this machine's hostname\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	if strings.Count(r.stderr, "targetless session") != 1 {
		t.Errorf("stderr should say once that the session is targetless:\n%s", r.stderr)
	}
	// --steal has no pod to steal from: said, not silently ignored
	r = kwarpOnLaptop(t, ctx, nil, "exec", "-n", ns, "--steal", "--", "true")
	if r.code != 0 || !strings.Contains(r.stderr, "no pod whose traffic to steal") {
		t.Errorf("targetless --steal: %s", r)
	}
}

// TestExecKilledLeavesNothing: after SIGKILL of kwarp its command, plugins and session
// directory are gone, and the agent pod is gone once its lease (agent.ttl) has passed.
func TestExecKilledLeavesNothing(t *testing.T) {
	ctx := kube.Context(t, 4*time.Minute)
	ns := deploy(t, ctx, "execkill", "sample")
	dir := t.TempDir()
	policy := filepath.Join(dir, "kwarp.hcl")
	if err := os.WriteFile(policy, []byte("agent {\n  ttl = \"2s\"\n}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	mark := "kwarp-killed-test-" + ns
	// go-plugin's unix sockets, loose in $TMPDIR unless kwarp puts them in its session's
	// directory: a killed session's must not stay behind
	socketsBefore, _ := filepath.Glob(filepath.Join(os.TempDir(), "plugin*"))
	cmd := testenv.Laptop.Command(ctx, testenv.KwarpBinary(t), "exec", "-n", ns, "-t", "deploy/sample", "-f", policy, "--",
		"sh", "-c", "cat /etc/hostname; exec sleep 300 "+mark)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// the pod's hostname on stdout: the session is up and the command runs
	buf := make([]byte, 256)
	if n, err := stdout.Read(buf); err != nil || !strings.HasPrefix(string(buf[:n]), "sample-") {
		t.Fatalf("first output %q, err %v", buf[:n], err)
	}
	kwarpPID := findPID(t, testenv.KwarpBinary(t)+" exec")
	if err := syscall.Kill(kwarpPID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	waitGone(t, 5*time.Second, "sleep "+mark)
	waitGone(t, 5*time.Second, testenv.KwarpBinary(t)+" plugin")
	if left, _ := filepath.Glob(filepath.Join(os.TempDir(), fmt.Sprintf("kwarp-session-%d-*", kwarpPID))); len(left) > 0 {
		// a later session removes a killed session's directory
		r := kwarpOnLaptop(t, ctx, nil, "exec", "-n", ns, "-t", "deploy/sample", "--", "true")
		if r.code != 0 {
			t.Fatalf("second session: %s", r)
		}
		if left, _ := filepath.Glob(filepath.Join(os.TempDir(), fmt.Sprintf("kwarp-session-%d-*", kwarpPID))); len(left) > 0 {
			t.Errorf("session directory of the killed kwarp left behind: %v", left)
		}
	}
	socketsAfter, _ := filepath.Glob(filepath.Join(os.TempDir(), "plugin*"))
	for _, s := range socketsAfter {
		if !slices.Contains(socketsBefore, s) {
			t.Errorf("a plugin socket left in %s: %s", os.TempDir(), s)
		}
	}
	deadline := time.Now().Add(90 * time.Second)
	for {
		pods, err := testenv.Env.PodsOf(ctx, ns, "app.kubernetes.io/name=kwarp-agent")
		if err != nil {
			t.Fatal(err)
		}
		if len(pods) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("agent pod %s still there 90s after kwarp was killed (lease 2s)", pods[0].Name)
		}
		time.Sleep(time.Second)
	}
}

// findPID is the pid of the one process whose command line starts with prefix.
func findPID(t *testing.T, prefix string) int {
	t.Helper()
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, _ := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if strings.HasPrefix(strings.ReplaceAll(string(b), "\x00", " "), prefix) {
			return pid
		}
	}
	t.Fatalf("no process %q", prefix)
	return 0
}

// waitGone waits until no process's command line contains s.
func waitGone(t *testing.T, d time.Duration, s string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		out, _ := exec.Command("pgrep", "-f", s).Output()
		if strings.TrimSpace(string(out)) == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("process %q still running (pids %s)", s, strings.Fields(string(out)))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestExecSurvivesLaunchersThatStripTheEnvironment: a child exec'd without the pod's variables
// gets them back (only those; PATH stays the child's own), and a value the launcher set itself
// wins.
func TestExecSurvivesLaunchersThatStripTheEnvironment(t *testing.T) {
	ctx := kube.Context(t, 3*time.Minute)
	ns := deploy(t, ctx, "execenv", "sample")
	script := `env -i /bin/sh -c 'echo "1 $GREETING ${HOME:-nohome}"'
env -i GREETING=mine /bin/sh -c 'echo "2 $GREETING $DATABASE_URL"'
python3 -c 'import subprocess; subprocess.run(["/bin/sh", "-c", "echo 3 $GREETING"], env={})'`
	r := kwarpOnLaptop(t, ctx, nil, "exec", "-n", ns, "-t", "deploy/sample", "--", "bash", "-c", script)
	want := "1 hello-from-the-pod nohome\n2 mine postgres://db.sample.svc:5432/app\n3 hello-from-the-pod\n"
	if r.code != 0 || r.stdout != want {
		t.Fatalf("exit %d, stdout:\n%s\nwant:\n%s\nstderr: %s", r.code, r.stdout, want, r.stderr)
	}
}

// TestExecChdirIntoARemoteDirectory: cd into a directory only the pod has, then relative
// paths, ls -l and cd .. behave as they would in the pod.
func TestExecChdirIntoARemoteDirectory(t *testing.T) {
	ctx := kube.Context(t, 3*time.Minute)
	ns := deploy(t, ctx, "execcd", "sample")
	script := `cd /etc/sample && grep ^marker app.conf && ls -l | grep -c ' app.conf ->' && cd .. && ls -d sample && cd sample && pwd`
	r := kwarpOnLaptop(t, ctx, nil, "exec", "-n", ns, "-t", "deploy/sample", "--", "sh", "-c", script)
	want := "marker=kwarp-sample-config-7f3a\n1\nsample\n/etc/sample\n"
	if r.code != 0 || r.stdout != want {
		t.Fatalf("exit %d, stdout:\n%s\nwant:\n%s\nstderr: %s", r.code, r.stdout, want, r.stderr)
	}
}

// TestExecEphemeralAgent: with --agent-ephemeral the agent runs as an ephemeral container in the
// target pod (no Job), and the session gets the same context.
func TestExecEphemeralAgent(t *testing.T) {
	ctx := kube.Context(t, 3*time.Minute)
	ns := deploy(t, ctx, "execeph", "sample")
	r := kwarpOnLaptop(t, ctx, nil, "exec", "-n", ns, "-t", "deploy/sample", "--agent-ephemeral", "--",
		"sh", "-c", `echo "$GREETING"; grep ^marker /etc/sample/app.conf`)
	if r.code != 0 || r.stdout != "hello-from-the-pod\nmarker=kwarp-sample-config-7f3a\n" {
		t.Fatalf("exit %d, stdout %q\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	pod, err := testenv.Env.RunningPodOf(ctx, ns, "sample")
	if err != nil {
		t.Fatal(err)
	}
	if len(pod.Spec.EphemeralContainers) != 1 {
		t.Errorf("target pod has %d ephemeral containers, want the agent's", len(pod.Spec.EphemeralContainers))
	}
	jobs, err := testenv.Env.Client.BatchV1().Jobs(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(jobs.Items) != 0 {
		t.Errorf("an ephemeral session created Job %s", jobs.Items[0].Name)
	}
}

// TestExecPolicyFile: .kwarp/kwarp.hcl in the working directory is read without -f; its target
// block works instead of -t, its env and fs blocks apply, and flags win over it.
func TestExecPolicyFile(t *testing.T) {
	ctx := kube.Context(t, 3*time.Minute)
	ns := deploy(t, ctx, "execpolicy", "sample")
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, ".kwarp"), 0o755); err != nil {
		t.Fatal(err)
	}
	policy := fmt.Sprintf(`target "deployment" "sample" {
  namespace = %q
}
env {
  exclude  = ["DATABASE_URL"]
  override = { LOG_LEVEL = "debug" }
}
fs {
  not_found = ["/etc/sample/**"]
}
`, ns)
	if err := os.WriteFile(filepath.Join(dir, ".kwarp", "kwarp.hcl"), []byte(policy), 0o644); err != nil {
		t.Fatal(err)
	}
	script := `echo "$GREETING ${DATABASE_URL:-excluded} $LOG_LEVEL"; cat /etc/sample/app.conf >/dev/null 2>&1 || echo not-found; cat /etc/hostname`
	run := func(args ...string) kwarpResult { return kwarpOnLaptopIn(t, ctx, dir, nil, args...) }
	pod, err := testenv.Env.RunningPodOf(ctx, ns, "sample")
	if err != nil {
		t.Fatal(err)
	}
	r := run("exec", "--", "sh", "-c", script)
	want := "hello-from-the-pod excluded debug\nnot-found\n" + pod.Name + "\n"
	if r.code != 0 || r.stdout != want {
		t.Fatalf("with .kwarp/kwarp.hcl: exit %d stdout %q, want %q\nstderr: %s", r.code, r.stdout, want, r.stderr)
	}
	// a flag wins over the file: --fs-mode local keeps every file on this machine
	r = run("exec", "--fs-mode", "local", "--", "sh", "-c", "cat /etc/hostname")
	host, _ := os.Hostname()
	if r.code != 0 || strings.TrimSpace(r.stdout) != host {
		t.Fatalf("--fs-mode local over the file: exit %d stdout %q, want this machine's hostname %q\nstderr: %s", r.code, r.stdout, host, r.stderr)
	}
}
