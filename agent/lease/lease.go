// Package lease decides when the agent has outlived its use. Nothing else removes an agent: a
// Job agent is never deleted by the CLI that started it (that CLI may have been killed), so the
// agent must notice by itself that nobody needs it and exit.
//
// The rules:
//   - Before the first session: the agent waits at most idleStart (default 2m), so an agent
//     whose CLI died while starting it does not linger. idleStart 0 waits forever.
//   - While any holder is active: the agent lives.
//   - After the last holder is released: the agent lives ttl more (default 30s, so a CLI that
//     restarts the user's command, or a second developer, finds it still there), then expires.
//     ttl 0 expires at once.
//
// Expiry is final: Done is closed and Acquire refuses from then on, so a session cannot slip in
// while the agent shuts down.
package lease

import (
	"sync"
	"time"
)

// Clock is the time source, injectable for tests.
type Clock interface {
	Now() time.Time
	// AfterFunc runs f in its own goroutine after d.
	AfterFunc(d time.Duration, f func()) Timer
}

// Timer is a pending AfterFunc.
type Timer interface {
	Stop() bool
}

// RealClock is the system's clock.
type RealClock struct{}

// Now is time.Now.
func (RealClock) Now() time.Time { return time.Now() }

// AfterFunc is time.AfterFunc.
func (RealClock) AfterFunc(d time.Duration, f func()) Timer { return time.AfterFunc(d, f) }

// Lease counts holders and expires when none has held it for long enough.
type Lease struct {
	ttl   time.Duration
	clock Clock

	mu      sync.Mutex
	holders int
	gen     uint64 // bumped whenever the pending expiry is superseded
	timer   Timer
	expired bool
	reason  string
	done    chan struct{}
}

// New starts a lease with no holder: it expires after idleStart unless acquired first.
// A nil clock is the real one.
func New(ttl, idleStart time.Duration, clock Clock) *Lease {
	if clock == nil {
		clock = RealClock{}
	}
	l := &Lease{ttl: ttl, clock: clock, done: make(chan struct{})}
	if idleStart > 0 {
		l.mu.Lock()
		l.armLocked(idleStart, "no session arrived within "+idleStart.String()+" of start")
		l.mu.Unlock()
	}
	return l
}

// Acquire adds a holder. release ends it (calling it again does nothing). ok is false once
// the lease has expired.
func (l *Lease) Acquire() (release func(), ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.expired {
		return func() {}, false
	}
	l.holders++
	l.disarmLocked()
	var once sync.Once
	return func() { once.Do(l.release) }, true
}

func (l *Lease) release() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.holders--
	if l.holders == 0 && !l.expired {
		l.armLocked(l.ttl, "no session for "+l.ttl.String())
	}
}

// Holders is the number of active holders.
func (l *Lease) Holders() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.holders
}

// Done is closed when the lease expires.
func (l *Lease) Done() <-chan struct{} { return l.done }

// Reason says why the lease expired ("" before).
func (l *Lease) Reason() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.reason
}

// armLocked schedules expiry after d (now when d <= 0) unless superseded.
func (l *Lease) armLocked(d time.Duration, reason string) {
	l.disarmLocked()
	if d <= 0 {
		l.expireLocked(reason)
		return
	}
	gen := l.gen
	l.timer = l.clock.AfterFunc(d, func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		// A timer that fired while being stopped must not expire a lease that was acquired.
		if l.gen == gen && l.holders == 0 && !l.expired {
			l.expireLocked(reason)
		}
	})
}

func (l *Lease) disarmLocked() {
	l.gen++
	if l.timer != nil {
		l.timer.Stop()
		l.timer = nil
	}
}

func (l *Lease) expireLocked(reason string) {
	l.expired = true
	l.reason = reason
	close(l.done)
}
