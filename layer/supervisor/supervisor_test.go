package supervisor_test

import (
	"bufio"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kwarp-dev/kwarp/layer/launcher"
	"github.com/kwarp-dev/kwarp/layer/seccomp"
	"golang.org/x/sys/unix"
)

// expect compares a probe's output line by line; errors compare case-insensitively (Go and C
// spell strerror differently).
func expect(t *testing.T, got map[string]string, want map[string]string, raw string) {
	t.Helper()
	for k, w := range want {
		g, ok := got[k]
		switch {
		case !ok:
			t.Errorf("%s: no output line\nall output:\n%s", k, raw)
		case strings.HasPrefix(w, "error:") && strings.EqualFold(g, w):
		case g != w:
			t.Errorf("%s:\n got %s\nwant %s", k, g, w)
		}
	}
}

// notFoundFixture is a local file that exists but that the policy hides.
func notFoundFixture(t *testing.T, fs *fakeFS) string {
	p := filepath.Join(t.TempDir(), "credentials")
	if err := os.WriteFile(p, []byte("local secret"), 0o644); err != nil {
		t.Fatal(err)
	}
	fs.notFound[p] = true
	return p
}

func TestStaticGoProgram(t *testing.T) {
	requireLayer(t)
	prog := goProbe(t)
	fs := newFakeFS(t.TempDir())
	local, localContent := localFixture(t)
	hidden := notFoundFixture(t, fs)

	r := runUnder(t, fs, []string{prog,
		"read:/kwarp-remote/etc/app.conf",
		"read:/kwarp-remote/etc/link",
		"stat:/kwarp-remote/etc/app.conf",
		"stat:/kwarp-remote/etc/link",
		"lstat:/kwarp-remote/etc/link",
		"stat:/kwarp-remote/etc",
		"readlink:/kwarp-remote/etc/link",
		"readlink:/kwarp-remote/etc/app.conf",
		"readdir:/kwarp-remote/etc",
		"readdir:/kwarp-remote/etc/sub",
		"access:/kwarp-remote/etc/app.conf",
		"access:/kwarp-remote/etc/secret",
		"read:/kwarp-remote/etc/secret",
		"read:/kwarp-remote/etc/broken",
		"read:/kwarp-remote/etc/panic",
		"read:/kwarp-remote/etc/missing",
		"parallel:/kwarp-remote/etc/app.conf",
		"stat:/kwarp-remote/etc/missing",
		"read:" + local,
		"read:" + hidden,
		"stat:" + hidden,
	}, runOpts{})
	if r.code() != 0 {
		t.Fatalf("exit %v; stderr: %s", r.state, r.stderr)
	}
	expect(t, lines(r.stdout), map[string]string{
		"read:/kwarp-remote/etc/app.conf":     `"name=checkout\nmode=staging\n"`,
		"read:/kwarp-remote/etc/link":         `"name=checkout\nmode=staging\n"`,
		"stat:/kwarp-remote/etc/app.conf":     "mode=-rw-r----- size=27 uid=1234 mtime=1000000000",
		"stat:/kwarp-remote/etc/link":         "mode=-rw-r----- size=27 uid=1234 mtime=1000000000",
		"lstat:/kwarp-remote/etc/link":        "mode=Lrwxrwxrwx size=8 uid=1234 mtime=1000000000",
		"stat:/kwarp-remote/etc":              "mode=drwxr-xr-x size=0 uid=1234 mtime=1000000000",
		"readlink:/kwarp-remote/etc/link":     "app.conf",
		"readlink:/kwarp-remote/etc/app.conf": errnoText(unix.EINVAL),
		"readdir:/kwarp-remote/etc":           "app.conf,broken,link,panic,secret,sub",
		"readdir:/kwarp-remote/etc/sub":       "deeper,nested.txt",
		"access:/kwarp-remote/etc/app.conf":   "ok",
		"access:/kwarp-remote/etc/secret":     errnoText(unix.EACCES),
		"read:/kwarp-remote/etc/secret":       errnoText(unix.EACCES),
		"read:/kwarp-remote/etc/broken":       errnoText(unix.EIO),
		"read:/kwarp-remote/etc/panic":        errnoText(unix.EIO),
		"parallel:/kwarp-remote/etc/app.conf": "ok 27",
		"read:/kwarp-remote/etc/missing":      errnoText(unix.ENOENT),
		"stat:/kwarp-remote/etc/missing":      errnoText(unix.ENOENT),
		"read:" + local:                       strings.ReplaceAll(strings.ReplaceAll(`"`+localContent+`"`, "\n", `\n`), "\t", `\t`),
		"read:" + hidden:                      errnoText(unix.ENOENT),
		"stat:" + hidden:                      errnoText(unix.ENOENT),
	}, r.stdout)
	if r.serveErr != nil {
		t.Errorf("Serve: %v", r.serveErr)
	}
	st := r.stats
	if st.Remote == 0 || st.Local == 0 || st.NotFound != 2 || st.Exec != 1 || st.Failed == 0 {
		t.Errorf("stats do not add up: %+v", st)
	}
	t.Logf("stats: %+v", st)
}

