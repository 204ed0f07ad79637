package sessionserver

import (
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	agentv1 "github.com/kwarp-dev/kwarp/agent/api/v1"
	"github.com/kwarp-dev/kwarp/agent/lease"
	"github.com/kwarp-dev/kwarp/agent/lease/leasetest"
	"github.com/kwarp-dev/kwarp/internal/syncbuf"
	"github.com/rs/zerolog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

type fixture struct {
	clock  *leasetest.Clock
	lease  *lease.Lease
	srv    *Server
	client agentv1.SessionClient
	logs   *syncbuf.Buffer
}

func newFixture(t *testing.T, ttl time.Duration) *fixture {
	t.Helper()
	f := &fixture{clock: leasetest.NewClock(), logs: &syncbuf.Buffer{}}
	f.lease = lease.New(ttl, time.Minute, f.clock)
	f.srv = New(zerolog.New(f.logs), f.lease, f.clock, func() *agentv1.Target {
		return &agentv1.Target{Namespace: "shop", Pod: "checkout", Pid: 42}
	})
	gs := grpc.NewServer()
	agentv1.RegisterSessionServer(gs, f.srv)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go gs.Serve(lis)
	t.Cleanup(gs.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	f.client = agentv1.NewSessionClient(conn)
	return f
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// hold opens a Hold stream for id and checks one ping round trip.
func (f *fixture) hold(t *testing.T, ctx context.Context, id string) (agentv1.Session_HoldClient, context.CancelFunc) {
	t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	if id != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, SessionIDKey, id)
	}
	h, err := f.client.Hold(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Send fails with io.EOF when the agent already ended the stream; Recv has the status.
	_ = h.Send(&agentv1.Ping{Seq: 7})
	pong, err := h.Recv()
	if err != nil {
		cancel()
		return h, func() {}
	}
	if pong.Seq != 7 {
		t.Fatalf("pong %d for ping 7", pong.Seq)
	}
	return h, cancel
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func expired(l *lease.Lease) bool {
	select {
	case <-l.Done():
		return true
	default:
		return false
	}
}

func TestOpenHoldClose(t *testing.T) {
	f := newFixture(t, 30*time.Second)
	ctx := ctxT(t)
	resp, err := f.client.Open(ctx, &agentv1.OpenRequest{SessionId: "s-1", User: "alice", Host: "laptop"})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Target.Pid != 42 || resp.ActiveSessions != 1 || resp.AgentVersion == "" {
		t.Errorf("Open = %+v", resp)
	}
	if f.lease.Holders() != 1 {
		t.Errorf("after Open: %d lease holders, want 1", f.lease.Holders())
	}
	_, cancel := f.hold(t, ctx, "s-1")
	// The Open grace passing does not drop a held session.
	f.clock.Advance(OpenGrace + time.Second)
	if f.srv.Active() != 1 {
		t.Fatal("held session dropped by the Open grace")
	}
	// A second session shares the agent.
	resp, err = f.client.Open(ctx, &agentv1.OpenRequest{SessionId: "s-2", User: "bob"})
	if err != nil || resp.ActiveSessions != 2 {
		t.Fatalf("second Open = %+v, %v", resp, err)
	}
	_, cancel2 := f.hold(t, ctx, "s-2")

	cancel() // alice's CLI dies
	eventually(t, "s-1 to close", func() bool { return f.srv.Active() == 1 })
	if f.lease.Holders() != 1 {
		t.Errorf("after s-1 closed: %d holders, want 1", f.lease.Holders())
	}
	cancel2()
	eventually(t, "s-2 to close", func() bool { return f.lease.Holders() == 0 })
	f.clock.Advance(29 * time.Second)
	if expired(f.lease) {
		t.Fatal("expired before the ttl")
	}
	f.clock.Advance(time.Second)
	if !expired(f.lease) {
		t.Fatal("not expired a ttl after the last session")
	}
	// Expired is final.
	if _, err := f.client.Open(ctx, &agentv1.OpenRequest{SessionId: "s-3"}); status.Code(err) != codes.Unavailable {
		t.Errorf("Open after expiry: %v, want Unavailable", err)
	}
	logs := f.logs.String()
	for _, want := range []string{`"session":"s-1"`, `"session opened"`, `"session closed"`, `"user":"alice"`, `"session":"s-2"`} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs lack %s:\n%s", want, logs)
		}
	}
}

func TestOpenWithoutHoldIsDropped(t *testing.T) {
	f := newFixture(t, 0)
	ctx := ctxT(t)
	if _, err := f.client.Open(ctx, &agentv1.OpenRequest{SessionId: "s-1"}); err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(OpenGrace - time.Second)
	if f.srv.Active() != 1 || expired(f.lease) {
		t.Fatal("dropped before the grace")
	}
	f.clock.Advance(time.Second)
	if f.srv.Active() != 0 || !expired(f.lease) {
		t.Fatalf("after the grace: %d sessions, expired %v; want 0, true (ttl 0)", f.srv.Active(), expired(f.lease))
	}
	if !strings.Contains(f.logs.String(), "never held") {
		t.Errorf("no log line for the dropped session:\n%s", f.logs.String())
	}
}

func TestReopenKeepsOneHold(t *testing.T) {
	f := newFixture(t, time.Second)
	ctx := ctxT(t)
	for i := 0; i < 3; i++ {
		if _, err := f.client.Open(ctx, &agentv1.OpenRequest{SessionId: "s-1"}); err != nil {
			t.Fatal(err)
		}
	}
	if f.lease.Holders() != 1 || f.srv.Active() != 1 {
		t.Errorf("after three Opens of one id: %d holders, %d sessions; want 1, 1", f.lease.Holders(), f.srv.Active())
	}
	// Two Hold streams for one session (a reconnect racing the old stream): the session lives
	// until both end.
	_, c1 := f.hold(t, ctx, "s-1")
	_, c2 := f.hold(t, ctx, "s-1")
	c1()
	time.Sleep(50 * time.Millisecond)
	if f.srv.Active() != 1 {
		t.Fatal("session closed while a second Hold was open")
	}
	c2()
	eventually(t, "the session to close", func() bool { return f.srv.Active() == 0 && f.lease.Holders() == 0 })
}

func TestHoldChecks(t *testing.T) {
	f := newFixture(t, time.Second)
	ctx := ctxT(t)
	if _, err := f.client.Open(ctx, &agentv1.OpenRequest{}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("Open without id: %v, want InvalidArgument", err)
	}
	h, _ := f.hold(t, ctx, "")
	if _, err := h.Recv(); status.Code(err) != codes.InvalidArgument {
		t.Errorf("Hold without id: %v, want InvalidArgument", err)
	}
	// A Hold for an id never opened is accepted: it proves a CLI wants the agent.
	_, cancel := f.hold(t, ctx, "late")
	if f.srv.Active() != 1 || f.lease.Holders() != 1 {
		t.Errorf("Hold without Open: %d sessions, %d holders", f.srv.Active(), f.lease.Holders())
	}
	cancel()
}

func TestShutdownEndsHolds(t *testing.T) {
	f := newFixture(t, time.Hour)
	ctx := ctxT(t)
	h, _ := f.hold(t, ctx, "s-1")
	f.srv.Shutdown()
	if _, err := h.Recv(); status.Code(err) != codes.Unavailable {
		t.Errorf("Hold after Shutdown: %v, want Unavailable", err)
	}
}

// OnEnd hooks learn of every session's end, held or only opened, once the session is gone.
func TestOnEnd(t *testing.T) {
	f := newFixture(t, time.Minute)
	ctx := ctxT(t)
	var mu sync.Mutex
	var ended []string
	f.srv.OnEnd(func(id string) {
		if f.srv.Known(id) {
			t.Errorf("hook for %s ran while the session was still known", id)
		}
		mu.Lock()
		ended = append(ended, id)
		mu.Unlock()
	})
	endedList := func() string {
		mu.Lock()
		defer mu.Unlock()
		return strings.Join(ended, " ")
	}
	for _, id := range []string{"held", "opened"} {
		if _, err := f.client.Open(ctx, &agentv1.OpenRequest{SessionId: id}); err != nil {
			t.Fatal(err)
		}
	}
	_, cancel := f.hold(t, ctx, "held")
	if !f.srv.Known("held") || !f.srv.Known("opened") || f.srv.Known("other") {
		t.Fatal("Known does not match the sessions")
	}
	cancel()
	eventually(t, "the held session's hook", func() bool { return endedList() == "held" })
	f.clock.Advance(OpenGrace)
	if got := endedList(); got != "held opened" {
		t.Errorf("hooks ran for %q, want held then opened", got)
	}
}

func TestSessionIDFromMetadata(t *testing.T) {
	ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs(SessionIDKey, "s-7"))
	if got := SessionID(ctx); got != "s-7" {
		t.Errorf("SessionID = %q", got)
	}
	if got := SessionID(context.Background()); got != "" {
		t.Errorf("SessionID without metadata = %q", got)
	}
}
