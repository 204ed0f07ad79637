package incoming

// Unit tests without namespaces or netfilter: the "target's namespace" is the test's own, the
// redirects are recorded, and clients connect to the agent's port listener directly (no
// SO_ORIGINAL_DST then: the listener stands for its port on the address reached, which is
// where the test's app listens).

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kwarp-dev/kwarp/agent/api/tunnel"
	agentv1 "github.com/kwarp-dev/kwarp/agent/api/v1"
	"github.com/kwarp-dev/kwarp/agent/sessionserver"
	"github.com/rs/zerolog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

type fakeNS struct{}

func (fakeNS) Run(fn func() error) error { return fn() }
func (fakeNS) DialTCP(ctx context.Context, a netip.AddrPort, timeout time.Duration) (net.Conn, error) {
	d := net.Dialer{Timeout: timeout}
	return d.DialContext(ctx, "tcp", a.String())
}

type fakeSessions struct {
	mu sync.Mutex
	m  map[string][2]string
}

func (f *fakeSessions) Known(id string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.m[id]
	return ok
}

func (f *fakeSessions) Info(id string) (string, string, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	v, ok := f.m[id]
	return v[0], v[1], ok
}

type redirect struct {
	port, toPort int
	session      string
	flush        bool
}

type fakeRedirects struct {
	mu      sync.Mutex
	ready   error
	addErr  error
	live    []*redirect
	removed int
}

func (f *fakeRedirects) Ready(context.Context) error { return f.ready }

func (f *fakeRedirects) Hold() func() { return func() {} }

func (f *fakeRedirects) Redirect(port, toPort int, session string, flush bool) (func() error, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.addErr != nil {
		return nil, f.addErr
	}
	r := &redirect{port, toPort, session, flush}
	f.live = append(f.live, r)
	var once sync.Once
	return func() error {
		once.Do(func() {
			f.mu.Lock()
			defer f.mu.Unlock()
			for i, o := range f.live {
				if o == r {
					f.live = append(f.live[:i], f.live[i+1:]...)
					break
				}
			}
			f.removed++
		})
		return nil
	}, nil
}

func (f *fakeRedirects) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.live)
}

func (f *fakeRedirects) last() redirect {
	f.mu.Lock()
	defer f.mu.Unlock()
	return *f.live[len(f.live)-1]
}

type env struct {
	t    *testing.T
	srv  *Server
	rd   *fakeRedirects
	conn *grpc.ClientConn
	app  int // the app's port on 127.0.0.1: answers "app:" and the line it got
}

func newEnv(t *testing.T, opts Options) *env {
	t.Helper()
	e := &env{t: t, rd: &fakeRedirects{}}
	opts.Sessions = &fakeSessions{m: map[string][2]string{
		"alice-session": {"alice", "alice-laptop"},
		"bob-session":   {"bob", "bob-laptop"},
	}}
	if opts.Redirects == nil && opts.RedirectErr == nil {
		opts.Redirects = e.rd
	}
	opts.NS = fakeNS{}
	if opts.TunnelTimeout == 0 {
		opts.TunnelTimeout = time.Second
	}
	e.srv = New(zerolog.New(newTestLog(t)).Level(zerolog.DebugLevel), opts)
	t.Cleanup(e.srv.Close)

	gs := grpc.NewServer()
	agentv1.RegisterIncomingServer(gs, e.srv)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	go gs.Serve(l)
	t.Cleanup(gs.Stop)
	e.conn, err = grpc.NewClient(l.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	must(t, err)
	t.Cleanup(func() { e.conn.Close() })

	app, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	t.Cleanup(func() { app.Close() })
	e.app = app.Addr().(*net.TCPAddr).Port
	go func() {
		for {
			c, err := app.Accept()
			if err != nil {
				return
			}
			go lineServer(c, "app")
		}
	}()
	return e
}

// testLog writes to t's log until the test's cleanups have run: the service's goroutines
// may log a line after the test's end (a stream's end), which t.Log must not see.
type testLog struct {
	mu   sync.Mutex
	t    *testing.T
	done bool
}

func newTestLog(t *testing.T) *testLog {
	w := &testLog{t: t}
	t.Cleanup(func() { // registered first: runs last
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	})
	return w
}

func (w *testLog) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimSpace(string(p)))
	}
	return len(p), nil
}

