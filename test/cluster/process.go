package cluster

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// component is one daemon of the cluster.
type component struct {
	name  string
	args  []string // args[0] is the executable
	ports []int    // TCP ports it listens on, checked free before it starts
}

// daemons tracks the daemons this process started, so an early exit is seen at once (and the
// child reaped) instead of after a readiness timeout.
type daemons struct {
	mu     sync.Mutex
	exited map[string]error
}

func newDaemons() *daemons { return &daemons{exited: map[string]error{}} }

// exitErr reports whether a daemon this process started has exited, and how.
func (d *daemons) exitErr(name string) (bool, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	err, ok := d.exited[name]
	return ok, err
}

// whyNotRunning describes a daemon that is gone, with its exit status when this process
// started it (the reaper goroutine may record it a moment after the process died).
func (d *daemons) whyNotRunning(name string) string {
	for i := 0; i < 20; i++ {
		if exited, err := d.exitErr(name); exited {
			return fmt.Sprintf("exited while starting (%v)", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return "is not running"
}

// running reports whether the daemon recorded in the pid file is alive and is still the same
// program (a recycled pid running something else does not count).
func (c Config) running(name string) (int, bool) {
	b, err := os.ReadFile(c.pidPath(name))
	if err != nil {
		return 0, false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, false
	}
	return pid, processAlive(pid, c.pidExe(name))
}

// pidExe is the executable recorded next to the pid.
func (c Config) pidExe(name string) string {
	b, _ := os.ReadFile(c.pidPath(name) + ".exe")
	return strings.TrimSpace(string(b))
}

func processAlive(pid int, exe string) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// state is the field after "(comm)"; a zombie has exited already
	if i := bytes.LastIndexByte(stat, ')'); i > 0 && i+2 < len(stat) && stat[i+2] == 'Z' {
		return false
	}
	if exe == "" {
		return true
	}
	link, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	return err == nil && strings.TrimSuffix(link, " (deleted)") == exe
}

// start runs a component as a daemon in its own session, output to its log, pid recorded. A
// component that is already running is left alone (Up is idempotent).
func (c Config) start(d *daemons, comp component) error {
	if _, ok := c.running(comp.name); ok {
		return nil
	}
	exe, err := exec.LookPath(comp.args[0])
	if err != nil {
		return fmt.Errorf("%s: executable %s not found: %w", comp.name, comp.args[0], err)
	}
	// /proc/PID/exe names the resolved file; record that, or a symlinked tool never matches
	if exe, err = filepath.EvalSymlinks(exe); err != nil {
		return fmt.Errorf("%s: %w", comp.name, err)
	}
	for _, p := range comp.ports {
		if err := portFree(p); err != nil {
			return fmt.Errorf("%s needs TCP port %d, which another process holds (find it with: ss -ltnp 'sport = :%d'): %w", comp.name, p, p, err)
		}
	}
	for _, dir := range []string{filepath.Dir(c.LogPath(comp.name)), filepath.Dir(c.pidPath(comp.name))} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
	}
	logf, err := os.OpenFile(c.LogPath(comp.name), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("%s: open log: %w", comp.name, err)
	}
	defer logf.Close()
	fmt.Fprintf(logf, "==== %s started %s: %s\n", comp.name, time.Now().Format(time.RFC3339), strings.Join(comp.args, " "))
	cmd := exec.Command(exe, comp.args[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// its own session: the daemon outlives `testcluster up` and a Ctrl-C in its terminal
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w (log: %s)", comp.name, err, c.LogPath(comp.name))
	}
	if err := os.WriteFile(c.pidPath(comp.name), []byte(strconv.Itoa(cmd.Process.Pid)), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(c.pidPath(comp.name)+".exe", []byte(exe), 0o644); err != nil {
		return err
	}
	go func() {
		err := cmd.Wait()
		if err == nil {
			err = errors.New("exited with status 0")
		}
		d.mu.Lock()
		d.exited[comp.name] = err
		d.mu.Unlock()
	}()
	return nil
}

// stop ends a component: SIGTERM, then SIGKILL after grace.
func (c Config) stop(name string, grace time.Duration) {
	pid, ok := c.running(name)
	if ok {
		killWait(pid, grace)
	}
	os.Remove(c.pidPath(name))
	os.Remove(c.pidPath(name) + ".exe")
}

func killWait(pid int, grace time.Duration) {
	_ = syscall.Kill(pid, syscall.SIGTERM)
	deadline := time.Now().Add(grace)
	for time.Now().Before(deadline) {
		if !processAlive(pid, "") {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
	for i := 0; i < 100 && processAlive(pid, ""); i++ {
		time.Sleep(20 * time.Millisecond)
	}
}

func portFree(port int) error {
	l, err := net.Listen("tcp", fmt.Sprintf(":%d", port))
	if err != nil {
		return err
	}
	return l.Close()
}

// logTail returns the last n lines of a component's log, for error messages.
func (c Config) logTail(name string, n int) string {
	b, err := os.ReadFile(c.LogPath(name))
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// ComponentError says which component failed and where to look.
type ComponentError struct {
	Component string
	Log       string
	Err       error
	Tail      string
}

func (e *ComponentError) Error() string {
	msg := fmt.Sprintf("%s: %v; its log is %s", e.Component, e.Err, e.Log)
	if e.Tail != "" {
		msg += "\n--- last lines of " + e.Log + " ---\n" + e.Tail
	}
	return msg
}

func (e *ComponentError) Unwrap() error { return e.Err }

func (c Config) componentErr(name string, err error) error {
	return &ComponentError{Component: name, Log: c.LogPath(name), Err: err, Tail: c.logTail(name, 15)}
}

// waitFor polls check until it succeeds, the component exits, or the timeout passes.
func (c Config) waitFor(d *daemons, name string, timeout time.Duration, check func() error) error {
	deadline := time.Now().Add(timeout)
	var last error
	for {
		if last = check(); last == nil {
			return nil
		}
		if _, alive := c.running(name); !alive {
			return c.componentErr(name, errors.New(d.whyNotRunning(name)))
		}
		if time.Now().After(deadline) {
			return c.componentErr(name, fmt.Errorf("not ready after %s: %w", timeout, last))
		}
		time.Sleep(250 * time.Millisecond)
	}
}
