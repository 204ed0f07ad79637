package server

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"golang.org/x/net/websocket"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

const emptySHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

func decode[T any](t *testing.T, r io.Reader) T {
	t.Helper()
	var v T
	if err := json.NewDecoder(r).Decode(&v); err != nil {
		t.Fatalf("decode: %v", err)
	}
	return v
}

func TestEchoFields(t *testing.T) {
	s := New(Config{Pod: "sample-abc", Namespace: "ns1"})
	tests := []struct {
		name   string
		method string
		target string
		body   string
		header http.Header
		want   Record
	}{
		{
			name:   "get with query and headers",
			method: http.MethodGet,
			target: "http://svc.example/a/b?x=1&y=two",
			header: http.Header{"X-Test": {"one", "two"}},
			want: Record{Pod: "sample-abc", Namespace: "ns1", Method: "GET", Host: "svc.example",
				Path: "/a/b", Query: "x=1&y=two", Headers: map[string][]string{"X-Test": {"one", "two"}},
				BodySHA256: emptySHA256, Proto: "HTTP/1.1", RemoteAddr: "192.0.2.1:1234"},
		},
		{
			name:   "post body is counted",
			method: http.MethodPost,
			target: "http://svc.example/upload",
			body:   strings.Repeat("z", 1<<20+3),
			want: Record{Pod: "sample-abc", Namespace: "ns1", Method: "POST", Host: "svc.example",
				Path: "/upload", Headers: map[string][]string{}, BodyBytes: 1<<20 + 3,
				BodySHA256: sha256Hex(strings.Repeat("z", 1<<20+3)), ContentLength: 1<<20 + 3,
				Proto: "HTTP/1.1", RemoteAddr: "192.0.2.1:1234"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s.Clear()
			req := httptest.NewRequest(tt.method, tt.target, strings.NewReader(tt.body))
			for k, v := range tt.header {
				req.Header[k] = v
			}
			rr := httptest.NewRecorder()
			s.ServeHTTP(rr, req)
			if rr.Code != http.StatusOK {
				t.Fatalf("status = %d", rr.Code)
			}
			if got := rr.Header().Get("X-Served-By"); got != "sample-abc" {
				t.Errorf("X-Served-By = %q", got)
			}
			if ct := rr.Header().Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type = %q", ct)
			}
			got := decode[Record](t, rr.Body)
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("record\n got %+v\nwant %+v", got, tt.want)
			}
			rec := s.Received()
			if len(rec) != 1 || fmt.Sprint(rec[0]) != fmt.Sprint(tt.want) {
				t.Errorf("Received() = %+v", rec)
			}
		})
	}
}

// TestJSONFieldNames pins the wire names, which e2e tests in other packages rely on.
func TestJSONFieldNames(t *testing.T) {
	s := New(Config{Pod: "p"})
	rr := httptest.NewRecorder()
	s.ServeHTTP(rr, httptest.NewRequest("GET", "/", nil))
	var m map[string]any
	if err := json.Unmarshal(rr.Body.Bytes(), &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"pod", "namespace", "method", "host", "path", "query", "headers", "body_bytes",
		"body_sha256", "content_length", "transfer_encoding", "proto", "remote_addr"} {
		if _, ok := m[k]; !ok {
			t.Errorf("missing key %q in %s", k, rr.Body.Bytes())
		}
	}
	if h, ok := m["headers"].(map[string]any); !ok || h == nil {
		t.Errorf("headers = %#v, want an object even when empty", m["headers"])
	}
	if te, ok := m["transfer_encoding"].([]any); !ok || te == nil {
		t.Errorf("transfer_encoding = %#v, want an array even when empty", m["transfer_encoding"])
	}
}

func TestAdminPaths(t *testing.T) {
	tests := []struct {
		name       string
		method     string
		path       string
		wantStatus int
		wantBody   string // compared after trimming space; "" skips
	}{
		{"health", "GET", "/healthz", 200, "ok"},
		{"received empty is array", "GET", "/_received", 200, "[]"},
		{"clear", "DELETE", "/_received", 204, ""},
		{"received wrong method", "POST", "/_received", 405, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := New(Config{Pod: "p"})
			rr := httptest.NewRecorder()
			s.ServeHTTP(rr, httptest.NewRequest(tt.method, tt.path, nil))
			if rr.Code != tt.wantStatus {
				t.Errorf("status = %d, want %d", rr.Code, tt.wantStatus)
			}
			if tt.wantBody != "" && strings.TrimSpace(rr.Body.String()) != tt.wantBody {
				t.Errorf("body = %q, want %q", rr.Body.String(), tt.wantBody)
			}
			if n := len(s.Received()); n != 0 {
				t.Errorf("admin request was recorded: %d records", n)
			}
		})
	}
}