// lineServer answers each line with name and the line.
func lineServer(c net.Conn, name string) {
	defer c.Close()
	sc := bufio.NewScanner(c)
	for sc.Scan() {
		if _, err := fmt.Fprintf(c, "%s:%s\n", name, sc.Text()); err != nil {
			return
		}
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

type stream struct {
	agentv1.Incoming_SubscribeClient
	cancel context.CancelFunc
	first  *agentv1.IncomingEvent
}

func (e *env) subscribe(session string, req *agentv1.SubscribeRequest) (*stream, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	e.t.Cleanup(cancel)
	if session != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, sessionserver.SessionIDKey, session)
	}
	st, err := agentv1.NewIncomingClient(e.conn).Subscribe(ctx, req)
	if err != nil {
		return nil, err
	}
	first, err := st.Recv()
	if err != nil {
		return nil, err
	}
	return &stream{st, cancel, first}, nil
}

func (e *env) mustSubscribe(session string, req *agentv1.SubscribeRequest) *stream {
	e.t.Helper()
	st, err := e.subscribe(session, req)
	must(e.t, err)
	if st.first.GetSubscribed() == nil {
		e.t.Fatalf("first event %v, want Subscribed", st.first)
	}
	return st
}

func (e *env) stealReq(filters ...string) *agentv1.SubscribeRequest {
	req := &agentv1.SubscribeRequest{Port: uint32(e.app), Mode: agentv1.SubscribeRequest_STEAL}
	for _, f := range filters {
		req.HttpFilters = append(req.HttpFilters, []byte(f))
	}
	return req
}

func (e *env) filter(name, path string) string {
	return fmt.Sprintf(`{"kind":"http","name":%q,"port":%d,"match":{"path":[{"prefix":%q}]}}`, name, e.app, path)
}

// dial connects to the agent's listener for the app's port, as a redirected client would.
func (e *env) dial() net.Conn {
	e.t.Helper()
	lport := e.rd.last().toPort
	c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", lport))
	must(e.t, err)
	e.t.Cleanup(func() { c.Close() })
	return c
}

func ask(t *testing.T, c net.Conn, line string) string {
	t.Helper()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	_, err := fmt.Fprintln(c, line)
	must(t, err)
	got, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("ask %.20q: %v", line, err)
	}
	return strings.TrimSpace(got)
}

// tcpPair is a connected pair of TCP sockets: a tunnel's two ends.
func tcpPair(t *testing.T) (agentEnd, cliEnd net.Conn) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	defer l.Close()
	cliEnd, err = net.Dial("tcp", l.Addr().String())
	must(t, err)
	// Bounded, as across a port-forward: the kernel would otherwise buffer tens of MiB of
	// a mirror that does not read (tcp_rmem autotuning).
	must(t, cliEnd.(*net.TCPConn).SetReadBuffer(128<<10))
	agentEnd, err = l.Accept()
	must(t, err)
	t.Cleanup(func() { agentEnd.Close(); cliEnd.Close() })
	return agentEnd, cliEnd
}

// nextConn reads the next IncomingConnection.
func nextConn(t *testing.T, st *stream) *agentv1.IncomingConnection {
	t.Helper()
	ev, err := st.Recv()
	must(t, err)
	ic := ev.GetConnection()
	if ic == nil {
		t.Fatalf("event %v, want IncomingConnection", ev)
	}
	return ic
}

// tunnelFor plays the CLI's side of ic's tunnel: the agent's end goes to Claim, the CLI's
// writes the verdict; delivered returns the CLI's end after the status.
func (e *env) tunnelFor(ic *agentv1.IncomingConnection, verdict byte) net.Conn {
	e.t.Helper()
	tok, err := tunnel.ParseToken(ic.Token)
	must(e.t, err)
	a, c := tcpPair(e.t)
	if !e.srv.Claim(tok, a) {
		e.t.Fatal("Claim refused the event's token")
	}
	_, err = c.Write([]byte{verdict})
	must(e.t, err)
	if verdict == tunnel.Delivered {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		must(e.t, tunnel.ReadStatus(c))
		c.SetReadDeadline(time.Time{})
	}
	return c
}

