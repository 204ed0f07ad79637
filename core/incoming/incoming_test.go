package incoming

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kwarp-dev/kwarp/agent/api/tunnel"
	"github.com/kwarp-dev/kwarp/layer"
	"github.com/rs/zerolog"
)

// fakeAgent is the pod's side: subscriptions the test drives, and tunnels it reads.
type fakeAgent struct {
	mu      sync.Mutex
	subs    map[int]*fakeSub
	subbed  chan *fakeSub
	refuse  map[int]error
	tunnels chan net.Conn
	lis     net.Listener
}

type fakeSub struct {
	port   int
	mode   string
	events func(Event) error
	ctx    context.Context
}

func newFakeAgent(t *testing.T) *fakeAgent {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := &fakeAgent{subs: map[int]*fakeSub{}, subbed: make(chan *fakeSub, 16), refuse: map[int]error{}, tunnels: make(chan net.Conn, 16), lis: lis}
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			a.tunnels <- c
		}
	}()
	t.Cleanup(func() { lis.Close() })
	return a
}

func (a *fakeAgent) Subscribe(ctx context.Context, port int, mode string, events func(Event) error) error {
	a.mu.Lock()
	err := a.refuse[port]
	s := &fakeSub{port: port, mode: mode, events: events, ctx: ctx}
	if err == nil {
		a.subs[port] = s
	}
	a.mu.Unlock()
	if err != nil {
		return err
	}
	a.subbed <- s
	<-ctx.Done()
	return ctx.Err()
}

func (a *fakeAgent) open(ctx context.Context) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, "tcp", a.lis.Addr().String())
}

func (a *fakeAgent) waitSub(t *testing.T) *fakeSub {
	t.Helper()
	select {
	case s := <-a.subbed:
		return s
	case <-time.After(5 * time.Second):
		t.Fatal("no subscription")
		return nil
	}
}

// tunnel reads a tunnel's header and delivery byte.
func (a *fakeAgent) tunnel(t *testing.T) (net.Conn, tunnel.Token, byte) {
	t.Helper()
	select {
	case c := <-a.tunnels:
		var head [tunnel.HeaderSize + 1]byte
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(c, head[:]); err != nil {
			t.Fatalf("read tunnel header: %v", err)
		}
		c.SetReadDeadline(time.Time{})
		if !bytes.Equal(head[:4], tunnel.Magic[:]) {
			t.Fatalf("tunnel magic %q", head[:4])
		}
		var tok tunnel.Token
		copy(tok[:], head[4:tunnel.HeaderSize])
		return c, tok, head[tunnel.HeaderSize]
	case <-time.After(5 * time.Second):
		t.Fatal("no tunnel")
		return nil, tunnel.Token{}, 0
	}
}

type sayings struct {
	mu    sync.Mutex
	lines []string
}

func (s *sayings) say(format string, args ...any) {
	s.mu.Lock()
	s.lines = append(s.lines, fmt.Sprintf(format, args...))
	s.mu.Unlock()
}

func (s *sayings) all() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Join(s.lines, "\n")
}