func TestReceivedRing(t *testing.T) {
	paths := func(n, from int) []string {
		var p []string
		for i := from; i < from+n; i++ {
			p = append(p, fmt.Sprintf("/r%d", i))
		}
		return p
	}
	tests := []struct {
		name      string
		capacity  int
		send      int
		clearAt   int // clear after this many requests; -1 never
		wantPaths []string
	}{
		{"order newest last", 0, 3, -1, paths(3, 0)},
		{"exactly full", 4, 4, -1, paths(4, 0)},
		{"wraps keeping newest", 4, 10, -1, paths(4, 6)},
		{"clear then more", 4, 6, 5, paths(1, 5)},
		{"clear after wrap", 4, 9, 7, paths(2, 7)},
		{"default cap is 1000", 0, 1005, -1, paths(1000, 5)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := New(Config{Pod: "p", Capacity: tt.capacity})
			for i := 0; i < tt.send; i++ {
				if i == tt.clearAt {
					s.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("DELETE", "/_received", nil))
				}
				s.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", fmt.Sprintf("/r%d", i), nil))
				// Admin reads in between must not disturb the ring. Reading a full ring each time
				// would make the large case quadratic, so only the small cases interleave.
				if tt.send < 100 {
					s.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/_received", nil))
					s.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/healthz", nil))
				}
			}
			rr := httptest.NewRecorder()
			s.ServeHTTP(rr, httptest.NewRequest("GET", "/_received", nil))
			recs := decode[[]Record](t, rr.Body)
			var got []string
			for _, r := range recs {
				got = append(got, r.Path)
			}
			if strings.Join(got, ",") != strings.Join(tt.wantPaths, ",") {
				t.Errorf("paths = %v\nwant %v", got, tt.wantPaths)
			}
		})
	}
}

func TestLogOneLinePerRecordedRequest(t *testing.T) {
	var buf bytes.Buffer
	s := New(Config{Pod: "p", Log: &buf})
	for _, p := range []string{"/one", "/healthz", "/_received", "/two?q=1"} {
		s.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", p, nil))
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], `"/one"`) || !strings.Contains(lines[1], `"/two?q=1"`) {
		t.Errorf("log = %q", buf.String())
	}
}

// TestOverRealServer checks keep-alive and concurrent use through a real listener, which the
// recorder-based tests cannot show.
func TestOverRealServer(t *testing.T) {
	s := New(Config{Pod: "p"})
	ts := httptest.NewServer(s)
	defer ts.Close()
	const n = 20
	errc := make(chan error, n)
	for i := 0; i < n; i++ {
		go func() {
			resp, err := http.Post(ts.URL+"/c", "text/plain", strings.NewReader("abc"))
			if err != nil {
				errc <- err
				return
			}
			defer resp.Body.Close()
			var r Record
			if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
				errc <- err
				return
			}
			if r.BodyBytes != 3 {
				err = fmt.Errorf("body_bytes = %d", r.BodyBytes)
			}
			errc <- err
		}()
	}
	for i := 0; i < n; i++ {
		if err := <-errc; err != nil {
			t.Error(err)
		}
	}
	if got := len(s.Received()); got != n {
		t.Errorf("recorded %d, want %d", got, n)
	}
}

func TestGeneratedBody(t *testing.T) {
	for _, n := range []int64{0, 1, 36, 37, 38, 4096, 1<<20 + 5} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			b, err := io.ReadAll(GeneratedBody(n))
			if err != nil {
				t.Fatal(err)
			}
			if int64(len(b)) != n {
				t.Fatalf("len = %d", len(b))
			}
			want := strings.Repeat(generatedPattern, int(n)/len(generatedPattern)+1)[:n]
			if string(b) != want {
				t.Errorf("body differs from the repeated pattern")
			}
			// Small odd reads must give the same bytes as large ones.
			small, err := io.ReadAll(iotest.OneByteReader(GeneratedBody(n)))
			if err != nil || !bytes.Equal(small, b) {
				t.Errorf("one-byte reads differ (err %v)", err)
			}
			if got := GeneratedSHA256(n); got != sha256Hex(want) {
				t.Errorf("GeneratedSHA256 = %s, want %s", got, sha256Hex(want))
			}
		})
	}
	if GeneratedSHA256(0) != emptySHA256 {
		t.Error("GeneratedSHA256(0) is not the hash of nothing")
	}
}