func TestGlibcProgram(t *testing.T) {
	requireLayer(t)
	prog := cProbe(t)
	fs := newFakeFS(t.TempDir())
	local, localContent := localFixture(t)
	hidden := notFoundFixture(t, fs)
	localLine := strings.ReplaceAll(localContent, "\n", "|")

	r := runUnder(t, fs, []string{prog,
		"open:/kwarp-remote/etc/app.conf",
		"opennc:/kwarp-remote/etc/app.conf",
		"openat2:/kwarp-remote/etc/app.conf",
		"creat:/kwarp-remote/etc/new",
		"fchdir:/kwarp-remote/etc:sub/nested.txt",
		"fopen:/kwarp-remote/etc/app.conf",
		"stat:/kwarp-remote/etc/app.conf",
		"lstat:/kwarp-remote/etc/link",
		"statx:/kwarp-remote/etc/app.conf",
		"readlink:/kwarp-remote/etc/link",
		"readlink:/kwarp-remote/etc/link:3",
		"readdir:/kwarp-remote/etc",
		"access:/kwarp-remote/etc/secret",
		"open:/kwarp-remote/etc/secret",
		"openat:/kwarp-remote/etc:app.conf",
		"openat:/kwarp-remote/etc:sub/nested.txt",
		"openat:/kwarp-remote/etc/sub:deeper/leaf",
		"openat:/etc:hostname",
		"open:" + local,
		"open:" + hidden,
		"cdread:/:kwarp-remote/etc/app.conf",
		"cdread:/kwarp-remote:etc/app.conf",
		"iouring",
		"x32",
	}, runOpts{})
	if r.code() != 0 {
		t.Fatalf("exit %v; stderr: %s", r.state, r.stderr)
	}
	expect(t, lines(r.stdout), map[string]string{
		"open:/kwarp-remote/etc/app.conf":          "cloexec=1 name=checkout|mode=staging|",
		"fopen:/kwarp-remote/etc/app.conf":         "name=checkout",
		"stat:/kwarp-remote/etc/app.conf":          "mode=100640 size=27 uid=1234 mtime=1000000000",
		"lstat:/kwarp-remote/etc/link":             "mode=120777 size=8 uid=1234 mtime=1000000000",
		"statx:/kwarp-remote/etc/app.conf":         "mode=100640 size=27 mtime=1000000000 has_size=1 has_ino=1", // the kernel fills every basic field
		"readlink:/kwarp-remote/etc/link":          "app.conf n=8",
		"readlink:/kwarp-remote/etc/link:3":        "app n=3", // truncated to bufsiz
		"readdir:/kwarp-remote/etc":                "app.conf,broken,link,panic,secret,sub",
		"access:/kwarp-remote/etc/secret":          errnoText(unix.EACCES),
		"open:/kwarp-remote/etc/secret":            errnoText(unix.EACCES),
		"openat:/kwarp-remote/etc:app.conf":        "size=27 name=checkout|mode=staging|",
		"openat:/kwarp-remote/etc:sub/nested.txt":  "size=7 nested|",
		"openat:/kwarp-remote/etc/sub:deeper/leaf": "size=5 leaf|",
		"openat:/etc:hostname":                     "size=" + strconv.Itoa(len(localContent)) + " " + localLine,
		"open:" + local:                            "cloexec=1 " + localLine,
		"open:" + hidden:                           errnoText(unix.ENOENT),
		"cdread:/:kwarp-remote/etc/app.conf":       "name=checkout|mode=staging|",
		"cdread:/kwarp-remote:etc/app.conf":        "error: chdir: " + unix.ENOENT.Error(),
		"iouring":                                  errnoText(unix.ENOSYS),
		"x32":                                      errnoText(unix.ENOSYS),
	}, r.stdout)
	t.Logf("stats: %+v", r.stats)
}