func newHandler(t *testing.T, a *fakeAgent, r Rules) (*Handler, *sayings) {
	t.Helper()
	said := &sayings{}
	h, err := New(Options{Rules: r, Subscriber: a, Open: a.open, Say: said.say, Log: zerolog.Nop(), PollInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return h, said
}

// listen makes a local listener as the process's, and the layer's report of it.
func listen(t *testing.T) (net.Listener, layer.Listener) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	f, err := ln.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	return ln, layer.Listener{Local: ln.Addr().(*net.TCPAddr).AddrPort(), Inode: st.Ino}
}

var (
	client  = netip.MustParseAddrPort("10.1.2.3:40000")
	podAddr = netip.MustParseAddrPort("10.244.0.7:8080")
)

func TestStealDelivers(t *testing.T) {
	a := newFakeAgent(t)
	ln, l := listen(t)
	h, _ := newHandler(t, a, Rules{Mode: ModeSteal, PortMapping: map[int]int{8080: int(l.Local.Port())}})
	h.Listening(context.Background(), l)
	s := a.waitSub(t)
	if s.port != 8080 || s.mode != ModeSteal {
		t.Fatalf("subscribed %d %s, want 8080 steal", s.port, s.mode)
	}
	if err := s.events(Event{Subscribed: true, PodPorts: []int{8080}}); err != nil {
		t.Fatal(err)
	}
	want := tunnel.NewToken()
	s.events(Event{Conn: &Conn{Token: want[:], Client: client, PodLocal: podAddr}})

	tun, tok, delivered := a.tunnel(t)
	defer tun.Close()
	if tok != want || delivered != tunnel.Delivered {
		t.Fatalf("tunnel %s delivered=%d, want %s 0", tok, delivered, want)
	}
	tun.Write([]byte{byte(tunnel.StatusOK)})
	local, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer local.Close()
	peer := local.RemoteAddr().(*net.TCPAddr).AddrPort()
	f, ok := h.Delivered(local.LocalAddr().(*net.TCPAddr).AddrPort(), peer)
	if !ok || f.Remote != client || f.PodLocal != podAddr {
		t.Errorf("Delivered = %+v %v, want the pod client %s at %s", f, ok, client, podAddr)
	}
	tun.Write([]byte("GET / HTTP/1.1\r\n\r\n"))
	buf := make([]byte, 18)
	if _, err := io.ReadFull(local, buf); err != nil || string(buf) != "GET / HTTP/1.1\r\n\r\n" {
		t.Fatalf("local read %q %v", buf, err)
	}
	local.Write([]byte("answer"))
	local.(*net.TCPConn).CloseWrite()
	got, _ := io.ReadAll(tun)
	if string(got) != "answer" {
		t.Errorf("agent got %q, want the local answer", got)
	}
	// the flow is forgotten once the connection ends
	tun.Close()
	local.Close()
	deadline := time.Now().Add(3 * time.Second)
	for {
		if _, ok := h.Delivered(netip.AddrPort{}, peer); !ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("flow still known after the connection ended")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestNotDeliveredGivesThePortBack(t *testing.T) {
	a := newFakeAgent(t)
	ln, l := listen(t)
	h, _ := newHandler(t, a, Rules{Mode: ModeSteal, PortMapping: map[int]int{8080: int(l.Local.Port())}})
	h.Listening(context.Background(), l)
	s := a.waitSub(t)
	s.events(Event{Subscribed: true, PodPorts: []int{8080}})
	ln.Close() // the process stopped listening
	tok := tunnel.NewToken()
	s.events(Event{Conn: &Conn{Token: tok[:], Client: client, PodLocal: podAddr}})
	tun, got, delivered := a.tunnel(t)
	defer tun.Close()
	if got != tok || delivered != tunnel.NotDelivered {
		t.Fatalf("delivered byte %d, want NotDelivered", delivered)
	}
	select {
	case <-s.ctx.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the whole-port subscription was kept after its listener closed")
	}
	// listening again subscribes again
	_, l2 := listen(t)
	h2, _ := newHandler(t, a, Rules{Mode: ModeSteal, PortMapping: map[int]int{8080: int(l2.Local.Port())}})
	h2.Listening(context.Background(), l2)
	if s := a.waitSub(t); s.port != 8080 {
		t.Fatalf("subscribed %d", s.port)
	}
}

func TestWhichPorts(t *testing.T) {
	tests := []struct {
		name    string
		rules   Rules
		local   func(l int) Rules
		wantSub int // 0: none
	}{
		{"mirror by default, same port", Rules{}, nil, -1},
		{"ignored", Rules{Mode: ModeSteal}, func(l int) Rules { return Rules{Mode: ModeSteal, IgnorePorts: []int{l}} }, 0},
		{"off", Rules{Mode: ModeOff}, nil, 0},
		{"mapped", Rules{}, func(l int) Rules { return Rules{PortMapping: map[int]int{9090: l}} }, 9090},
		{"same number mapped elsewhere", Rules{}, func(l int) Rules { return Rules{PortMapping: map[int]int{l: 3000}} }, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := newFakeAgent(t)
			_, l := listen(t)
			r := tt.rules
			if tt.local != nil {
				r = tt.local(int(l.Local.Port()))
			}
			h, _ := newHandler(t, a, r)
			h.Listening(context.Background(), l)
			want := tt.wantSub
			if want == -1 {
				want = int(l.Local.Port())
			}
			select {
			case s := <-a.subbed:
				if want == 0 {
					t.Fatalf("subscribed pod port %d, want none", s.port)
				}
				if s.port != want {
					t.Fatalf("subscribed pod port %d, want %d", s.port, want)
				}
				if r.Mode == "" && s.mode != ModeMirror {
					t.Errorf("mode %q, want mirror", s.mode)
				}
			case <-time.After(300 * time.Millisecond):
				if want != 0 {
					t.Fatalf("no subscription, want pod port %d", want)
				}
			}
		})
	}
}

func TestPortThePodDoesNotServeStaysLocal(t *testing.T) {
	a := newFakeAgent(t)
	_, l := listen(t)
	hh, hsaid := newHandler(t, a, Rules{Mode: ModeSteal, PortMapping: map[int]int{7000: int(l.Local.Port())}})
	hh.Listening(context.Background(), l)
	s := a.waitSub(t)
	s.events(Event{Subscribed: true, PodPorts: []int{8080, 15001}})
	select {
	case <-s.ctx.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("still subscribed to a port the pod does not serve")
	}
	if msg := hsaid.all(); !strings.Contains(msg, "port 7000") || !strings.Contains(msg, "8080, 15001") {
		t.Errorf("warning %q does not name the port and the pod's ports", msg)
	}
}

func TestStartFiltered(t *testing.T) {
	t.Run("subscribed", func(t *testing.T) {
		a := newFakeAgent(t)
		h, said := newHandler(t, a, Rules{FilteredPorts: []int{8080, 8080, 9000}})
		done := make(chan error, 1)
		go func() { done <- h.Start(context.Background()) }()
		for range 2 {
			s := a.waitSub(t)
			if s.mode != ModeSteal {
				t.Errorf("filtered port %d subscribed as %s", s.port, s.mode)
			}
			s.events(Event{Subscribed: true, PodPorts: []int{8080}})
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if msg := said.all(); !strings.Contains(msg, "port 9000") || strings.Contains(msg, "port 8080") {
			t.Errorf("warnings %q: want one for 9000 only", msg)
		}
	})
	t.Run("refused", func(t *testing.T) {
		a := newFakeAgent(t)
		a.refuse[8080] = errors.New(`port 8080: steal "mine" overlaps steal "api" held by session 1234 (bob@laptop)`)
		h, _ := newHandler(t, a, Rules{FilteredPorts: []int{8080}})
		err := h.Start(context.Background())
		if err == nil || !strings.Contains(err.Error(), "bob@laptop") {
			t.Fatalf("Start = %v, want the refusal", err)
		}
	})
	t.Run("off", func(t *testing.T) {
		a := newFakeAgent(t)
		h, said := newHandler(t, a, Rules{Mode: ModeOff, FilteredPorts: []int{8080}})
		if err := h.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(said.all(), "off") {
			t.Errorf("no note that steal blocks are off: %q", said.all())
		}
		select {
		case s := <-a.subbed:
			t.Fatalf("subscribed %d with mode off", s.port)
		default:
		}
	})
}

func TestBadOptions(t *testing.T) {
	if _, err := New(Options{}); err == nil {
		t.Error("New without a subscriber succeeded")
	}
	a := newFakeAgent(t)
	if _, err := New(Options{Subscriber: a, Open: a.open, Rules: Rules{Mode: "copy"}}); err == nil || !strings.Contains(err.Error(), "copy") {
		t.Errorf("bad mode: %v", err)
	}
}
