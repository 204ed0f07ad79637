package httpsteal

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kwarp-dev/kwarp/agent/api/stealfilter"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// h2cClient speaks HTTP/2 with prior knowledge, over one connection.
func h2cClient() *http.Client {
	tr := &http.Transport{Protocols: new(http.Protocols), DisableCompression: true}
	tr.Protocols.SetUnencryptedHTTP2(true)
	return &http.Client{Transport: tr, Timeout: 20 * time.Second}
}

var aliceOnly = &stealfilter.Match{Header: hdrMatch("x-user", stealfilter.StringMatch{Exact: "alice"})}

func TestH2CPriorKnowledge(t *testing.T) {
	app := newServer(t, "app", nil, true)
	local := newServer(t, "local", nil, true)
	f := newFront(t, Options{DialApp: app.dial})
	f.add(t, "alice", "mine", aliceOnly, local.dial)
	c := h2cClient()
	for i := 0; i < 2; i++ {
		body, resp := get(t, c, newReq(t, "POST", f.url("/a?q=1"), strings.NewReader("x"), "X-User", "alice"))
		if resp.ProtoMajor != 2 || body != "local POST /a?q=1" {
			t.Errorf("matched: %s %q", resp.Proto, body)
		}
		if body, _ := get(t, c, newReq(t, "GET", f.url("/b"), nil, "X-User", "bob")); body != "app GET /b" {
			t.Errorf("unmatched: %q", body)
		}
	}
	if f.conns.Load() != 1 || app.conns.Load() != 1 || local.conns.Load() != 1 {
		t.Errorf("connections: client %d, app %d, local %d; want 1 each", f.conns.Load(), app.conns.Load(), local.conns.Load())
	}

	// the session ends: the same client connection's next matching stream goes to the app
	f.RemoveOwner("alice")
	if body, _ := get(t, c, newReq(t, "GET", f.url("/c"), nil, "X-User", "alice")); body != "app GET /c" {
		t.Errorf("after removal: %q", body)
	}
	if f.conns.Load() != 1 {
		t.Errorf("%d client connections", f.conns.Load())
	}
}