func TestShellPipeline(t *testing.T) {
	requireLayer(t)
	// bash, cat and tr are separate processes: the filter is inherited across fork and exec.
	r := runUnder(t, newFakeFS(t.TempDir()), []string{"bash", "-c", "cat /kwarp-remote/etc/app.conf | tr a-z A-Z"}, runOpts{})
	if r.code() != 0 {
		t.Fatalf("exit %v; stderr: %s", r.state, r.stderr)
	}
	if want := strings.ToUpper(appConf); r.stdout != want {
		t.Errorf("stdout %q, want %q", r.stdout, want)
	}
	if r.stats.Exec < 3 {
		t.Errorf("saw %d execs, want bash, cat and tr at least: %+v", r.stats.Exec, r.stats)
	}
}

func TestRelativePathAfterCd(t *testing.T) {
	requireLayer(t)
	fs := newFakeFS(t.TempDir())
	r := runUnder(t, fs, []string{"bash", "-c", "cd / && cat kwarp-remote/etc/../etc/app.conf && cd /etc && cat ../kwarp-remote/etc/sub/nested.txt"}, runOpts{})
	if r.code() != 0 {
		t.Fatalf("exit %v; stderr: %s", r.state, r.stderr)
	}
	if want := appConf + "nested\n"; r.stdout != want {
		t.Errorf("stdout %q, want %q", r.stdout, want)
	}
}

func TestPython(t *testing.T) {
	requireLayer(t)
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 not found")
	}
	// pyenv and similar put a shell shim first in PATH; run the interpreter itself.
	out, err := exec.Command(py, "-c", "import sys; print(sys.executable)").Output()
	if err != nil {
		t.Skipf("python3 does not run: %v", err)
	}
	py = strings.TrimSpace(string(out))
	script := `import os
print(open("/kwarp-remote/etc/app.conf").read(), end="")
print(",".join(sorted(os.listdir("/kwarp-remote/etc"))))
print(os.path.exists("/kwarp-remote/etc/missing"), os.path.isdir("/kwarp-remote/etc/sub"))
print(sorted(e.name for e in os.scandir("/kwarp-remote/etc/sub")))
`
	r := runUnder(t, newFakeFS(t.TempDir()), []string{py, "-S", "-c", script}, runOpts{})
	if r.code() != 0 {
		t.Fatalf("exit %v; stderr: %s", r.state, r.stderr)
	}
	want := appConf + "app.conf,broken,link,panic,secret,sub\nFalse True\n['deeper', 'nested.txt']\n"
	if r.stdout != want {
		t.Errorf("stdout %q, want %q", r.stdout, want)
	}
	t.Logf("python: %v, stats %+v", r.elapsed, r.stats)
}

func TestExitStatus(t *testing.T) {
	requireLayer(t)
	notExec := filepath.Join(t.TempDir(), "script")
	if err := os.WriteFile(notExec, []byte("#!/bin/sh\necho hi\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		argv     []string
		code     int
		signal   syscall.Signal
		stderrRe string
	}{
		{"exit code", []string{"sh", "-c", "exit 7"}, 7, 0, ""},
		{"success", []string{"true"}, 0, 0, ""},
		{"command not found", []string{"kwarp-no-such-command"}, 127, 0, "kwarp: kwarp-no-such-command: command not found\n"},
		{"missing path", []string{"/nonexistent/cmd"}, 127, 0, "kwarp: /nonexistent/cmd: No such file or directory\n"},
		{"not executable", []string{notExec}, 126, 0, "kwarp: " + notExec + ": Permission denied\n"},
		{"directory", []string{"/tmp"}, 126, 0, "kwarp: /tmp: Is a directory\n"},
		{"killed by a signal", []string{"sh", "-c", "kill -TERM $$"}, -1, syscall.SIGTERM, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runUnder(t, newFakeFS(t.TempDir()), tt.argv, runOpts{})
			if got := r.code(); got != tt.code {
				t.Errorf("exit code %d, want %d (stderr %q)", got, tt.code, r.stderr)
			}
			ws := r.state.Sys().(syscall.WaitStatus)
			if tt.signal != 0 && (!ws.Signaled() || ws.Signal() != tt.signal) {
				t.Errorf("status %v, want killed by %v", r.state, tt.signal)
			}
			if tt.stderrRe != "" && r.stderr != tt.stderrRe {
				t.Errorf("stderr %q, want %q", r.stderr, tt.stderrRe)
			}
		})
	}
}

