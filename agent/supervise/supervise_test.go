package supervise

import (
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// The test binary plays every part, by the role in testRole: the supervisor (Run), the agent,
// and what the agent leaves running (as the netfilter guard is left when the agent dies).
const testRole = "SUPERVISE_TEST_ROLE"

func TestMain(m *testing.M) {
	switch os.Getenv(testRole) {
	case "supervisor":
		os.Setenv(testRole, "agent")
		os.Exit(Run(os.Args[0], nil))
	case "agent":
		if os.Getenv(WorkerEnv) != "1" {
			os.Exit(90) // the agent must be told it is the worker
		}
		if os.Getenv("SUPERVISE_TEST_WAIT_FOR_SIGNAL") != "" {
			time.Sleep(time.Minute) // SIGTERM's default action ends this
			os.Exit(91)
		}
		left := exec.Command(os.Args[0])
		left.Env = append(os.Environ(), testRole+"=left")
		left.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		if err := left.Start(); err != nil {
			os.Exit(92)
		}
		os.Exit(7) // without waiting: what it started is orphaned
	case "left":
		time.Sleep(300 * time.Millisecond)
		os.WriteFile(os.Getenv("SUPERVISE_TEST_MARKER"), []byte("done"), 0o644)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func supervisor(env ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(append(os.Environ(), testRole+"=supervisor"), env...)
	return cmd
}

func TestRunWaitsForWhatTheAgentLeftAndExitsWithItsStatus(t *testing.T) {
	marker := filepath.Join(t.TempDir(), "left-finished")
	cmd := supervisor("SUPERVISE_TEST_MARKER=" + marker)
	err := cmd.Run()
	if cmd.ProcessState == nil || cmd.ProcessState.ExitCode() != 7 {
		t.Fatalf("supervisor: %v; want the agent's exit status 7", err)
	}
	// the orphan finished before the supervisor did: it was waited for, not left to be
	// killed with the container
	if b, err := os.ReadFile(marker); err != nil || string(b) != "done" {
		t.Fatalf("what the agent left running had not finished when the supervisor exited: %v", err)
	}
}

func TestRunPassesSIGTERMToTheAgent(t *testing.T) {
	cmd := supervisor("SUPERVISE_TEST_WAIT_FOR_SIGNAL=1")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // the agent is started
	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		t.Fatal("the supervisor did not end after SIGTERM")
	}
	if code := cmd.ProcessState.ExitCode(); code != 128+int(syscall.SIGTERM) {
		t.Fatalf("supervisor exit %d; want %d (the agent's death by SIGTERM)", code, 128+int(syscall.SIGTERM))
	}
}
