package agent

// Incoming through the whole agent: the test pod has a network namespace of its own with an
// "app" on port 8080, wired by a veth pair to a client namespace, so the client's connections
// arrive from outside the pod through nat PREROUTING as a Service's do. The agent redirects
// with its real netfilter.Redirector (iptables in the pod's namespace), and the test plays the
// CLI: it subscribes, opens the tunnels the events ask for and bridges them to "local
// processes" listening in the test's own namespace.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kwarp-dev/kwarp/agent/api/tunnel"
	agentv1 "github.com/kwarp-dev/kwarp/agent/api/v1"
	"github.com/kwarp-dev/kwarp/agent/netfilter"
	"github.com/kwarp-dev/kwarp/agent/netns/netnstest"
	"github.com/kwarp-dev/kwarp/agent/sessionserver"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// The Redirector starts the test binary again as its guard (netfilter.GuardArg), as the
// agent's main would be: that run must be the guard, not the tests.
func init() {
	if len(os.Args) > 1 && os.Args[1] == netfilter.GuardArg {
		os.Exit(netfilter.RunGuard(os.Args[2:], os.Stderr))
	}
}

const (
	inPodIP    = "10.78.0.1"
	inClientIP = "10.78.0.2"
	appPort    = 8080
)

var podAddr = net.JoinHostPort(inPodIP, fmt.Sprint(appPort))

// incomingPod is the pod with its app, a client namespace wired to it, and the agent.
type incomingPod struct {
	pod, client int
	conn        *grpc.ClientConn
	srv         *Server
	agentAddr   string
}

func startIncomingPod(t *testing.T) *incomingPod {
	t.Helper()
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs ip (iproute2) to wire the test namespaces")
	}
	if _, err := os.Stat(netfilter.DefaultBinDir + "/xtables-nft-multi"); err != nil {
		if _, err := os.Stat(netfilter.DefaultBinDir + "/xtables-legacy-multi"); err != nil {
			t.Skip("needs Debian's iptables (xtables-nft-multi or xtables-legacy-multi)")
		}
	}
	p := startPodWith(t, true, nil)
	ip := &incomingPod{pod: p.pid, client: netnstest.Start(t)}
	// Made inside the pod's namespace, so the names never meet the host's; gone with it.
	netnstest.Run(t, ip.pod, "ip", "link", "add", "kwi0", "type", "veth", "peer", "name", "kwj0")
	netnstest.Run(t, ip.pod, "ip", "link", "set", "kwj0", "netns", fmt.Sprint(ip.client))
	netnstest.Run(t, ip.pod, "ip", "addr", "add", inPodIP+"/24", "dev", "kwi0")
	netnstest.Run(t, ip.pod, "ip", "link", "set", "kwi0", "up")
	netnstest.Run(t, ip.client, "ip", "addr", "add", inClientIP+"/24", "dev", "kwj0")
	netnstest.Run(t, ip.client, "ip", "link", "set", "kwj0", "up")

	// The deployed app: says who it is, what it was asked and how much body it read.
	app := netnstest.Listen(t, ip.pod, "tcp", fmt.Sprintf(":%d", appPort))
	go http.Serve(app, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		fmt.Fprintf(w, "app %s %s %d", r.Method, r.URL.Path, n)
	}))
	ip.conn, ip.srv, _ = serve(t, Options{TargetPID: p.pid, TunnelPairTimeout: pairTimeout, IncomingTunnelTimeout: 2 * time.Second})
	ip.agentAddr = ip.conn.Target()
	return ip
}

// holdSessionAs opens and holds session id for user@host.
func holdSessionAs(t *testing.T, conn *grpc.ClientConn, id, user, host string) context.Context {
	t.Helper()
	openAndHold(t, conn, &agentv1.OpenRequest{SessionId: id, User: user, Host: host})
	return metadata.AppendToOutgoingContext(context.Background(), sessionserver.SessionIDKey, id)
}

// localServer is a "local process": an HTTP server in the test's namespace.
func localServer(t *testing.T, name string) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	t.Cleanup(func() { l.Close() })
	go http.Serve(l, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		fmt.Fprintf(w, "%s %s %s %d", name, r.Method, r.URL.Path, n)
	}))
	return l.Addr().String()
}