// TestH2Streams: concurrent streams, a large body both ways, trailers, and a local process
// that fails mid-response (the client's stream is reset, no hang).
func TestH2Streams(t *testing.T) {
	local := newServer(t, "local", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/echo":
			w.Header().Set("Trailer", "X-Count")
			n, _ := io.Copy(w, r.Body)
			w.Header().Set("X-Count", itoa(n))
		case "/abort":
			io.WriteString(w, "partial")
			w.(http.Flusher).Flush()
			panic(http.ErrAbortHandler)
		case "/slow":
			time.Sleep(50 * time.Millisecond)
			io.WriteString(w, "slow")
		}
	}), true)
	app := newServer(t, "app", nil, true)
	f := newFront(t, Options{DialApp: app.dial})
	f.add(t, "alice", "mine", aliceOnly, local.dial)
	c := h2cClient()

	data := bytes.Repeat([]byte("0123456789"), 1<<20) // 10 MiB
	body, resp := get(t, c, newReq(t, "PUT", f.url("/echo"), bytes.NewReader(data), "X-User", "alice"))
	if body != string(data) || resp.Trailer.Get("X-Count") != itoa(int64(len(data))) {
		t.Errorf("echo: %d bytes, trailer %q", len(body), resp.Trailer)
	}

	done := make(chan string, 20)
	for i := 0; i < 10; i++ {
		go func() {
			resp, err := c.Do(newReq(t, "GET", f.url("/slow"), nil, "X-User", "alice"))
			if err != nil {
				done <- err.Error()
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			done <- string(b)
		}()
		go func() {
			resp, err := c.Get(f.url("/app"))
			if err != nil {
				done <- err.Error()
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			done <- string(b)
		}()
	}
	for i := 0; i < 20; i++ {
		if got := <-done; got != "slow" && got != "app GET /app" {
			t.Errorf("concurrent stream: %q", got)
		}
	}

	resp, err := c.Do(newReq(t, "GET", f.url("/abort"), nil, "X-User", "alice"))
	if err == nil {
		_, err = io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	if err == nil {
		t.Error("a stream whose local handler died read to a clean end")
	}
	if body, _ := get(t, c, newReq(t, "GET", f.url("/after"), nil)); body != "app GET /after" {
		t.Errorf("after the reset: %q", body)
	}
	if f.conns.Load() != 1 {
		t.Errorf("%d client connections, want 1", f.conns.Load())
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// TestH2LargeBodyStreamed sends 50 MiB up and down over h2c while watching the heap: HTTP/2
// flow control bounds what the router holds.
func TestH2LargeBodyStreamed(t *testing.T) {
	if testing.Short() {
		t.Skip("moves 100 MiB")
	}
	const size = 50 << 20
	local := newServer(t, "local", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == "GET" {
			io.Copy(w, io.LimitReader(zeros{}, size))
			return
		}
		n, _ := io.Copy(io.Discard, r.Body)
		io.WriteString(w, itoa(n))
	}), true)
	app := newServer(t, "app", nil, true)
	f := newFront(t, Options{DialApp: app.dial})
	f.add(t, "alice", "mine", aliceOnly, local.dial)
	c := h2cClient()
	peak := watchHeap(t)
	if body, _ := get(t, c, newReq(t, "PUT", f.url("/up"), io.LimitReader(zeros{}, size), "X-User", "alice")); body != itoa(size) {
		t.Errorf("upload: local got %s bytes", body)
	}
	resp, err := c.Do(newReq(t, "GET", f.url("/down"), nil, "X-User", "alice"))
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil || n != size {
		t.Errorf("download: %d bytes, %v", n, err)
	}
	grew := peak()
	t.Logf("heap grew by %d KiB at most while 100 MiB went through", grew>>10)
	if grew > 32<<20 {
		t.Errorf("heap grew by %d MiB: bodies are being buffered", grew>>20)
	}
}

// TestH2LocalGone: a stream for a session whose process no longer listens goes to the app.
func TestH2LocalGone(t *testing.T) {
	app := newServer(t, "app", nil, true)
	gone := newServer(t, "local", nil, true)
	dial := gone.dial
	gone.Close()
	f := newFront(t, Options{DialApp: app.dial})
	f.add(t, "alice", "mine", aliceOnly, dial)
	if body, _ := get(t, h2cClient(), newReq(t, "GET", f.url("/x"), nil, "X-User", "alice")); body != "app GET /x" {
		t.Errorf("got %q", body)
	}
}

// grpcServer serves the health service with service name+"-only" SERVING.
func grpcServer(t *testing.T, name string) (*health.Server, DialFunc) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	hs := health.NewServer()
	hs.SetServingStatus(name+"-only", healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(s, hs)
	go s.Serve(ln)
	t.Cleanup(s.Stop)
	return hs, func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", ln.Addr().String())
	}
}

// TestGRPC routes gRPC calls by metadata over one h2c connection: unary calls (trailers
// after the message, and trailers-only errors) and a server stream.
func TestGRPC(t *testing.T) {
	_, appDial := grpcServer(t, "app")
	localHealth, localDial := grpcServer(t, "local")
	f := newFront(t, Options{DialApp: appDial})
	f.add(t, "alice", "grpc", &stealfilter.Match{Header: hdrMatch("x-kwarp-user", stealfilter.StringMatch{Regex: "^alice$"})}, localDial)

	cc, err := grpc.NewClient(f.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	hc := healthpb.NewHealthClient(cc)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	alice := metadata.AppendToOutgoingContext(ctx, "x-kwarp-user", "alice")

	check := func(ctx context.Context, service string) (healthpb.HealthCheckResponse_ServingStatus, codes.Code) {
		resp, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: service})
		return resp.GetStatus(), status.Code(err)
	}
	if st, code := check(alice, "local-only"); code != codes.OK || st != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("alice → local: %v %v", st, code)
	}
	if _, code := check(ctx, "local-only"); code != codes.NotFound {
		t.Errorf("others → app, which does not know local-only: %v", code)
	}
	if st, code := check(ctx, "app-only"); code != codes.OK || st != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("others → app: %v %v", st, code)
	}
	if _, code := check(alice, "app-only"); code != codes.NotFound {
		t.Errorf("alice → local, which does not know app-only: %v", code)
	}

	// server streaming: the second message comes while the stream stays open
	w, err := hc.Watch(alice, &healthpb.HealthCheckRequest{Service: "local-only"})
	if err != nil {
		t.Fatal(err)
	}
	if m, err := w.Recv(); err != nil || m.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("watch: %v %v", m, err)
	}
	localHealth.SetServingStatus("local-only", healthpb.HealthCheckResponse_NOT_SERVING)
	if m, err := w.Recv(); err != nil || m.Status != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("watch update: %v %v", m, err)
	}
	if f.conns.Load() != 1 {
		t.Errorf("%d client connections, want 1", f.conns.Load())
	}
}