// h2cServer serves s over HTTP/1.1 and cleartext HTTP/2 with prior knowledge, as httpecho does.
func h2cServer(t *testing.T, s http.Handler) *httptest.Server {
	t.Helper()
	ts := httptest.NewUnstartedServer(s)
	ts.Config.Protocols = new(http.Protocols)
	ts.Config.Protocols.SetHTTP1(true)
	ts.Config.Protocols.SetUnencryptedHTTP2(true)
	ts.Start()
	t.Cleanup(ts.Close)
	return ts
}

// TestBodies sends generated bodies with and without a length over both protocols and checks
// that the echo reports what a test needs to prove the body streamed through intact.
func TestBodies(t *testing.T) {
	s := New(Config{Pod: "p"})
	ts := h2cServer(t, s)
	h1 := new(http.Protocols)
	h1.SetHTTP1(true)
	h2c := new(http.Protocols)
	h2c.SetUnencryptedHTTP2(true)
	tests := []struct {
		name      string
		protocols *http.Protocols
		size      int64
		chunked   bool
		wantLen   int64
		wantTE    []string
		wantProto string
	}{
		{"http1 with length", h1, 3 << 20, false, 3 << 20, []string{}, "HTTP/1.1"},
		{"http1 chunked", h1, 3<<20 + 1, true, -1, []string{"chunked"}, "HTTP/1.1"},
		{"h2c with length", h2c, 3 << 20, false, 3 << 20, []string{}, "HTTP/2.0"},
		{"h2c without length", h2c, 3<<20 + 1, true, -1, []string{}, "HTTP/2.0"},
		{"empty", h1, 0, false, 0, []string{}, "HTTP/1.1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := &http.Transport{Protocols: tt.protocols}
			defer tr.CloseIdleConnections()
			var body io.Reader = GeneratedBody(tt.size)
			if tt.size == 0 {
				// A non-nil body of length 0 is sent as one of unknown length.
				body = http.NoBody
			}
			req, _ := http.NewRequest("POST", ts.URL+"/up", body)
			req.ContentLength = tt.size
			if tt.chunked {
				req.ContentLength = -1
			}
			resp, err := (&http.Client{Transport: tr}).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			r := decode[Record](t, resp.Body)
			if r.BodyBytes != tt.size || r.BodySHA256 != GeneratedSHA256(tt.size) || r.ContentLength != tt.wantLen ||
				fmt.Sprint(r.TransferEncoding) != fmt.Sprint(tt.wantTE) || r.Proto != tt.wantProto {
				t.Errorf("got body_bytes=%d sha=%s content_length=%d te=%q proto=%s", r.BodyBytes, r.BodySHA256,
					r.ContentLength, r.TransferEncoding, r.Proto)
			}
		})
	}
}

func grpcConn(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func TestGRPCHealth(t *testing.T) {
	s := New(Config{Pod: "grpc-pod"})
	ts := h2cServer(t, s)
	hc := healthpb.NewHealthClient(grpcConn(t, ts.Listener.Addr().String()))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	var hdr metadata.MD
	resp, err := hc.Check(metadata.AppendToOutgoingContext(ctx, "x-test", "1"), &healthpb.HealthCheckRequest{}, grpc.Header(&hdr))
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("status = %s", resp.GetStatus())
	}
	if got := hdr.Get(ServedByKey); len(got) != 1 || got[0] != "grpc-pod" {
		t.Errorf("%s = %q, want exactly [grpc-pod]", ServedByKey, got)
	}

	_, err = hc.Check(ctx, &healthpb.HealthCheckRequest{Service: "no.such.Service"})
	if status.Code(err) != codes.NotFound {
		t.Errorf("unknown service: err = %v, want NotFound", err)
	}

	// Streaming calls carry the header too.
	w, err := hc.Watch(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if m, err := w.Recv(); err != nil || m.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("watch: %v %v", m, err)
	}
	if h, err := w.Header(); err != nil || len(h.Get(ServedByKey)) != 1 || h.Get(ServedByKey)[0] != "grpc-pod" {
		t.Errorf("watch header = %v (%v)", h, err)
	}

	recs := s.Received()
	if len(recs) != 3 {
		t.Fatalf("recorded %d requests, want 3: %+v", len(recs), recs)
	}
	r := recs[0]
	if r.Path != "/grpc.health.v1.Health/Check" || r.Proto != "HTTP/2.0" || r.Method != "POST" ||
		r.Headers["X-Test"][0] != "1" || r.Headers["Content-Type"][0] != "application/grpc" || r.Pod != "grpc-pod" {
		t.Errorf("record = %+v", r)
	}
	if recs[2].Path != "/grpc.health.v1.Health/Watch" {
		t.Errorf("third record = %s", recs[2].Path)
	}
}