// cli is the test's stand-in for a CLI's incoming subscription.
type cli struct {
	t      *testing.T
	stream agentv1.Incoming_SubscribeClient
	cancel context.CancelFunc
	first  *agentv1.IncomingEvent
	events chan *agentv1.IncomingConnection // every connection event, after the bridge saw it
}

// subscribe subscribes and reads the first event.
func subscribe(t *testing.T, ip *incomingPod, sctx context.Context, req *agentv1.SubscribeRequest) *cli {
	t.Helper()
	ctx, cancel := context.WithCancel(sctx)
	t.Cleanup(cancel)
	st, err := agentv1.NewIncomingClient(ip.conn).Subscribe(ctx, req)
	must(t, err)
	first, err := st.Recv()
	if err != nil {
		t.Fatalf("Subscribe %v: %v", req, err)
	}
	return &cli{t: t, stream: st, cancel: cancel, first: first, events: make(chan *agentv1.IncomingConnection, 100)}
}

// bridge serves the subscription's connections until the stream ends: local() says where each
// goes ("" = not delivered). mirror: read the tunnel into copies instead (nil: bridge).
func (c *cli) bridge(agentAddr string, local func() string, copies chan<- string) {
	go func() {
		for {
			ev, err := c.stream.Recv()
			if err != nil {
				return
			}
			ic := ev.GetConnection()
			if ic == nil {
				c.t.Errorf("unexpected event %v", ev)
				continue
			}
			select {
			case c.events <- ic:
			default:
			}
			go func() {
				tun, err := net.Dial("tcp", agentAddr)
				if err != nil {
					return
				}
				defer tun.Close()
				tok, _ := tunnel.ParseToken(ic.Token)
				must(c.t, tunnel.WriteHeader(tun, tok))
				addr := local()
				if addr == "" {
					tun.Write([]byte{tunnel.NotDelivered})
					io.Copy(io.Discard, tun)
					return
				}
				if copies != nil {
					tun.Write([]byte{tunnel.Delivered})
					if tunnel.ReadStatus(tun) != nil {
						return
					}
					if addr == "never-read" {
						time.Sleep(time.Minute)
						return
					}
					b, _ := io.ReadAll(tun)
					copies <- string(b)
					return
				}
				lc, err := net.Dial("tcp", addr)
				if err != nil {
					tun.Write([]byte{tunnel.NotDelivered})
					return
				}
				defer lc.Close()
				tun.Write([]byte{tunnel.Delivered})
				if tunnel.ReadStatus(tun) != nil {
					return
				}
				done := make(chan struct{})
				go func() {
					io.Copy(lc, tun)
					lc.(*net.TCPConn).CloseWrite()
					close(done)
				}()
				io.Copy(tun, lc)
				tun.(*net.TCPConn).CloseWrite()
				<-done
			}()
		}
	}()
}

func fixed(addr string) func() string { return func() string { return addr } }

// dialPod connects from the client's namespace to the pod's app port.
func dialPod(t *testing.T, ip *incomingPod) net.Conn {
	t.Helper()
	var c net.Conn
	err := netnstest.In(ip.client, func() (err error) {
		c, err = net.DialTimeout("tcp", podAddr, 5*time.Second)
		return err
	})
	must(t, err)
	t.Cleanup(func() { c.Close() })
	return c
}

// httpConn is one keep-alive client connection to the pod.
type httpConn struct {
	c net.Conn
	r *bufio.Reader
}

func newHTTPConn(t *testing.T, ip *incomingPod) *httpConn {
	c := dialPod(t, ip)
	return &httpConn{c: c, r: bufio.NewReader(c)}
}

