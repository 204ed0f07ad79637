package layer

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestFeaturesCheck(t *testing.T) {
	all := Features{UserNotif: true, Continue: true, AddFD: true, AddFDSend: true, WaitKillableRecv: true, SyncWakeUp: true, Kernel: "6.18.44-fc-v657"}
	tests := []struct {
		name string
		f    Features
		want string
	}{
		{"everything", all, ""},
		{"floor only", Features{UserNotif: true, Continue: true, AddFD: true, Kernel: "5.9.0"}, ""},
		{"5.4: no ADDFD", Features{UserNotif: true, Continue: true, Kernel: "5.4.0-150-generic"},
			"seccomp user notification ADDFD needs Linux 5.9; this kernel is 5.4"},
		{"5.4 without CONTINUE either names the newest need", Features{UserNotif: true, Kernel: "5.4.0"},
			"seccomp user notification ADDFD needs Linux 5.9; this kernel is 5.4"},
		{"4.19: nothing", Features{Kernel: "4.19.0-27-amd64"},
			"seccomp user notification ADDFD needs Linux 5.9; this kernel is 4.19"},
		{"new kernel, nested supervisor", Features{Kernel: "6.8.0", Reason: "kwarp already runs under a seccomp supervisor (only one listener per process tree)"},
			"seccomp user notification ADDFD is not available on this kernel (6.8): kwarp already runs under a seccomp supervisor (only one listener per process tree)"},
		{"old kernel with a reason still names the version", Features{Kernel: "4.14", Reason: "seccomp(SECCOMP_GET_NOTIF_SIZES): invalid argument"},
			"seccomp user notification ADDFD needs Linux 5.9; this kernel is 4.14"},
		{"unparsable release", Features{Kernel: "weird"}, "seccomp user notification ADDFD needs Linux 5.9; this kernel is weird"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.f.Check()
			got := ""
			if err != nil {
				got = err.Error()
			}
			if got != tt.want {
				t.Errorf("Check() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestFeaturesWarnings(t *testing.T) {
	f := Features{UserNotif: true, Continue: true, AddFD: true, AddFDSend: true, Kernel: "5.15.0-91-generic"}
	w := f.Warnings()
	if len(w) != 2 {
		t.Fatalf("Warnings() = %q, want WAIT_KILLABLE_RECV and SYNC_WAKE_UP", w)
	}
	if want := "seccomp WAIT_KILLABLE_RECV needs Linux 5.19; this kernel is 5.15: a process that gets signals often"; !strings.HasPrefix(w[0], want) {
		t.Errorf("first warning %q, want prefix %q", w[0], want)
	}
	if w := (Features{Kernel: "5.4"}).Warnings(); w != nil {
		t.Errorf("a kernel that fails Check gets warnings: %q", w)
	}
}

func TestParseKernel(t *testing.T) {
	for _, tt := range []struct {
		in           string
		major, minor int
		ok           bool
	}{
		{"6.18.44-fc-v657", 6, 18, true},
		{"5.4.0-150-generic", 5, 4, true},
		{"5.19", 5, 19, true},
		{"4.9-rc1", 4, 9, true},
		{"6", 0, 0, false},
		{"", 0, 0, false},
	} {
		ma, mi, ok := parseKernel(tt.in)
		if ma != tt.major || mi != tt.minor || ok != tt.ok {
			t.Errorf("parseKernel(%q) = %d, %d, %v", tt.in, ma, mi, ok)
		}
	}
}

// TestProbe runs the real probe. Where user notification exists it must find the floor, and
// it must leave no filter behind on any thread of this process, the main thread included
// (several runs: the trial goroutine sometimes lands on it).
func TestProbe(t *testing.T) {
	f := Probe()
	for range 20 {
		if g := Probe(); g != f {
			t.Fatalf("probes disagree: %+v vs %+v", f, g)
		}
	}
	t.Logf("%+v", f)
	if f.Kernel == "" || f.Kernel == "unknown" {
		t.Errorf("no kernel release: %+v", f)
	}
	if err := f.Check(); err != nil {
		if versionAtLeast(f.Kernel, "5.9") {
			t.Logf("this %s kernel lacks user notification: %v", f.Kernel, err)
		}
		return
	}
	if f.WaitKillableRecv && !versionAtLeast(f.Kernel, "5.0") {
		t.Errorf("implausible: %+v", f)
	}
	// The trial thread exits right after the probe; give it a moment.
	deadline := time.Now().Add(2 * time.Second)
	for {
		filtered := filteredThreads(t)
		if len(filtered) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("threads still carry a seccomp filter after Probe: %v", filtered)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func filteredThreads(t *testing.T) []string {
	paths, err := filepath.Glob("/proc/self/task/*/status")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			continue // the thread just exited
		}
		for _, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(line, "Seccomp:") && strings.TrimSpace(strings.TrimPrefix(line, "Seccomp:")) != "0" {
				out = append(out, p)
			}
		}
	}
	return out
}
