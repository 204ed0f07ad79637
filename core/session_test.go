package core

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func TestStaleScratchRemoved(t *testing.T) {
	dir := t.TempDir()
	// a pid that is surely gone: a child we started and reaped
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	dead := filepath.Join(dir, scratchPrefix+strconv.Itoa(cmd.Process.Pid)+"-abc")
	alive := filepath.Join(dir, scratchPrefix+strconv.Itoa(os.Getpid())+"-def")
	other := filepath.Join(dir, "kwarp-session-notapid")
	for _, d := range []string{dead, alive, other} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	removeStaleScratch(dir)
	for d, want := range map[string]bool{dead: false, alive: true, other: true} {
		if _, err := os.Stat(d); (err == nil) != want {
			t.Errorf("%s exists=%v, want %v", filepath.Base(d), err == nil, want)
		}
	}
}

func TestWaitStatus(t *testing.T) {
	for _, tt := range []struct {
		script string
		want   int
	}{{"exit 0", 0}, {"exit 7", 7}, {"kill -TERM $$", 143}, {"kill -KILL $$", 137}} {
		if got := waitStatus(exec.Command("sh", "-c", tt.script).Run()); got != tt.want {
			t.Errorf("%s: status %d, want %d", tt.script, got, tt.want)
		}
	}
}

func TestRestorer(t *testing.T) {
	if restorer([]string{"A=1"}, nil) != nil {
		t.Fatal("nothing imported: no hook (and no exec trapping)")
	}
	r := restorer([]string{"PATH=/bin", "GREETING=pod", "DB=postgres://x"}, []string{"GREETING", "DB"})
	if got := r(1, "/bin/sh", []string{"PATH=/bin", "GREETING=pod", "DB=postgres://x"}); got != nil {
		t.Errorf("complete env rewritten: %v", got)
	}
	got := r(1, "/bin/sh", []string{"GREETING=mine"})
	if strings.Join(got, ",") != "GREETING=mine,DB=postgres://x" {
		t.Errorf("stripped env restored to %v; want the launcher's GREETING kept and DB added", got)
	}
	if got := r(1, "/bin/sh", nil); strings.Join(got, ",") != "GREETING=pod,DB=postgres://x" {
		t.Errorf("empty env restored to %v", got)
	}
}