// get sends a GET with extra header lines and returns the body of the answer.
func (h *httpConn) get(t *testing.T, path string, headers ...string) string {
	t.Helper()
	h.c.SetDeadline(time.Now().Add(15 * time.Second))
	req := "GET " + path + " HTTP/1.1\r\nHost: pod\r\n"
	for _, hd := range headers {
		req += hd + "\r\n"
	}
	_, err := io.WriteString(h.c, req+"\r\n")
	must(t, err)
	resp, err := http.ReadResponse(h.r, nil)
	if err != nil {
		t.Fatalf("GET %s %v: %v", path, headers, err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	must(t, err)
	return string(b)
}

// who makes one request on a new connection.
func who(t *testing.T, ip *incomingPod, path string, headers ...string) string {
	t.Helper()
	h := newHTTPConn(t, ip)
	defer h.c.Close()
	return h.get(t, path, headers...)
}

// natRules are the pod's nat rules that matter (appended rules and user chains), per backend.
func natRules(t *testing.T, pid int) string {
	t.Helper()
	var b strings.Builder
	for _, save := range []string{"iptables-nft-save", "iptables-legacy-save"} {
		if _, err := exec.LookPath(save); err != nil {
			continue
		}
		var out []byte
		err := netnstest.In(pid, func() (err error) {
			out, err = exec.Command(save, "-t", "nat").CombinedOutput()
			return err
		})
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(out), "\n") {
			if strings.HasPrefix(line, "-A ") || strings.HasPrefix(line, ":") && !slices.Contains([]string{":PREROUTING", ":INPUT", ":OUTPUT", ":POSTROUTING"}, strings.Fields(line)[0]) {
				fmt.Fprintf(&b, "%s: %s\n", save, line)
			}
		}
	}
	return b.String()
}

func waitNatRules(t *testing.T, pid int, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := natRules(t, pid)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("nat rules:\n%s\nwant:\n%s", got, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func steal(port uint32, filters ...string) *agentv1.SubscribeRequest {
	req := &agentv1.SubscribeRequest{Port: port, Mode: agentv1.SubscribeRequest_STEAL}
	for _, f := range filters {
		req.HttpFilters = append(req.HttpFilters, []byte(f))
	}
	return req
}

func headerFilter(name, user string) string {
	return fmt.Sprintf(`{"kind":"http","name":%q,"port":%d,"match":{"header":[{"name":"x-kwarp-user","exact":%q}]}}`, name, appPort, user)
}

func TestIncoming(t *testing.T) {
	ip := startIncomingPod(t)
	before := natRules(t, ip.pod)
	if got := who(t, ip, "/hello"); got != "app GET /hello 0" {
		t.Fatalf("without a subscription: %q", got)
	}
	alice := holdSessionAs(t, ip.conn, "a11ce0000000", "alice", "alice-laptop")
	bob := holdSessionAs(t, ip.conn, "b0b000000000", "bob", "bob-laptop")

	t.Run("session not open", func(t *testing.T) {
		ctx := metadata.AppendToOutgoingContext(context.Background(), sessionserver.SessionIDKey, "nobody")
		st, err := agentv1.NewIncomingClient(ip.conn).Subscribe(ctx, steal(appPort))
		must(t, err)
		if _, err := st.Recv(); status.Code(err) != codes.FailedPrecondition {
			t.Errorf("Subscribe of a session not open: %v, want FailedPrecondition", err)
		}
		st, err = agentv1.NewIncomingClient(ip.conn).Subscribe(context.Background(), steal(appPort))
		must(t, err)
		if _, err := st.Recv(); status.Code(err) != codes.InvalidArgument {
			t.Errorf("Subscribe without a session: %v, want InvalidArgument", err)
		}
	})

	t.Run("whole-port steal", func(t *testing.T) {
		c := subscribe(t, ip, alice, steal(appPort))
		sub := c.first.GetSubscribed()
		if sub == nil {
			t.Fatalf("first event %v, want Subscribed", c.first)
		}
		if !slices.Contains(sub.PodPorts, appPort) || len(sub.PodPorts) != 1 {
			t.Errorf("pod_ports = %v, want [%d] (the app's, not the agent's listener)", sub.PodPorts, appPort)
		}
		if during := natRules(t, ip.pod); !strings.Contains(during, "kwarp:") {
			t.Errorf("no kwarp rule in the pod's nat table while subscribed:\n%s", during)
		}
		var target atomic.Value
		target.Store(localServer(t, "alice"))
		c.bridge(ip.agentAddr, func() string { return target.Load().(string) }, nil)

		if got := who(t, ip, "/x"); got != "alice GET /x 0" {
			t.Errorf("stolen, delivered: %q", got)
		}
		ev := <-c.events
		if !strings.HasPrefix(ev.ClientAddress, inClientIP+":") || ev.LocalAddress != podAddr {
			t.Errorf("event addresses: client %q local %q, want %s:* and %s", ev.ClientAddress, ev.LocalAddress, inClientIP, podAddr)
		}
		target.Store("")
		if got := who(t, ip, "/y"); got != "app GET /y 0" {
			t.Errorf("stolen, not delivered: %q, want the app's answer", got)
		}
		target.Store(localServer(t, "alice"))

		// Bob cannot steal what Alice steals, whole or filtered.
		r := subscribe(t, ip, bob, steal(appPort)).first.GetRefused()
		if r == nil || r.HolderSession != "a11ce0000000" || !strings.Contains(r.Message, "alice@alice-laptop") || !strings.Contains(r.Message, "port 8080") {
			t.Errorf("second whole-port steal: %v", r)
		}
		r = subscribe(t, ip, bob, steal(appPort, headerFilter("mine", "bob"))).first.GetRefused()
		if r == nil || r.HolderSession != "a11ce0000000" || !strings.Contains(r.Message, `"mine"`) {
			t.Errorf("filtered steal under a whole-port steal: %v", r)
		}

		c.cancel()
		waitNatRules(t, ip.pod, before)
		waitFor(t, "the subscription's end", func() bool { return ip.srv.incoming.Active() == 0 })
		if got := who(t, ip, "/z"); got != "app GET /z 0" {
			t.Errorf("after the subscription: %q", got)
		}
	})

	t.Run("filtered steal, two sessions", func(t *testing.T) {
		a := subscribe(t, ip, alice, steal(appPort, headerFilter("alice-only", "alice")))
		if a.first.GetSubscribed() == nil {
			t.Fatalf("alice: %v", a.first)
		}
		a.bridge(ip.agentAddr, fixed(localServer(t, "alice")), nil)
		b := subscribe(t, ip, bob, steal(appPort, headerFilter("bob-only", "bob")))
		if b.first.GetSubscribed() == nil {
			t.Fatalf("bob: %v", b.first)
		}
		b.bridge(ip.agentAddr, fixed(localServer(t, "bob")), nil)

		// One keep-alive connection, request by request.
		h := newHTTPConn(t, ip)
		for _, tc := range []struct{ path, header, want string }{
			{"/1", "x-kwarp-user: alice", "alice GET /1 0"},
			{"/2", "", "app GET /2 0"},
			{"/3", "x-kwarp-user: bob", "bob GET /3 0"},
			{"/4", "x-kwarp-user: alice", "alice GET /4 0"},
			{"/5", "x-kwarp-user: carol", "app GET /5 0"},
		} {
			var hs []string
			if tc.header != "" {
				hs = append(hs, tc.header)
			}
			if got := h.get(t, tc.path, hs...); got != tc.want {
				t.Errorf("GET %s %q = %q, want %q", tc.path, tc.header, got, tc.want)
			}
		}

		// An overlapping filter is refused, naming the holder.
		carol := holdSessionAs(t, ip.conn, "ca501000000000", "carol", "carol-box")
		r := subscribe(t, ip, carol, steal(appPort, headerFilter("also-alice", "alice"))).first.GetRefused()
		if r == nil {
			t.Fatal("overlapping filter not refused")
		}
		if r.HolderSession != "a11ce0000000" || r.HolderUser != "alice" || r.HolderHost != "alice-laptop" ||
			!strings.Contains(r.Message, `"also-alice"`) || !strings.Contains(r.Message, `"alice-only"`) ||
			!strings.Contains(r.Message, "alice@alice-laptop") || !strings.Contains(r.Message, "port 8080") {
			t.Errorf("refusal = %+v", r)
		}
		// So is a whole-port steal.
		r = subscribe(t, ip, carol, steal(appPort)).first.GetRefused()
		if r == nil || r.HolderSession == "" {
			t.Errorf("whole-port steal over filters: %v", r)
		}

		a.cancel()
		b.cancel()
		// the chain stays while a connection it redirected is open (its address
		// translation needs the namespace's connection tracking)
		time.Sleep(200 * time.Millisecond)
		if natRules(t, ip.pod) == before {
			t.Error("the chain went while a connection it redirected was open")
		}
		if got := h.get(t, "/after", "x-kwarp-user: alice"); got != "app GET /after 0" {
			t.Errorf("the open connection after the subscriptions: %q", got)
		}
		h.c.Close()
		waitNatRules(t, ip.pod, before)
		waitFor(t, "the subscriptions' end", func() bool { return ip.srv.incoming.Active() == 0 })
		if got := who(t, ip, "/6", "x-kwarp-user: alice"); got != "app GET /6 0" {
			t.Errorf("after the subscriptions: %q", got)
		}
	})

	// The local process reads the request and dies: the client gets a 502 at once.
	t.Run("local process dies with a request in flight", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		must(t, err)
		defer l.Close()
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				c.Read(make([]byte, 4096))
				c.Close()
			}
		}()
		a := subscribe(t, ip, alice, steal(appPort, headerFilter("alice-only", "alice")))
		a.bridge(ip.agentAddr, fixed(l.Addr().String()), nil)
		h := newHTTPConn(t, ip)
		h.c.SetDeadline(time.Now().Add(10 * time.Second))
		start := time.Now()
		io.WriteString(h.c, "GET /dies HTTP/1.1\r\nHost: pod\r\nx-kwarp-user: alice\r\n\r\n")
		resp, err := http.ReadResponse(h.r, nil)
		if err != nil || resp.StatusCode != 502 {
			t.Errorf("request in flight when the local process died: %v %v after %s; want a 502", resp, err, time.Since(start))
		}
		if took := time.Since(start); took > 3*time.Second {
			t.Errorf("the 502 took %s", took)
		}
		a.cancel()
		waitFor(t, "the subscription's end", func() bool { return ip.srv.incoming.Active() == 0 })
	})

	// The session ends (its CLI exits) while its local process holds a request unanswered:
	// the client gets a 502 at once, and its connection is not reset.
	t.Run("session ends with a request in flight", func(t *testing.T) {
		got := make(chan struct{})
		l, err := net.Listen("tcp", "127.0.0.1:0")
		must(t, err)
		defer l.Close()
		go func() {
			c, err := l.Accept()
			if err != nil {
				return
			}
			defer c.Close()
			c.Read(make([]byte, 4096))
			close(got)
			time.Sleep(5 * time.Second)
		}()
		a := subscribe(t, ip, alice, steal(appPort, headerFilter("alice-only", "alice")))
		a.bridge(ip.agentAddr, fixed(l.Addr().String()), nil)
		h := newHTTPConn(t, ip)
		h.c.SetDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(h.c, "GET /held HTTP/1.1\r\nHost: pod\r\nx-kwarp-user: alice\r\n\r\n")
		<-got
		start := time.Now()
		a.cancel()
		resp, err := http.ReadResponse(h.r, nil)
		if err != nil || resp.StatusCode != 502 {
			t.Errorf("request in flight when the session ended: %v %v after %s; want a 502", resp, err, time.Since(start))
		}
		if took := time.Since(start); took > 3*time.Second {
			t.Errorf("the 502 took %s", took)
		}
		waitFor(t, "the subscription's end", func() bool { return ip.srv.incoming.Active() == 0 })
	})

	t.Run("mirror", func(t *testing.T) {
		early := newHTTPConn(t, ip)
		if got := early.get(t, "/before"); got != "app GET /before 0" {
			t.Fatalf("before the mirror: %q", got)
		}
		m := subscribe(t, ip, alice, &agentv1.SubscribeRequest{Port: appPort, Mode: agentv1.SubscribeRequest_MIRROR})
		if m.first.GetSubscribed() == nil {
			t.Fatalf("mirror: %v", m.first)
		}
		// A mirror does not reset the connections the app already serves (no conntrack flush).
		if got := early.get(t, "/after"); got != "app GET /after 0" {
			t.Errorf("a connection from before the mirror: %q", got)
		}
		copies := make(chan string, 10)
		var mode atomic.Value
		mode.Store("read")
		m.bridge(ip.agentAddr, func() string { return mode.Load().(string) }, copies)

		if got := who(t, ip, "/mirrored", "Connection: close"); got != "app GET /mirrored 0" {
			t.Errorf("mirrored: %q, want the app's answer", got)
		}
		select {
		case cp := <-copies:
			if !strings.HasPrefix(cp, "GET /mirrored HTTP/1.1\r\n") {
				t.Errorf("the mirror's copy: %q", cp)
			}
		case <-time.After(10 * time.Second):
			t.Error("no copy reached the mirror")
		}

		// A mirror that never reads does not hold up the client.
		mode.Store("never-read")
		const size = 24 << 20
		h := newHTTPConn(t, ip)
		h.c.SetDeadline(time.Now().Add(30 * time.Second))
		go func() {
			fmt.Fprintf(h.c, "POST /upload HTTP/1.1\r\nHost: pod\r\nContent-Length: %d\r\n\r\n", size)
			h.c.Write(make([]byte, size))
		}()
		resp, err := http.ReadResponse(h.r, nil)
		must(t, err)
		body, _ := io.ReadAll(resp.Body)
		if want := fmt.Sprintf("app POST /upload %d", size); string(body) != want {
			t.Errorf("upload under a stuck mirror: %q, want %q", body, want)
		}

		// A mirror does not conflict with a steal, and taps what the steal gives the app.
		mode.Store("read")
		s := subscribe(t, ip, bob, steal(appPort, headerFilter("bob-only", "bob")))
		if s.first.GetSubscribed() == nil {
			t.Fatalf("steal beside a mirror: %v", s.first)
		}
		s.bridge(ip.agentAddr, fixed(localServer(t, "bob")), nil)
		if got := who(t, ip, "/s", "x-kwarp-user: bob"); got != "bob GET /s 0" {
			t.Errorf("stolen beside a mirror: %q", got)
		}
		if got := who(t, ip, "/t", "Connection: close"); got != "app GET /t 0" {
			t.Errorf("not stolen beside a mirror: %q", got)
		}
		deadline := time.After(10 * time.Second)
		for found := false; !found; {
			select {
			case cp := <-copies:
				found = strings.HasPrefix(cp, "GET /t ")
			case <-deadline:
				t.Fatal("the mirror got no copy of the connection the router sent to the app")
			}
		}
		m.cancel()
		s.cancel()
		h.c.Close()
		waitNatRules(t, ip.pod, before)
	})

	t.Run("the session's end ends its subscriptions", func(t *testing.T) {
		dave := holdSessionAs(t, ip.conn, "da7e00000000", "dave", "dave-pc")
		c := subscribe(t, ip, dave, steal(appPort))
		if c.first.GetSubscribed() == nil {
			t.Fatalf("dave: %v", c.first)
		}
		ip.srv.incoming.EndSession("da7e00000000")
		waitNatRules(t, ip.pod, before)
		if _, err := c.stream.Recv(); err == nil {
			t.Error("the stream goes on after its session ended")
		}
	})
}

func TestIncomingTargetless(t *testing.T) {
	conn, _, _ := serve(t, Options{TunnelPairTimeout: pairTimeout})
	ctx := holdSessionAs(t, conn, "71e55000", "u", "h")
	st, err := agentv1.NewIncomingClient(conn).Subscribe(ctx, steal(appPort))
	must(t, err)
	ev, err := st.Recv()
	must(t, err)
	r := ev.GetRefused()
	if r == nil || !strings.Contains(r.Message, "port 8080") || !strings.Contains(r.Message, "targetless") {
		t.Fatalf("targetless Subscribe: %v", ev)
	}
	if _, err := st.Recv(); !errors.Is(err, io.EOF) {
		t.Errorf("after Refused: %v, want the stream's end", err)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after 10s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