func TestOnExec(t *testing.T) {
	requireLayer(t)
	var mu sync.Mutex
	type execCall struct {
		pid        int
		path       string
		argv, envp []string
	}
	var calls []execCall
	r := runUnder(t, newFakeFS(t.TempDir()), []string{"bash", "-c", "cd /usr && exec bin/env -i KWARP_STRIPPED=1 /bin/true one two"}, runOpts{
		env: []string{"KWARP_MARKER=hello"},
		onExec: func(pid int, path string, argv, envp []string) {
			mu.Lock()
			defer mu.Unlock()
			calls = append(calls, execCall{pid, path, argv, envp})
		},
	})
	if r.code() != 0 {
		t.Fatalf("exit %v; stderr: %s", r.state, r.stderr)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(calls) != 3 {
		t.Fatalf("OnExec saw %d execs, want bash, env, true: %+v", len(calls), calls)
	}
	hasEnv := func(envp []string, kv string) bool {
		for _, e := range envp {
			if e == kv {
				return true
			}
		}
		return false
	}
	// bash, found in PATH by the launcher: argv as given, the session's env.
	if c := calls[0]; !strings.HasSuffix(c.path, "/bash") || c.argv[0] != "bash" || !hasEnv(c.envp, "KWARP_MARKER=hello") {
		t.Errorf("first exec %+v", c)
	}
	// env, a relative path resolved against bash's cwd; argv read from bash's memory.
	if c := calls[1]; c.path != "/usr/bin/env" || strings.Join(c.argv, " ") != "bin/env -i KWARP_STRIPPED=1 /bin/true one two" {
		t.Errorf("second exec %+v", c)
	}
	// true, run by env -i: the stripped environment is what the hook sees.
	if c := calls[2]; c.path != "/bin/true" || strings.Join(c.envp, " ") != "KWARP_STRIPPED=1" || c.pid != calls[1].pid {
		t.Errorf("third exec %+v (env's pid %d)", c, calls[1].pid)
	}
}

// TestSlowRemoteCallDoesNotStallOthers: while one thread waits for a Handler that has not
// answered, the process's other threads keep going, local and remote calls alike.
func TestSlowRemoteCallDoesNotStallOthers(t *testing.T) {
	requireLayer(t)
	prog := goProbe(t)
	fs := newFakeFS(t.TempDir())
	r := runUnder(t, fs, []string{prog, "concurrent:/kwarp-remote/block/gate:/kwarp-remote/etc/app.conf"}, runOpts{
		during: func(cmd *exec.Cmd, stop func() error) {
			defer close(fs.gate)
			deadline := time.Now().Add(30 * time.Second)
			for !strings.Contains(cmd.Stdout.(interface{ String() string }).String(), "fast done") {
				if time.Now().After(deadline) {
					t.Error("the other thread's calls did not go through while one call waited")
					return
				}
				time.Sleep(10 * time.Millisecond)
			}
		},
	})
	if r.code() != 0 {
		t.Fatalf("exit %v; stderr: %s", r.state, r.stderr)
	}
	if got := lines(r.stdout)["concurrent:/kwarp-remote/block/gate:/kwarp-remote/etc/app.conf"]; got != `slow "through the gate"` {
		t.Errorf("slow read: %q", got)
	}
}

// TestPanickingHook: a hook (or Handler) that panics fails that one call with EIO; the
// supervisor goes on serving the tree.
func TestPanickingHook(t *testing.T) {
	requireLayer(t)
	r := runUnder(t, newFakeFS(t.TempDir()), []string{"bash", "-c", "/bin/true; echo after $?; cat /kwarp-remote/etc/sub/nested.txt"}, runOpts{
		onExec: func(pid int, path string, argv, envp []string) {
			if path == "/bin/true" {
				panic("hook bug")
			}
		},
	})
	if r.code() != 0 {
		t.Fatalf("exit %v; stderr: %s", r.state, r.stderr)
	}
	if want := "after 126\nnested\n"; r.stdout != want {
		t.Errorf("stdout %q, want %q (stderr %q)", r.stdout, want, r.stderr)
	}
	if !strings.Contains(r.stderr, "Input/output error") {
		t.Errorf("stderr %q: bash should report the failed exec", r.stderr)
	}
}

// TestSlowHandlerWithSignals is the livelock guard: a 2 ms interval timer interrupts a process
// whose open the Handler answers in 150 ms. Without WAIT_KILLABLE_RECV every signal aborts the
// notification and restarts the call, which then never completes.
func TestSlowHandlerWithSignals(t *testing.T) {
	feat := requireLayer(t)
	if !feat.WaitKillableRecv {
		t.Skip("kernel without WAIT_KILLABLE_RECV: the livelock this test guards against is expected there")
	}
	prog := cProbe(t)
	fs := newFakeFS(t.TempDir())
	r := runUnder(t, fs, []string{prog, "alarmopen:/kwarp-remote/slow/app.conf"}, runOpts{})
	if r.code() != 0 {
		t.Fatalf("exit %v; stderr: %s", r.state, r.stderr)
	}
	expect(t, lines(r.stdout), map[string]string{
		"alarmopen:/kwarp-remote/slow/app.conf": "alarms>0=1 name=checkout|mode=staging|",
	}, r.stdout)
	if n := fs.opens.Load(); n != 1 {
		t.Errorf("Handler.Open called %d times, want 1 (the call was restarted)", n)
	}
}

// TestKillWhileWaiting: a Handler that never answers leaves the process waiting, but SIGKILL
// still ends it at once. A signal the program handles is only delivered once the call is
// answered: with WAIT_KILLABLE_RECV the wait is killable, not interruptible. Stopping the
// supervisor cancels the Handler, the call fails, and the signal lands.
func TestKillWhileWaiting(t *testing.T) {
	feat := requireLayer(t)
	t.Run("SIGKILL", func(t *testing.T) {
		prog := goProbe(t)
		fs := newFakeFS(t.TempDir())
		var killed time.Time
		r := runUnder(t, fs, []string{prog, "read:/kwarp-remote/block/forever"}, runOpts{
			during: func(cmd *exec.Cmd, stop func() error) {
				waitBlocked(t, fs)
				killed = time.Now()
				cmd.Process.Kill()
			},
		})
		ws := r.state.Sys().(syscall.WaitStatus)
		if !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
			t.Errorf("status %v, want killed by SIGKILL", r.state)
		}
		if d := r.exited.Sub(killed); d > 5*time.Second {
			t.Errorf("the process took %v to die", d)
		}
	})
	t.Run("handled SIGTERM", func(t *testing.T) {
		if !feat.WaitKillableRecv {
			t.Skip("without WAIT_KILLABLE_RECV the signal interrupts the wait at once")
		}
		// A single-threaded C program: the signal can only go to the waiting thread. (In a
		// multi-threaded program another thread may take it, and Go's handler then kills
		// the process by re-raising it with the default action.)
		prog := cProbe(t)
		fs := newFakeFS(t.TempDir())
		r := runUnder(t, fs, []string{prog, "termopen:/kwarp-remote/block/forever"}, runOpts{
			during: func(cmd *exec.Cmd, stop func() error) {
				waitBlocked(t, fs)
				cmd.Process.Signal(syscall.SIGTERM)
				time.Sleep(300 * time.Millisecond)
				if st := procState(cmd.Process.Pid); st == "Z" || st == "" {
					t.Errorf("the handler ran while the call was still waiting (state %q)", st)
				}
				stop()
			},
		})
		if r.code() != 42 {
			t.Errorf("status %v, want exit 42 from the SIGTERM handler once the call was answered", r.state)
		}
	})
}

