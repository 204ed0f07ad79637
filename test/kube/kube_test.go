package kube

import (
	"strings"
	"testing"
	"time"
)

func TestContextDeadline(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name        string
		d           time.Duration
		testLeft    time.Duration // 0: the test has no deadline
		wantFromNow time.Duration
	}{
		{"no test deadline", time.Minute, 0, time.Minute},
		{"test deadline far away", time.Minute, time.Hour, time.Minute},
		{"margin capped at 30s", time.Hour, 10 * time.Minute, 10*time.Minute - 30*time.Second},
		{"margin a tenth", time.Hour, 2 * time.Minute, 2*time.Minute - 12*time.Second},
		{"margin at least 5s", time.Hour, 20 * time.Second, 15 * time.Second},
		{"test nearly out of time", time.Hour, 3 * time.Second, -2 * time.Second},
	}
	for _, tt := range tests {
		got := contextDeadline(now, tt.d, now.Add(tt.testLeft), tt.testLeft != 0)
		if want := now.Add(tt.wantFromNow); !got.Equal(want) {
			t.Errorf("%s: deadline = now%+v, want now%+v", tt.name, got.Sub(now), tt.wantFromNow)
		}
	}
}

func TestContext(t *testing.T) {
	var ctxErr error
	t.Run("inner", func(t *testing.T) {
		ctx := Context(t, time.Hour)
		dl, ok := ctx.Deadline()
		if !ok || time.Until(dl) > time.Hour {
			t.Errorf("deadline = %v, %v; want within the hour", dl, ok)
		}
		if ctx.Err() != nil {
			t.Fatalf("context already done: %v", ctx.Err())
		}
		t.Cleanup(func() { ctxErr = ctx.Err() })
	})
	if ctxErr == nil {
		t.Error("the context outlived its test")
	}
}

func TestConnectRefusesEmptyPath(t *testing.T) {
	if _, err := Connect(""); err == nil || !strings.Contains(err.Error(), "empty kubeconfig") {
		t.Errorf("Connect(\"\") = %v, want an error about the empty path", err)
	}
	if _, err := Connect(t.TempDir() + "/missing"); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("Connect(missing file) = %v, want an error naming it", err)
	}
}