func TestGRPCNeedsHTTP2(t *testing.T) {
	// An HTTP/1.1 request with a gRPC content type is echoed: gRPC cannot run over it.
	s := New(Config{Pod: "p"})
	req := httptest.NewRequest("POST", "/grpc.health.v1.Health/Check", strings.NewReader("x"))
	req.Header.Set("Content-Type", "application/grpc")
	rr := httptest.NewRecorder()
	s.ServeHTTP(rr, req)
	if rr.Code != 200 || rr.Header().Get("Content-Type") != "application/json" {
		t.Errorf("status %d content-type %q", rr.Code, rr.Header().Get("Content-Type"))
	}
}

func TestWebSocket(t *testing.T) {
	s := New(Config{Pod: "ws-pod"})
	ts := h2cServer(t, s)
	wsURL := "ws" + strings.TrimPrefix(ts.URL, "http") + WSPath

	t.Run("echo with pod name", func(t *testing.T) {
		s.Clear()
		cfg, err := websocket.NewConfig(wsURL+"?room=1", "http://origin.example")
		if err != nil {
			t.Fatal(err)
		}
		cfg.Header.Set("X-Test", "ws")
		c, err := websocket.DialConfig(cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		for _, msg := range []string{"hello", "", "two words"} {
			if err := websocket.Message.Send(c, msg); err != nil {
				t.Fatal(err)
			}
			var reply string
			if err := websocket.Message.Receive(c, &reply); err != nil {
				t.Fatal(err)
			}
			if want := "ws-pod: " + msg; reply != want {
				t.Errorf("reply = %q, want %q", reply, want)
			}
		}
		recs := s.Received()
		if len(recs) != 1 {
			t.Fatalf("recorded %d requests, want the handshake only", len(recs))
		}
		if r := recs[0]; r.Path != WSPath || r.Query != "room=1" || r.Headers["Upgrade"][0] != "websocket" || r.Headers["X-Test"][0] != "ws" {
			t.Errorf("record = %+v", r)
		}
	})
	t.Run("without origin", func(t *testing.T) {
		// x/net/websocket clients always send Origin, so send a handshake by hand.
		req, _ := http.NewRequest("GET", ts.URL+WSPath, nil)
		req.Header.Set("Connection", "Upgrade")
		req.Header.Set("Upgrade", "websocket")
		req.Header.Set("Sec-WebSocket-Version", "13")
		req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
		resp, err := http.DefaultTransport.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusSwitchingProtocols {
			t.Errorf("status = %s", resp.Status)
		}
	})
	t.Run("plain request refused", func(t *testing.T) {
		resp, err := http.Get(ts.URL + WSPath)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("status = %s", resp.Status)
		}
	})
}

// TestCount: /_count counts every recorded request since the start, past the ring's capacity
// and a clear, and not the admin paths.
func TestCount(t *testing.T) {
	s := New(Config{Pod: "p", Capacity: 3})
	for i := range 7 {
		s.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", fmt.Sprintf("/r%d", i), nil))
		s.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/healthz", nil))
	}
	s.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("DELETE", "/_received", nil))
	s.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/after-clear", nil))
	rr := httptest.NewRecorder()
	s.ServeHTTP(rr, httptest.NewRequest("GET", CountPath, nil))
	if got := strings.TrimSpace(rr.Body.String()); got != "8" {
		t.Errorf("%s = %q, want 8", CountPath, got)
	}
}