func TestSubscribeValidates(t *testing.T) {
	e := newEnv(t, Options{})
	for _, tc := range []struct {
		name    string
		session string
		req     *agentv1.SubscribeRequest
		code    codes.Code
	}{
		{"no session", "", e.stealReq(), codes.InvalidArgument},
		{"session not open", "nobody", e.stealReq(), codes.FailedPrecondition},
		{"port 0", "alice-session", &agentv1.SubscribeRequest{}, codes.InvalidArgument},
		{"port too large", "alice-session", &agentv1.SubscribeRequest{Port: 70000}, codes.InvalidArgument},
		{"mirror with filters", "alice-session", &agentv1.SubscribeRequest{Port: 80, HttpFilters: [][]byte{[]byte(e.filter("x", "/"))}}, codes.InvalidArgument},
		{"filter not JSON", "alice-session", e.stealReq("{nope"), codes.InvalidArgument},
		{"empty filter", "alice-session", e.stealReq(""), codes.InvalidArgument},
		{"filter for another port", "alice-session", &agentv1.SubscribeRequest{Port: 81, Mode: agentv1.SubscribeRequest_STEAL, HttpFilters: [][]byte{[]byte(e.filter("x", "/"))}}, codes.InvalidArgument},
		{"unknown mode", "alice-session", &agentv1.SubscribeRequest{Port: 80, Mode: 7}, codes.InvalidArgument},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.subscribe(tc.session, tc.req)
			if status.Code(err) != tc.code {
				t.Errorf("Subscribe = %v, want %v", err, tc.code)
			}
		})
	}
	if e.rd.count() != 0 || e.srv.Active() != 0 {
		t.Errorf("refused subscriptions left %d redirects, %d subscriptions", e.rd.count(), e.srv.Active())
	}
}

func TestConflicts(t *testing.T) {
	e := newEnv(t, Options{})
	a := e.mustSubscribe("alice-session", e.stealReq(e.filter("api", "/api/")))
	if r := e.rd.last(); !r.flush || r.session != "alice-session" || r.port != e.app {
		t.Errorf("steal redirect = %+v, want a flushing one for alice on %d", r, e.app)
	}

	// Another session: a whole-port steal and an overlapping filter are refused; a disjoint
	// filter and a mirror are not.
	st, err := e.subscribe("bob-session", e.stealReq())
	must(t, err)
	r := st.first.GetRefused()
	if r == nil || r.HolderSession != "alice-session" || r.HolderUser != "alice" || r.HolderHost != "alice-laptop" ||
		!strings.Contains(r.Message, fmt.Sprintf("port %d", e.app)) || !strings.Contains(r.Message, `"api"`) {
		t.Errorf("whole-port steal over a filter: %+v", r)
	}
	if _, err := st.Recv(); err != io.EOF {
		t.Errorf("after Refused: %v, want EOF", err)
	}
	st, err = e.subscribe("bob-session", e.stealReq(e.filter("mine", "/api/v2/")))
	must(t, err)
	r = st.first.GetRefused()
	want := fmt.Sprintf(`port %d: steal "mine" overlaps steal "api" held by session alice-se… (alice@alice-laptop): both match`, e.app)
	if r == nil || !strings.HasPrefix(r.Message, want) || r.HolderSession != "alice-session" {
		t.Errorf("overlapping filter: %+v\nwant a message starting %q", r, want)
	}
	web := e.mustSubscribe("bob-session", e.stealReq(e.filter("web", "/web/")))
	m := e.mustSubscribe("bob-session", &agentv1.SubscribeRequest{Port: uint32(e.app)})
	if r := e.rd.last(); r.flush {
		t.Error("a mirror's redirect flushes conntrack")
	}
	if got := e.rd.count(); got != 3 {
		t.Errorf("%d redirects, want 3", got)
	}
	for _, s := range []*stream{a, web, m} {
		s.cancel()
	}
	waitFor(t, "the ends", func() bool { return e.rd.count() == 0 && e.srv.Active() == 0 })

	// A session may steal the whole port beside its own filter; then no other session's
	// filter can come.
	e.mustSubscribe("alice-session", e.stealReq())
	e.mustSubscribe("alice-session", e.stealReq(e.filter("own", "/own/")))
	st, err = e.subscribe("bob-session", e.stealReq(e.filter("other", "/other/")))
	must(t, err)
	if r := st.first.GetRefused(); r == nil || !strings.Contains(r.Message, "steals the whole port") || r.HolderUser != "alice" {
		t.Errorf("filter under a whole-port steal: %v", st.first)
	}
}