func waitBlocked(t *testing.T, fs *fakeFS) {
	select {
	case <-fs.blocked:
	case <-time.After(30 * time.Second):
		t.Fatal("the Handler was never called")
	}
}

// TestSupervisorStopped documents the kernel's behaviour the CLI must plan for: once the
// supervisor has stopped, trapped calls fail with ENOSYS.
func TestSupervisorStopped(t *testing.T) {
	requireLayer(t)
	prog := cProbe(t)
	local, _ := localFixture(t)
	pr, pw := io.Pipe()
	var stdoutSeen string
	r := runUnder(t, newFakeFS(t.TempDir()), []string{prog, "open:/kwarp-remote/etc/app.conf", "wait", "open:" + local}, runOpts{
		stdin: pr,
		during: func(cmd *exec.Cmd, stop func() error) {
			// The probe prints "wait waiting" once the first open is done.
			deadline := time.Now().Add(30 * time.Second)
			for time.Now().Before(deadline) {
				if s := cmd.Stdout.(interface{ String() string }).String(); strings.Contains(s, "waiting") {
					stdoutSeen = s
					break
				}
				time.Sleep(10 * time.Millisecond)
			}
			if err := stop(); err != context.Canceled {
				t.Errorf("Serve after cancel: %v, want context.Canceled", err)
			}
			pw.Write([]byte("go\n"))
			pw.Close()
		},
	})
	if !strings.Contains(stdoutSeen, "cloexec=1 name=checkout") {
		t.Errorf("first open before the stop: %q", stdoutSeen)
	}
	if got := lines(r.stdout)["open:"+local]; !strings.EqualFold(got, errnoText(unix.ENOSYS)) {
		t.Errorf("open after the supervisor stopped: %q, want ENOSYS\n%s", got, r.stdout)
	}
}

