package lease_test

import (
	"strings"
	"testing"
	"time"

	"github.com/kwarp-dev/kwarp/agent/lease"
	"github.com/kwarp-dev/kwarp/agent/lease/leasetest"
)

func expired(l *lease.Lease) bool {
	select {
	case <-l.Done():
		return true
	default:
		return false
	}
}

func TestLease(t *testing.T) {
	const ttl, idle = 30 * time.Second, 2 * time.Minute
	type step struct {
		advance     time.Duration
		acquire     int // holders to add
		release     int // holders to release, oldest first
		wantExpired bool
	}
	tests := []struct {
		name      string
		ttl, idle time.Duration
		steps     []step
		reason    string
	}{
		{"no session within idle-start", ttl, idle, []step{
			{advance: idle - time.Second},
			{advance: time.Second, wantExpired: true},
		}, "no session arrived within 2m0s"},
		{"ttl after the last session", ttl, idle, []step{
			{advance: time.Minute, acquire: 2},
			{advance: time.Hour},
			{release: 1},
			{advance: time.Hour},
			{release: 1},
			{advance: ttl - time.Second},
			{advance: time.Second, wantExpired: true},
		}, "no session for 30s"},
		{"a session within the ttl keeps the agent", ttl, idle, []step{
			{acquire: 1},
			{release: 1, advance: ttl - time.Second},
			{acquire: 1},
			{advance: time.Hour},
			{release: 1},
			{advance: ttl - time.Second},
			{advance: time.Second, wantExpired: true},
		}, "no session for 30s"},
		{"ttl 0 exits with the last session", 0, idle, []step{
			{acquire: 2},
			{release: 1},
			{release: 1, wantExpired: true},
		}, "no session for 0s"},
		{"ttl 0 still waits for the first session", 0, idle, []step{
			{advance: idle - time.Second},
			{acquire: 1},
			{advance: time.Hour},
			{release: 1, wantExpired: true},
		}, "no session for 0s"},
		{"idle-start 0 waits forever", ttl, 0, []step{
			{advance: 1000 * time.Hour},
			{acquire: 1},
			{release: 1, advance: ttl, wantExpired: true},
		}, "no session for 30s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := leasetest.NewClock()
			l := lease.New(tt.ttl, tt.idle, clock)
			var held []func()
			for i, s := range tt.steps {
				for j := 0; j < s.acquire; j++ {
					release, ok := l.Acquire()
					if !ok {
						t.Fatalf("step %d: Acquire refused", i)
					}
					held = append(held, release)
				}
				for j := 0; j < s.release; j++ {
					held[0]()
					held[0]() // a second release is a no-op
					held = held[1:]
				}
				clock.Advance(s.advance)
				if got := expired(l); got != s.wantExpired {
					t.Fatalf("step %d: expired = %v, want %v (holders %d)", i, got, s.wantExpired, l.Holders())
				}
			}
			if !strings.Contains(l.Reason(), tt.reason) {
				t.Errorf("Reason = %q, want it to contain %q", l.Reason(), tt.reason)
			}
			if _, ok := l.Acquire(); ok {
				t.Error("Acquire after expiry succeeded")
			}
		})
	}
}

// A timer that fires just as the lease is acquired must not expire it.
func TestStaleTimerDoesNotExpire(t *testing.T) {
	clock := leasetest.NewClock()
	l := lease.New(time.Second, 0, clock)
	release, _ := l.Acquire()
	release()
	if clock.Pending() != 1 {
		t.Fatalf("pending timers %d, want 1", clock.Pending())
	}
	release2, _ := l.Acquire() // stops the timer
	clock.Advance(time.Hour)
	if expired(l) {
		t.Fatal("expired while held")
	}
	release2()
	clock.Advance(time.Second)
	if !expired(l) {
		t.Fatal("not expired a ttl after the last release")
	}
}

func TestRealClock(t *testing.T) {
	l := lease.New(time.Millisecond, 0, nil)
	release, _ := l.Acquire()
	release()
	select {
	case <-l.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("lease with a 1ms ttl did not expire on the real clock")
	}
}