func TestUnavailable(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts Options
		rd   *fakeRedirects
		want string
	}{
		{"targetless", Options{RedirectErr: errors.New("targetless agent: no target network namespace")}, nil, "no target"},
		{"no NET_ADMIN", Options{}, &fakeRedirects{ready: errors.New("netfilter: no iptables backend can list the target's tables (nft: iptables-nft-save: Permission denied (you must be root))")}, "NET_ADMIN"},
		{"iptables fails", Options{}, &fakeRedirects{addErr: errors.New("iptables -A: exit status 4")}, "NET_ADMIN"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.rd != nil {
				tc.opts.Redirects = tc.rd
			}
			e := newEnv(t, tc.opts)
			st, err := e.subscribe("alice-session", e.stealReq())
			must(t, err)
			r := st.first.GetRefused()
			if r == nil || !strings.Contains(r.Message, tc.want) || !strings.Contains(r.Message, fmt.Sprintf("port %d", e.app)) {
				t.Errorf("refusal %v, want one that says %q", st.first, tc.want)
			}
			if e.srv.Active() != 0 || len(e.srv.ports) != 0 {
				t.Error("a refused subscription stays")
			}
		})
	}
}

func TestWholePortSteal(t *testing.T) {
	e := newEnv(t, Options{TunnelTimeout: 300 * time.Millisecond})
	st := e.mustSubscribe("alice-session", e.stealReq())

	t.Run("delivered", func(t *testing.T) {
		c := e.dial()
		ic := nextConn(t, st)
		if ic.LocalAddress != fmt.Sprintf("127.0.0.1:%d", e.app) || ic.ClientAddress != c.LocalAddr().String() {
			t.Errorf("event %v: want local 127.0.0.1:%d, client %s", ic, e.app, c.LocalAddr())
		}
		tun := e.tunnelFor(ic, tunnel.Delivered)
		go lineServer(tun, "local")
		if got := ask(t, c, "hi"); got != "local:hi" {
			t.Errorf("delivered: %q", got)
		}
	})
	t.Run("not delivered", func(t *testing.T) {
		c := e.dial()
		e.tunnelFor(nextConn(t, st), tunnel.NotDelivered)
		if got := ask(t, c, "hi"); got != "app:hi" {
			t.Errorf("not delivered: %q", got)
		}
	})
	t.Run("a malformed verdict is not delivered", func(t *testing.T) {
		c := e.dial()
		e.tunnelFor(nextConn(t, st), 0x7f)
		if got := ask(t, c, "hi"); got != "app:hi" {
			t.Errorf("malformed verdict: %q", got)
		}
	})
	t.Run("no tunnel, then a late one", func(t *testing.T) {
		c := e.dial()
		ic := nextConn(t, st)
		start := time.Now()
		if got := ask(t, c, "hi"); got != "app:hi" {
			t.Errorf("no tunnel: %q", got)
		}
		if el := time.Since(start); el < 250*time.Millisecond {
			t.Errorf("went to the app after %v, before the tunnel timeout", el)
		}
		tok, _ := tunnel.ParseToken(ic.Token)
		a, cli := tcpPair(t)
		if !e.srv.Claim(tok, a) {
			t.Fatal("a late tunnel is left to the outgoing service (it would wait there for nothing)")
		}
		cli.SetReadDeadline(time.Now().Add(5 * time.Second))
		if err := tunnel.ReadStatus(cli); err != tunnel.StatusUnknown {
			t.Errorf("late tunnel: %v, want StatusUnknown", err)
		}
	})
	t.Run("unknown tokens are not claimed", func(t *testing.T) {
		a, _ := tcpPair(t)
		if e.srv.Claim(tunnel.NewToken(), a) {
			t.Error("Claim took a token it never issued")
		}
	})
	t.Run("the session's end", func(t *testing.T) {
		c := e.dial()
		tun := e.tunnelFor(nextConn(t, st), tunnel.Delivered)
		go lineServer(tun, "local")
		ask(t, c, "hi")
		e.srv.EndSession("alice-session")
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadAll(c); err != nil && !isReset(err) {
			t.Errorf("stolen connection after its session ended: %v", err)
		}
		if _, err := st.Recv(); err == nil {
			t.Error("the stream goes on")
		}
		if e.rd.count() != 0 || e.srv.Active() != 0 {
			t.Errorf("after the session: %d redirects, %d subscriptions", e.rd.count(), e.srv.Active())
		}
	})
}

