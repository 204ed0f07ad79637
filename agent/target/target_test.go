package target

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

const (
	testID = "1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b"
	other  = "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100"
)

func TestParseContainerID(t *testing.T) {
	tests := []struct {
		in, want string
		wantErr  bool
	}{
		{"containerd://" + testID, testID, false},
		{"cri-o://" + testID, testID, false},
		{"docker://" + testID, testID, false},
		{" " + testID + "\n", testID, false},
		{testID, testID, false},
		{"", "", true},
		{"containerd://", "", true},
		{"containerd://../../etc", "", true},
		{"a b", "", true},
	}
	for _, tt := range tests {
		got, err := ParseContainerID(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("ParseContainerID(%q) = %q, %v; want %q, err %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

// The fixture trees under testdata are /proc as nodes of each kind show it: cgroup v1 hybrid
// with the cgroupfs driver, v2 with the systemd driver (containerd, CRI-O, Docker).
func TestFindPID(t *testing.T) {
	tests := []struct {
		tree, id string
		want     int
		why      string
	}{
		{"v1-cgroupfs", "containerd://" + testID, 120, "the init, not its child 121 nor the exec'd shell 95 (lower pid, started later)"},
		{"v1-cgroupfs", "containerd://" + other, 100, "the pause container"},
		{"v2-systemd-containerd", "containerd://" + testID, 320, "cri-containerd-<id>.scope with a nested cgroup; not the impostor <id>00"},
		{"v2-crio", "cri-o://" + testID, 410, "crio-<id>.scope, not crio-conmon-<id>.scope"},
		{"v2-docker", "docker://" + testID, 510, "docker-<id>.scope"},
		{"v1-docker-cgroupfs", "docker://" + testID, 610, "/docker/<id>"},
	}
	for _, tt := range tests {
		t.Run(tt.tree, func(t *testing.T) {
			got, err := FindPID("testdata/"+tt.tree+"/proc", tt.id)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("FindPID = %d, want %d: %s", got, tt.want, tt.why)
			}
		})
	}
}

func TestFindPIDNotFoundSaysWhatWasSearched(t *testing.T) {
	_, err := FindPID("testdata/none/proc", "containerd://"+testID)
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("err = %v, want ErrNotFound", err)
	}
	for _, want := range []string{"testdata/none/proc", testID[:12] + "…", "searched 2 processes", "hostPID"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	if _, err := FindPID("testdata/missing", testID); err == nil || errors.Is(err, ErrNotFound) {
		t.Errorf("missing proc root: err = %v, want a listing error", err)
	}
}

func TestFindEphemeral(t *testing.T) {
	got, err := FindEphemeral("testdata/ephemeral/proc", 7)
	if err != nil {
		t.Fatal(err)
	}
	if got != 1 {
		t.Errorf("FindEphemeral = %d, want 1 (lowest pid with another root; 3 shares the agent's)", got)
	}
	_, err = FindEphemeral("testdata/ephemeral-alone/proc", 7)
	if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "targetContainerName") {
		t.Errorf("alone: err = %v, want ErrNotFound naming targetContainerName", err)
	}
}

func TestLocate(t *testing.T) {
	// Ephemeral: the cgroup namespace hides the ID, so the root comparison decides.
	got, err := Locate("testdata/ephemeral/proc", "containerd://"+testID, true, 7)
	if err != nil || got != 1 {
		t.Errorf("ephemeral Locate = %d, %v; want 1", got, err)
	}
	// Ephemeral with a visible ID: the cgroup scan wins.
	got, err = Locate("testdata/v2-crio/proc", "cri-o://"+testID, true, 99999)
	if err != nil || got != 410 {
		t.Errorf("ephemeral Locate with visible ID = %d, %v; want 410", got, err)
	}
	// Job mode has no fallback.
	if _, err := Locate("testdata/ephemeral/proc", testID, false, 7); !errors.Is(err, ErrNotFound) {
		t.Errorf("job Locate err = %v, want ErrNotFound", err)
	}
}

func TestHostnameResolvesInsideTheRoot(t *testing.T) {
	// /etc/hostname there is an absolute symlink: it must resolve in the target's root.
	got, err := Hostname("testdata/ephemeral/proc", 1)
	if err != nil {
		t.Fatal(err)
	}
	if got != "checkout-7d9f5" {
		t.Errorf("Hostname = %q, want checkout-7d9f5", got)
	}
	if _, err := Hostname("testdata/ephemeral/proc", 3); err == nil {
		t.Error("Hostname of a root without /etc/hostname: no error")
	}
}

func TestTrackerFollowsARestart(t *testing.T) {
	start := func() *exec.Cmd {
		cmd := exec.Command("sleep", "60")
		if err := cmd.Start(); err != nil {
			t.Skipf("no sleep binary: %v", err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		return cmd
	}
	cur := start()
	tr, err := NewTracker("/proc", func() (int, error) { return cur.Process.Pid, nil })
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	p, err := tr.Process()
	if err != nil || p.PID != cur.Process.Pid {
		t.Fatalf("Process = %v, %v; want pid %d", p, err, cur.Process.Pid)
	}
	if _, err := p.ReadFile("status"); err != nil {
		t.Fatalf("ReadFile: %v", err)
	}

	old := cur
	old.Process.Kill()
	old.Wait() // reaped: the pid may be reused from now on
	if err := p.Alive(); !errors.Is(err, ErrExited) {
		t.Fatalf("Alive after exit = %v, want ErrExited", err)
	}
	if _, err := p.ReadFile("status"); !errors.Is(err, ErrExited) {
		t.Errorf("ReadFile after exit = %v, want ErrExited", err)
	}
	cur = start() // "the container restarted"
	p2, err := tr.Process()
	if err != nil || p2.PID != cur.Process.Pid {
		t.Fatalf("after restart Process = %v, %v; want pid %d", p2, err, cur.Process.Pid)
	}
}

func TestTrackerGoneIsFailedPrecondition(t *testing.T) {
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Skipf("no sleep binary: %v", err)
	}
	pid := cmd.Process.Pid
	found, calls := true, 0
	tr, err := NewTracker("/proc", func() (int, error) {
		calls++
		if !found {
			return 0, ErrNotFound
		}
		return pid, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	cmd.Process.Kill()
	cmd.Wait()
	found = false
	_, err = Current(tr)
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "exited") {
		t.Errorf("Current after exit = %v, want FailedPrecondition saying the target exited", err)
	}
	// Rescans are rate-limited: the cached answer comes back without a scan.
	before := calls
	if _, err := tr.Process(); err == nil {
		t.Error("second Process: no error")
	}
	if calls != before {
		t.Error("second Process rescanned instead of answering from the cache")
	}
	if _, err := Current(nil); status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "targetless") {
		t.Errorf("Current(nil) = %v, want FailedPrecondition targetless", err)
	}
}

func TestOpenRootOfOwnProcess(t *testing.T) {
	p, err := Open("/proc", os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	f, err := p.OpenRoot()
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
}

// Without pidfd_open (kernels before 5.3) the start time pins the process.
func TestProcessWithoutPidfd(t *testing.T) {
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Skipf("no sleep binary: %v", err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	_, start, err := readStat("/proc", cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	p := &Process{PID: cmd.Process.Pid, procRoot: "/proc", start: start}
	if err := p.Alive(); err != nil {
		t.Fatalf("Alive = %v", err)
	}
	recycled := &Process{PID: cmd.Process.Pid, procRoot: "/proc", start: start + 1}
	if err := recycled.Alive(); !errors.Is(err, ErrExited) {
		t.Errorf("another start time: Alive = %v, want ErrExited (a recycled pid)", err)
	}
	cmd.Process.Kill()
	cmd.Wait()
	if err := p.Alive(); !errors.Is(err, ErrExited) {
		t.Errorf("after exit: Alive = %v, want ErrExited", err)
	}
	if err := p.Close(); err != nil {
		t.Errorf("Close = %v", err)
	}
}
