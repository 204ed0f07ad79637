package outgoing

// Targetless tests on the loopback (the agent's own namespace, no root): the pairing rules and
// the request checks. The target's namespace, names resolved as the pod does, and the one port
// shared with gRPC are tested through the whole agent in package agent.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/kwarp-dev/kwarp/agent/api/tunnel"
	agentv1 "github.com/kwarp-dev/kwarp/agent/api/v1"
	"github.com/kwarp-dev/kwarp/agent/dnsserver"
	"github.com/kwarp-dev/kwarp/agent/netns"
	"github.com/kwarp-dev/kwarp/agent/sessionserver"
	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// names resolves from a table; every other name does not resolve.
type names map[string][]netip.Addr

func (n names) LookupHost(_ context.Context, host string) ([]netip.Addr, error) {
	if ip, err := netip.ParseAddr(host); err == nil {
		return []netip.Addr{ip}, nil
	}
	if a, ok := n[host]; ok {
		return a, nil
	}
	return nil, fmt.Errorf("%w: %s: no such name", dnsserver.ErrNotFound, host)
}

type sessions map[string]bool

func (s sessions) Known(id string) bool { return s[id] }

// fixture is a Server with a listener that hands every connection to ServeTunnel, as the
// agent's listener does after reading the magic.
type fixture struct {
	s      *Server
	tunnel string // address of the tunnel listener
}

func newFixture(t *testing.T, opts Options) *fixture {
	t.Helper()
	if opts.Sessions == nil {
		opts.Sessions = sessions{"s-1": true}
	}
	s := New(zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.DebugLevel), netns.New(nil), names{}, opts)
	t.Cleanup(s.Close)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			var m [4]byte
			if _, err := io.ReadFull(c, m[:]); err != nil || m != tunnel.Magic {
				c.Close()
				continue
			}
			go s.ServeTunnel(c)
		}
	}()
	return &fixture{s: s, tunnel: l.Addr().String()}
}

func (f *fixture) openTunnel(t *testing.T, tok tunnel.Token) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", f.tunnel)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := tunnel.WriteHeader(c, tok); err != nil {
		t.Fatal(err)
	}
	return c
}

func session(id string) context.Context {
	return metadata.NewIncomingContext(context.Background(), metadata.Pairs(sessionserver.SessionIDKey, id))
}

func echoServer(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
	return l.Addr().String()
}

func readStatus(t *testing.T, c net.Conn) error {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	defer c.SetReadDeadline(time.Time{})
	return tunnel.ReadStatus(c)
}

func TestRequestChecks(t *testing.T) {
	f := newFixture(t, Options{})
	tok := tunnel.NewToken()
	tests := []struct {
		name string
		ctx  context.Context
		req  *agentv1.ConnectRequest
		code codes.Code
	}{
		{"no session", context.Background(), &agentv1.ConnectRequest{Network: "tcp", Address: "127.0.0.1:1", Token: tok[:]}, codes.InvalidArgument},
		{"session not open", session("gone"), &agentv1.ConnectRequest{Network: "tcp", Address: "127.0.0.1:1", Token: tok[:]}, codes.FailedPrecondition},
		{"short token", session("s-1"), &agentv1.ConnectRequest{Network: "tcp", Address: "127.0.0.1:1", Token: tok[:3]}, codes.InvalidArgument},
		{"network", session("s-1"), &agentv1.ConnectRequest{Network: "sctp", Address: "127.0.0.1:1", Token: tok[:]}, codes.InvalidArgument},
		{"no port", session("s-1"), &agentv1.ConnectRequest{Network: "tcp", Address: "127.0.0.1", Token: tok[:]}, codes.InvalidArgument},
		{"named port", session("s-1"), &agentv1.ConnectRequest{Network: "tcp", Address: "127.0.0.1:http", Token: tok[:]}, codes.InvalidArgument},
	}
	for _, tt := range tests {
		if _, err := f.s.Connect(tt.ctx, tt.req); status.Code(err) != tt.code {
			t.Errorf("%s: %v, want %v", tt.name, err, tt.code)
		}
	}
}