func TestForeignArchitectureIsKilled(t *testing.T) {
	requireLayer(t)
	if !strings.HasPrefix(seccompArch(), "x86_64") {
		t.Skip("int 0x80 is an x86 test")
	}
	prog := cProbe(t)
	r := runUnder(t, newFakeFS(t.TempDir()), []string{prog, "int80"}, runOpts{})
	ws := r.state.Sys().(syscall.WaitStatus)
	if !ws.Signaled() || ws.Signal() != syscall.SIGSYS {
		t.Errorf("status %v (stdout %q), want killed by SIGSYS", r.state, r.stdout)
	}
}

func seccompArch() string {
	var u unix.Utsname
	unix.Uname(&u)
	return unix.ByteSliceToString(u.Machine[:])
}

// startBareLauncher starts the test launcher for `true` with no supervisor behind it, its
// stderr kept.
func startBareLauncher(t *testing.T) (*exec.Cmd, *launcher.Handoff, *strings.Builder) {
	t.Helper()
	requireLayer(t)
	cmd := exec.Command(os.Args[0], "--", "true")
	cmd.Env = append(os.Environ(), roleLaunch+"=1")
	stderr := &strings.Builder{}
	cmd.Stderr = stderr
	ho, err := launcherPrepare(cmd)
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd, ho, stderr
}

func TestFilterRefusedByKernel(t *testing.T) {
	cmd, ho, _ := startBareLauncher(t)
	// A jump past the end: the kernel's verifier refuses it with EINVAL.
	bad := &seccomp.Filter{Program: []unix.SockFilter{{Code: unix.BPF_JMP | unix.BPF_JA, K: 5}}}
	_, err := ho.Listener(context.Background(), bad, false)
	ho.Close()
	cmd.Wait()
	if err == nil || !strings.Contains(err.Error(), "invalid argument") {
		t.Errorf("Listener: %v, want the kernel's EINVAL", err)
	}
	if cmd.ProcessState.ExitCode() != 3 {
		t.Errorf("launcher exit %v, want 3", cmd.ProcessState)
	}
}

func TestLauncherStartedEarlyGetsTheEnvironmentSent(t *testing.T) {
	big := strings.Repeat("x", 40<<10) // more than one message of the handoff
	r := runUnder(t, newFakeFS(t.TempDir()), []string{"/bin/sh", "-c", `echo "$KWARP_TEST_SENT|$KWARP_TEST_OWN|${#KWARP_TEST_BIG}"`}, runOpts{
		trap:    []string{"openat"},
		env:     []string{"KWARP_TEST_OWN=the-launcher's-own"},
		sendEnv: []string{"PATH=/usr/bin:/bin", "KWARP_TEST_SENT=sent", "KWARP_TEST_BIG=" + big},
	})
	if r.state.ExitCode() != 0 {
		t.Fatalf("exit %v, stderr %s", r.state, r.stderr)
	}
	if got, want := strings.TrimSpace(r.stdout), "sent||40960"; got != want {
		t.Fatalf("the command printed %q, want %q: it must get the environment sent, not the launcher's", got, want)
	}
}

func TestLauncherAbandonedBeforeTheSetupExitsQuietly(t *testing.T) {
	cmd, ho, stderr := startBareLauncher(t)
	// the session failed before its command was to run: kwarp has said why, the launcher
	// must not add a line of its own
	ho.Close()
	cmd.Wait()
	if cmd.ProcessState.ExitCode() != 3 || stderr.Len() != 0 {
		t.Fatalf("abandoned launcher: %v, stderr %q; want exit 3 and nothing printed", cmd.ProcessState, stderr.String())
	}
}

var _ = bufio.NewReader