func isReset(err error) bool { return strings.Contains(err.Error(), "reset") }

func TestMirror(t *testing.T) {
	e := newEnv(t, Options{MirrorBuffer: 256 << 10})
	st := e.mustSubscribe("alice-session", &agentv1.SubscribeRequest{Port: uint32(e.app)})

	t.Run("copy", func(t *testing.T) {
		c := e.dial()
		tun := e.tunnelFor(nextConn(t, st), tunnel.Delivered)
		if got := ask(t, c, "one"); got != "app:one" {
			t.Errorf("mirrored: %q", got)
		}
		if got := ask(t, c, "two"); got != "app:two" {
			t.Errorf("mirrored: %q", got)
		}
		tun.Write([]byte("answers are discarded\n"))
		c.(*net.TCPConn).CloseWrite()
		tun.SetReadDeadline(time.Now().Add(5 * time.Second))
		got, err := io.ReadAll(tun)
		if err != nil || string(got) != "one\ntwo\n" {
			t.Errorf("the copy: %q, %v", got, err)
		}
	})
	t.Run("a stuck mirror is dropped, the connection goes on", func(t *testing.T) {
		c := e.dial()
		tun := e.tunnelFor(nextConn(t, st), tunnel.Delivered) // never read
		// 8 MiB through a 256 KiB buffer and small socket buffers, in lines within
		// bufio.Scanner's limit.
		line := strings.Repeat("x", 16<<10)
		for i := range 512 {
			if got := ask(t, c, line); got != "app:"+line {
				t.Fatalf("line %d: %.20q", i, got)
			}
		}
		tun.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := io.Copy(io.Discard, tun)
		if err != nil && !isReset(err) {
			t.Errorf("the dropped copy's tunnel: %v, want its end", err)
		}
		if n >= 512*(16<<10+1) {
			t.Errorf("the stuck mirror got all %d bytes: nothing was dropped", n)
		}
	})
	t.Run("no tunnel", func(t *testing.T) {
		c := e.dial()
		nextConn(t, st)
		if got := ask(t, c, "alone"); got != "app:alone" {
			t.Errorf("%q", got)
		}
	})
}

func TestProcFiles(t *testing.T) {
	tcp := `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0000000000000000 100 0 0 10 0
   1: 0100007F:0035 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2 1 0000000000000000 100 0 0 10 0
   2: 0101A8C0:1F90 0201A8C0:D431 01 00000000:00000000 00:00000000 00000000     0        0 3 1 0000000000000000 100 0 0 10 0
   3: garbage
`
	ports, err := listeningPorts(strings.NewReader(tcp))
	if err != nil || fmt.Sprint(ports) != "[8080 53]" {
		t.Errorf("listeningPorts = %v, %v", ports, err)
	}
	route := `Iface	Destination	Gateway 	Flags	RefCnt	Use	Metric	Mask		MTU	Window	IRTT
eth0	0001F40A	00000000	0001	0	0	0	00FFFFFF	0	0	0
eth0	00000000	0101F40A	0003	0	0	0	00000000	0	0	0
`
	if gw := defaultGateway(strings.NewReader(route)); gw != netip.MustParseAddr("10.244.1.1") {
		t.Errorf("defaultGateway = %v", gw)
	}
	if gw := defaultGateway(strings.NewReader("junk\n\x00\xff")); gw.IsValid() {
		t.Errorf("defaultGateway of junk = %v", gw)
	}
}

func TestHolderText(t *testing.T) {
	for _, tc := range []struct{ id, user, host, want string }{
		{"3f2a9c01deadbeef", "bob", "bob-laptop", "session 3f2a9c01… (bob@bob-laptop)"},
		{"short", "", "", "session short"},
		{"short", "bob", "", "session short (bob)"},
	} {
		if got := holderText(tc.id, tc.user, tc.host); got != tc.want {
			t.Errorf("holderText(%q, %q, %q) = %q, want %q", tc.id, tc.user, tc.host, got, tc.want)
		}
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after 10s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