// A tunnel waiting for a Connect that fails learns at once, not after the pairing timeout.
func TestFailedConnectAnswersTheWaitingTunnel(t *testing.T) {
	f := newFixture(t, Options{PairTimeout: time.Minute})
	tok := tunnel.NewToken()
	tun := f.openTunnel(t, tok)
	waitPending(t, f.s, 1)
	closed, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := closed.Addr().String()
	closed.Close()
	resp, err := f.s.Connect(session("s-1"), &agentv1.ConnectRequest{Network: "tcp", Address: addr, Token: tok[:]})
	if err != nil || unix.Errno(resp.Errno) != unix.ECONNREFUSED {
		t.Fatalf("Connect to a closed port = %+v, %v", resp, err)
	}
	start := time.Now()
	if err := readStatus(t, tun); err != tunnel.StatusUnknown {
		t.Errorf("tunnel status %v, want StatusUnknown", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Error("the tunnel waited for the pairing timeout")
	}
}

func TestOneTunnelPerToken(t *testing.T) {
	f := newFixture(t, Options{})
	tok := tunnel.NewToken()
	first := f.openTunnel(t, tok)
	waitPending(t, f.s, 1)
	second := f.openTunnel(t, tok)
	if err := readStatus(t, second); err != tunnel.StatusRefused {
		t.Errorf("second tunnel for one token: %v, want StatusRefused", err)
	}
	resp, err := f.s.Connect(session("s-1"), &agentv1.ConnectRequest{Network: "tcp", Address: echoServer(t), Token: tok[:]})
	if err != nil || resp.Errno != 0 {
		t.Fatalf("Connect = %+v, %v", resp, err)
	}
	if err := readStatus(t, first); err != nil {
		t.Fatalf("first tunnel: %v", err)
	}
	// A second Connect with a token in use is the client's bug.
	tok2 := tunnel.NewToken()
	req := &agentv1.ConnectRequest{Network: "tcp", Address: echoServer(t), Token: tok2[:]}
	if _, err := f.s.Connect(session("s-1"), req); err != nil {
		t.Fatal(err)
	}
	if _, err := f.s.Connect(session("s-1"), req); status.Code(err) != codes.AlreadyExists {
		t.Errorf("a second Connect with one token: %v, want AlreadyExists", err)
	}
}

// A name that does not resolve is ENOENT with the resolver's message.
func TestUnresolvable(t *testing.T) {
	f := newFixture(t, Options{})
	tok := tunnel.NewToken()
	resp, err := f.s.Connect(session("s-1"), &agentv1.ConnectRequest{Network: "tcp", Address: "nope:80", Token: tok[:]})
	if err != nil || unix.Errno(resp.Errno) != unix.ENOENT || !strings.Contains(resp.Message, "nope") {
		t.Errorf("Connect to an unresolvable name = %+v, %v", resp, err)
	}
}

func TestCloseRefusesAndCloses(t *testing.T) {
	f := newFixture(t, Options{})
	tok := tunnel.NewToken()
	resp, err := f.s.Connect(session("s-1"), &agentv1.ConnectRequest{Network: "tcp", Address: echoServer(t), Token: tok[:]})
	if err != nil || resp.Errno != 0 {
		t.Fatal(resp, err)
	}
	tun := f.openTunnel(t, tok)
	if err := readStatus(t, tun); err != nil {
		t.Fatal(err)
	}
	f.s.Close()
	tun.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := tun.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("tunnel after Close: %v, want its end", err)
	}
	late := f.openTunnel(t, tunnel.NewToken())
	if err := readStatus(t, late); err != tunnel.StatusRefused {
		t.Errorf("tunnel after Close: %v, want StatusRefused", err)
	}
}

func waitPending(t *testing.T, s *Server, n int) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		s.mu.Lock()
		got := len(s.pending)
		s.mu.Unlock()
		if got == n {
			return
		}
	}
	t.Fatalf("%d halves never waited", n)
}