// TestH2CUpgrade upgrades an HTTP/1.1 connection to h2c: the router answers the upgrade,
// stream 1 (the upgrade request) goes to the local process, stream 3 to the app.
func TestH2CUpgrade(t *testing.T) {
	app := newServer(t, "app", nil, true)
	local := newServer(t, "local", nil, true)
	f := newFront(t, Options{DialApp: app.dial})
	f.add(t, "alice", "mine", aliceOnly, local.dial)

	rc := dialRaw(t, f.addr)
	rc.send(t, "GET /up HTTP/1.1\r\nHost: x\r\nX-User: alice\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABk\r\n\r\n")
	resp, err := http.ReadResponse(rc.br, nil)
	if err != nil || resp.StatusCode != 101 || resp.Header.Get("Upgrade") != "h2c" {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	h := newH2Raw(t, rc)
	if st, body := h.response(t, 1); st != "200" || body != "local GET /up" {
		t.Errorf("stream 1: %s %q", st, body)
	}
	h.request(t, 3, "GET", "/other", "x-user", "bob")
	if st, body := h.response(t, 3); st != "200" || body != "app GET /other" {
		t.Errorf("stream 3: %s %q", st, body)
	}
	h.request(t, 5, "GET", "/again", "x-user", "alice")
	if st, body := h.response(t, 5); st != "200" || body != "local GET /again" {
		t.Errorf("stream 5: %s %q", st, body)
	}
}

// TestH2CUpgradeDeclined: the destination speaks only HTTP/1.1, so the upgrade request
// goes to it unchanged, which ignores the Upgrade: the client stays on HTTP/1.1. The probe
// is made once.
func TestH2CUpgradeDeclined(t *testing.T) {
	app := newServer(t, "app", nil, false)
	local := newServer(t, "local", nil, false)
	f := newFront(t, Options{DialApp: app.dial})
	f.add(t, "alice", "mine", aliceOnly, local.dial)
	for i := 0; i < 2; i++ {
		rc := dialRaw(t, f.addr)
		rc.send(t, "GET /up HTTP/1.1\r\nHost: x\r\nX-User: alice\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABk\r\n\r\n")
		if resp, body := rc.response(t, "GET"); resp.StatusCode != 200 || body != "local GET /up" {
			t.Fatalf("%d %q", resp.StatusCode, body)
		}
		rc.send(t, "GET /next HTTP/1.1\r\nHost: x\r\n\r\n")
		if _, body := rc.response(t, "GET"); body != "app GET /next" {
			t.Errorf("next: %q", body)
		}
	}
	if n := local.conns.Load(); n != 3 {
		t.Errorf("local saw %d connections, want 3 (one probe, one per client connection)", n)
	}
}

// h2Raw is a hand-driven HTTP/2 client for the upgraded connection.
type h2Raw struct {
	fr  *http2.Framer
	enc *hpack.Encoder
	buf bytes.Buffer
}

func newH2Raw(t *testing.T, rc *rawConn) *h2Raw {
	if _, err := io.WriteString(rc, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	h := &h2Raw{fr: http2.NewFramer(rc, rc.br)}
	h.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	h.enc = hpack.NewEncoder(&h.buf)
	if err := h.fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	return h
}

func (h *h2Raw) request(t *testing.T, id uint32, method, path string, kv ...string) {
	h.buf.Reset()
	for _, f := range [][2]string{{":method", method}, {":scheme", "http"}, {":authority", "x"}, {":path", path}} {
		h.enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	for i := 0; i+1 < len(kv); i += 2 {
		h.enc.WriteField(hpack.HeaderField{Name: kv[i], Value: kv[i+1]})
	}
	if err := h.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: h.buf.Bytes(), EndStream: true, EndHeaders: true}); err != nil {
		t.Fatal(err)
	}
}

// response reads frames until stream id ends, and gives its status and body.
func (h *h2Raw) response(t *testing.T, id uint32) (st, body string) {
	var b strings.Builder
	for {
		f, err := h.fr.ReadFrame()
		if err != nil {
			t.Fatalf("stream %d: %v", id, err)
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				h.fr.WriteSettingsAck()
			}
		case *http2.MetaHeadersFrame:
			if f.StreamID == id && st == "" {
				st = f.PseudoValue("status")
			}
			if f.StreamID == id && f.StreamEnded() {
				return st, b.String()
			}
		case *http2.DataFrame:
			if f.StreamID == id {
				b.Write(f.Data())
				if f.StreamEnded() {
					return st, b.String()
				}
			}
		case *http2.RSTStreamFrame:
			t.Fatalf("stream %d reset: %v", f.StreamID, f.ErrCode)
		case *http2.GoAwayFrame:
			t.Fatalf("GOAWAY: %v %s", f.ErrCode, f.DebugData())
		}
	}
}
