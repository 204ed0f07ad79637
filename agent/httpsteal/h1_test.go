package httpsteal

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kwarp-dev/kwarp/agent/api/stealfilter"
)

func hdrMatch(name string, m stealfilter.StringMatch) []stealfilter.HeaderMatch {
	return []stealfilter.HeaderMatch{{Name: name, StringMatch: m}}
}

// TestRouting sends, for each kind of filter, a request it matches and one it does not on
// the same keep-alive connection: one goes to the local process, the other to the app.
func TestRouting(t *testing.T) {
	tests := []struct {
		name      string
		m         *stealfilter.Match
		matched   func(url string) *http.Request
		unmatched func(url string) *http.Request
	}{
		{"header regex",
			&stealfilter.Match{Header: hdrMatch("x-kwarp-user", stealfilter.StringMatch{Regex: "^alice$"})},
			func(u string) *http.Request { return newReq(t, "GET", u+"/a", nil, "X-Kwarp-User", "alice") },
			func(u string) *http.Request { return newReq(t, "GET", u+"/a", nil, "X-Kwarp-User", "bob") }},
		{"header exact, one of several values",
			&stealfilter.Match{Header: hdrMatch("X-Tag", stealfilter.StringMatch{Exact: "mine"})},
			func(u string) *http.Request { return newReq(t, "GET", u+"/", nil, "x-tag", "other", "x-tag", "mine") },
			func(u string) *http.Request { return newReq(t, "GET", u+"/", nil, "x-tag", "other") }},
		{"header presence",
			&stealfilter.Match{Header: hdrMatch("x-debug", stealfilter.StringMatch{})},
			func(u string) *http.Request { return newReq(t, "GET", u+"/", nil, "X-Debug", "") },
			func(u string) *http.Request { return newReq(t, "GET", u+"/", nil) }},
		{"path prefix, query excluded",
			&stealfilter.Match{Path: []stealfilter.StringMatch{{Prefix: "/api/v2/"}}},
			func(u string) *http.Request { return newReq(t, "GET", u+"/api/v2/orders?x=/api/v1/", nil) },
			func(u string) *http.Request { return newReq(t, "GET", u+"/api/v1/orders?x=/api/v2/", nil) }},
		{"path exact",
			&stealfilter.Match{Path: []stealfilter.StringMatch{{Exact: "/health"}}},
			func(u string) *http.Request { return newReq(t, "GET", u+"/health", nil) },
			func(u string) *http.Request { return newReq(t, "GET", u+"/healthz", nil) }},
		{"path regex",
			&stealfilter.Match{Path: []stealfilter.StringMatch{{Regex: `^/users/[0-9]+$`}}},
			func(u string) *http.Request { return newReq(t, "GET", u+"/users/42", nil) },
			func(u string) *http.Request { return newReq(t, "GET", u+"/users/me", nil) }},
		{"method",
			&stealfilter.Match{Method: []string{"POST", "PUT"}},
			func(u string) *http.Request { return newReq(t, "POST", u+"/x", strings.NewReader("body")) },
			func(u string) *http.Request { return newReq(t, "GET", u+"/x", nil) }},
		{"all_of",
			&stealfilter.Match{AllOf: []stealfilter.Match{{Method: []string{"DELETE"}, Path: []stealfilter.StringMatch{{Prefix: "/items/"}}}}},
			func(u string) *http.Request { return newReq(t, "DELETE", u+"/items/3", nil) },
			func(u string) *http.Request { return newReq(t, "DELETE", u+"/other/3", nil) }},
		{"any_of (the DESIGN.md example)",
			&stealfilter.Match{Method: []string{"GET", "POST"}, AnyOf: []stealfilter.Match{{
				Header: hdrMatch("x-kwarp-user", stealfilter.StringMatch{Regex: "^alice$"}),
				Path:   []stealfilter.StringMatch{{Prefix: "/api/v2/"}},
			}}},
			func(u string) *http.Request { return newReq(t, "POST", u+"/api/v2/x", strings.NewReader("{}")) },
			func(u string) *http.Request {
				return newReq(t, "PUT", u+"/api/v2/x", strings.NewReader("{}"), "X-Kwarp-User", "alice")
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			app := newServer(t, "app", nil, false)
			local := newServer(t, "local", nil, false)
			f := newFront(t, Options{DialApp: app.dial})
			f.add(t, "alice", "mine", tt.m, local.dial)
			c := client()
			for i := 0; i < 2; i++ { // twice: upstream connections are reused
				if body, resp := get(t, c, tt.matched(f.url(""))); resp.Header.Get("X-Served-By") != "local" {
					t.Errorf("matched request served by %q (%s)", resp.Header.Get("X-Served-By"), body)
				}
				if body, resp := get(t, c, tt.unmatched(f.url(""))); resp.Header.Get("X-Served-By") != "app" {
					t.Errorf("unmatched request served by %q (%s)", resp.Header.Get("X-Served-By"), body)
				}
			}
			if n := f.conns.Load(); n != 1 {
				t.Errorf("client used %d connections, want 1 (keep-alive)", n)
			}
			if a, l := app.conns.Load(), local.conns.Load(); a != 1 || l != 1 {
				t.Errorf("upstream connections: app %d, local %d; want 1 each", a, l)
			}
		})
	}
}

// TestRequestUnchanged checks the app receives the client's head byte for byte.
func TestRequestUnchanged(t *testing.T) {
	head := "GET /odd%2Fpath?q=1&q=2 HTTP/1.1\r\nHost: example\r\nx-lower: a\r\nX-Dup: 1\r\nX-Dup: 2\r\nX-Empty:\r\n\r\n"
	app := newRawApp(t, func(c net.Conn, a *rawApp) {
		br := bufio.NewReader(c)
		var got strings.Builder
		for {
			l, err := br.ReadString('\n')
			got.WriteString(l)
			if err != nil || l == "\r\n" {
				break
			}
		}
		a.record([]byte(got.String()))
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	})
	f := newFront(t, Options{DialApp: app.dial})
	rc := dialRaw(t, f.addr)
	rc.send(t, head)
	if _, body := rc.response(t, "GET"); body != "ok" {
		t.Fatalf("body %q", body)
	}
	if got := app.received(); got != head {
		t.Errorf("app received %q, want %q", got, head)
	}
}

// TestBodies streams Content-Length and chunked bodies both ways, trailers included.
func TestBodies(t *testing.T) {
	echo := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := sha256.New()
		n, err := io.Copy(h, r.Body)
		if err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		w.Header().Set("Trailer", "X-Sum")
		w.Header().Set("X-Served-By", "local")
		fmt.Fprintf(w, "%d %s %s", n, r.Trailer.Get("X-Req-Trailer"), strings.Join(r.TransferEncoding, ","))
		w.(http.Flusher).Flush() // chunked
		w.Header().Set("X-Sum", hex.EncodeToString(h.Sum(nil)))
	})
	app := newServer(t, "app", nil, false)
	local := newServer(t, "local", echo, false)
	f := newFront(t, Options{DialApp: app.dial})
	f.add(t, "alice", "mine", &stealfilter.Match{Method: []string{"POST"}}, local.dial)
	c := client()

	data := strings.Repeat("0123456789abcdef", 100000) // 1.6 MB
	sum := sha256.Sum256([]byte(data))

	// Content-Length
	body, resp := get(t, c, newReq(t, "POST", f.url("/cl"), strings.NewReader(data)))
	if want := fmt.Sprintf("%d  ", len(data)); body != want {
		t.Errorf("length body: %q, want %q", body, want)
	}
	if resp.Trailer.Get("X-Sum") != hex.EncodeToString(sum[:]) {
		t.Errorf("response trailer %q", resp.Trailer)
	}

	// chunked, with a request trailer, from a reader of unknown length
	pr, pw := io.Pipe()
	req := newReq(t, "POST", f.url("/chunked"), pr)
	req.Trailer = http.Header{"X-Req-Trailer": nil}
	go func() {
		for i := 0; i < len(data); i += 10000 {
			pw.Write([]byte(data[i:min(i+10000, len(data))]))
		}
		req.Trailer.Set("X-Req-Trailer", "t1")
		pw.Close()
	}()
	body, resp = get(t, c, req)
	if want := fmt.Sprintf("%d t1 chunked", len(data)); body != want {
		t.Errorf("chunked body: %q, want %q", body, want)
	}
	if resp.Trailer.Get("X-Sum") != hex.EncodeToString(sum[:]) {
		t.Errorf("response trailer %q", resp.Trailer)
	}
	if n := f.conns.Load(); n != 1 {
		t.Errorf("%d client connections, want 1", n)
	}
}

// TestLargeBodyStreamed sends 50 MiB up to the local process and 50 MiB down from the app
// through the router, and watches the heap while they flow: nothing holds a body.
func TestLargeBodyStreamed(t *testing.T) {
	if testing.Short() {
		t.Skip("moves 100 MiB")
	}
	const size = 50 << 20
	local := newServer(t, "local", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		fmt.Fprint(w, n)
	}), false)
	app := newServer(t, "app", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(size))
		io.Copy(w, io.LimitReader(zeros{}, size))
	}), false)
	f := newFront(t, Options{DialApp: app.dial})
	f.add(t, "alice", "up", &stealfilter.Match{Method: []string{"PUT"}}, local.dial)
	c := client()

	peak := watchHeap(t)
	req := newReq(t, "PUT", f.url("/up"), io.LimitReader(zeros{}, size))
	req.ContentLength = size
	if body, _ := get(t, c, req); body != strconv.Itoa(size) {
		t.Errorf("upload: local got %s bytes", body)
	}
	resp, err := c.Get(f.url("/down"))
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
	if grew > 16<<20 {
		t.Errorf("heap grew by %d MiB: bodies are being buffered", grew>>20)
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// TestPipelined writes three requests at once, the middle one matched: the responses come
// back in order.
func TestPipelined(t *testing.T) {
	app := newServer(t, "app", nil, false)
	local := newServer(t, "local", nil, false)
	f := newFront(t, Options{DialApp: app.dial})
	f.add(t, "alice", "mine", &stealfilter.Match{Path: []stealfilter.StringMatch{{Exact: "/2"}}}, local.dial)
	rc := dialRaw(t, f.addr)
	rc.send(t, "GET /1 HTTP/1.1\r\nHost: x\r\n\r\nPOST /2 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabcGET /3 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	for _, want := range []string{"app GET /1", "local POST /2", "app GET /3"} {
		if _, body := rc.response(t, "GET"); body != want {
			t.Errorf("got %q, want %q", body, want)
		}
	}
	if _, err := rc.br.ReadByte(); err != io.EOF {
		t.Errorf("after Connection: close: %v, want EOF", err)
	}
}

// TestHopByHop covers Expect: 100-continue, interim responses, HEAD and HTTP/1.0.
func TestHopByHop(t *testing.T) {
	local := newServer(t, "local", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/hints":
			w.Header().Set("Link", "</a.css>; rel=preload")
			w.WriteHeader(http.StatusEarlyHints)
			w.Header().Del("Link")
		case "/big":
			w.Header().Set("Content-Length", "1000")
		}
		if r.Method != "HEAD" {
			b, _ := io.ReadAll(r.Body)
			fmt.Fprintf(w, "local %s %s %q", r.Method, r.URL.Path, b)
		}
	}), false)
	app := newServer(t, "app", nil, false)
	f := newFront(t, Options{DialApp: app.dial})
	f.add(t, "alice", "mine", &stealfilter.Match{Header: hdrMatch("x-user", stealfilter.StringMatch{Exact: "alice"})}, local.dial)

	t.Run("expect 100-continue", func(t *testing.T) {
		rc := dialRaw(t, f.addr)
		rc.send(t, "POST /e HTTP/1.1\r\nHost: x\r\nX-User: alice\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
		line, err := rc.br.ReadString('\n')
		if err != nil || !strings.HasPrefix(line, "HTTP/1.1 100") {
			t.Fatalf("got %q %v, want 100 Continue before the body is sent", line, err)
		}
		rc.br.ReadString('\n')
		rc.send(t, "hello")
		if _, body := rc.response(t, "POST"); body != `local POST /e "hello"` {
			t.Errorf("body %q", body)
		}
	})
	t.Run("103 early hints", func(t *testing.T) {
		rc := dialRaw(t, f.addr)
		rc.send(t, "GET /hints HTTP/1.1\r\nHost: x\r\nX-User: alice\r\n\r\n")
		resp, _ := rc.response(t, "GET")
		if resp.StatusCode != 103 || resp.Header.Get("Link") == "" {
			t.Fatalf("first response %d %v, want 103 with Link", resp.StatusCode, resp.Header)
		}
		if resp, body := rc.response(t, "GET"); resp.StatusCode != 200 || body != `local GET /hints ""` {
			t.Errorf("final %d %q", resp.StatusCode, body)
		}
	})
	t.Run("HEAD then GET", func(t *testing.T) {
		rc := dialRaw(t, f.addr)
		rc.send(t, "HEAD /big HTTP/1.1\r\nHost: x\r\nX-User: alice\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n")
		if resp, body := rc.response(t, "HEAD"); resp.ContentLength != 1000 || body != "" {
			t.Errorf("HEAD: length %d body %q", resp.ContentLength, body)
		}
		if _, body := rc.response(t, "GET"); body != "app GET /" {
			t.Errorf("after HEAD: %q", body)
		}
	})
	t.Run("HTTP/1.0", func(t *testing.T) {
		rc := dialRaw(t, f.addr)
		rc.send(t, "GET /old HTTP/1.0\r\nX-User: alice\r\n\r\n")
		if _, body := rc.response(t, "GET"); body != `local GET /old ""` {
			t.Errorf("body %q", body)
		}
		if _, err := rc.br.ReadByte(); err != io.EOF {
			t.Errorf("HTTP/1.0 without keep-alive: connection not closed (%v)", err)
		}
	})
}

// TestWebSocket upgrades a matched and an unmatched request: after the 101 the bytes
// flow both ways with the destination that switched.
func TestWebSocket(t *testing.T) {
	ws := func(name string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("Upgrade") != "websocket" {
				http.Error(w, "no upgrade", 400)
				return
			}
			c, brw, err := http.NewResponseController(w).Hijack()
			if err != nil {
				return
			}
			defer c.Close()
			brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: x\r\n\r\n" + name + ">")
			brw.Flush()
			// echo, as frames would be, until the client half-closes
			buf := make([]byte, 1024)
			for {
				n, err := brw.Read(buf)
				if n > 0 {
					c.Write(buf[:n])
				}
				if err != nil {
					return
				}
			}
		})
	}
	app := newServer(t, "app", ws("app"), false)
	local := newServer(t, "local", ws("local"), false)
	f := newFront(t, Options{DialApp: app.dial})
	f.add(t, "alice", "mine", &stealfilter.Match{Header: hdrMatch("x-user", stealfilter.StringMatch{Exact: "alice"})}, local.dial)

	for _, tc := range []struct{ user, want string }{{"alice", "local"}, {"bob", "app"}} {
		rc := dialRaw(t, f.addr)
		// a plain request first: the upgrade comes on a connection already in use
		rc.send(t, "GET /before HTTP/1.1\r\nHost: x\r\nX-User: "+tc.user+"\r\n\r\n")
		rc.response(t, "GET")
		rc.send(t, "GET /ws HTTP/1.1\r\nHost: x\r\nX-User: "+tc.user+"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n\x81\x05hello")
		resp, err := http.ReadResponse(rc.br, nil)
		if err != nil || resp.StatusCode != 101 {
			t.Fatalf("%s: %v %v", tc.user, resp, err)
		}
		rc.send(t, "\x81\x05world")
		rc.CloseWrite()
		rest, err := io.ReadAll(rc.br)
		if want := tc.want + ">\x81\x05hello\x81\x05world"; string(rest) != want || err != nil {
			t.Errorf("%s: spliced %q %v, want %q", tc.user, rest, err, want)
		}
	}
}

func (c *rawConn) CloseWrite() error { return c.Conn.(*net.TCPConn).CloseWrite() }

// TestPassthrough hands connections the router will not frame to the app untouched.
func TestPassthrough(t *testing.T) {
	// the app echoes what it gets behind a marker and records it
	echoApp := func(t *testing.T) *rawApp {
		return newRawApp(t, func(c net.Conn, a *rawApp) {
			buf := make([]byte, 32<<10)
			for {
				n, err := c.Read(buf)
				if n > 0 {
					a.record(buf[:n])
					c.Write([]byte("APP"))
				}
				if err != nil {
					c.(*net.TCPConn).CloseWrite()
					return
				}
			}
		})
	}
	big := "GET / HTTP/1.1\r\nX-Big: " + strings.Repeat("a", 70<<10) + "\r\n\r\n"
	for _, tc := range []struct{ name, in string }{
		{"not HTTP", "\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03binary tls-ish"},
		{"garbage line", "HELLO THERE\r\n\r\n"},
		{"smuggling: CL and TE", "POST / HTTP/1.1\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /x HTTP/1.1\r\n\r\n"},
		{"obs-fold", "GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n"},
		{"head over 64 KiB", big},
		{"HTTP/0.9", "GET /\r\n\r\n"},
		{"cut head", "GET / HTTP/1.1\r\nHost"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			app := echoApp(t)
			local := newServer(t, "local", nil, false)
			f := newFront(t, Options{DialApp: app.dial})
			f.add(t, "alice", "all", nil, local.dial) // would steal every HTTP request
			rc := dialRaw(t, f.addr)
			rc.send(t, tc.in)
			rc.CloseWrite()
			out, err := io.ReadAll(rc.br)
			if err != nil || !strings.HasPrefix(string(out), "APP") {
				t.Errorf("client got %q %v, want the app's answer", out, err)
			}
			if got := app.received(); got != tc.in {
				t.Errorf("app received %d bytes %q…, want the %d sent", len(got), got[:min(len(got), 40)], len(tc.in))
			}
			if local.conns.Load() != 0 {
				t.Error("the local process was dialed")
			}
		})
	}

	t.Run("server speaks first", func(t *testing.T) {
		app := newRawApp(t, func(c net.Conn, a *rawApp) {
			c.Write([]byte("220 banner\r\n"))
			buf := make([]byte, 100)
			n, _ := c.Read(buf)
			c.Write([]byte("got " + string(buf[:n])))
		})
		f := newFront(t, Options{DialApp: app.dial, SniffTimeout: 100 * time.Millisecond})
		rc := dialRaw(t, f.addr)
		line, err := rc.br.ReadString('\n')
		if err != nil || line != "220 banner\r\n" {
			t.Fatalf("got %q %v", line, err)
		}
		rc.send(t, "HELO")
		if rest, _ := io.ReadAll(rc.br); string(rest) != "got HELO" {
			t.Errorf("got %q", rest)
		}
	})

	// a line that is no request line goes to the app at once, without the client closing
	// its side or ending a head: the app answers it as it would without kwarp
	t.Run("not HTTP, connection left open", func(t *testing.T) {
		app := newRawApp(t, func(c net.Conn, a *rawApp) {
			buf := make([]byte, 100)
			n, _ := c.Read(buf)
			c.Write([]byte("APP saw " + string(buf[:n])))
		})
		local := newServer(t, "local", nil, false)
		f := newFront(t, Options{DialApp: app.dial, SniffTimeout: -1})
		f.add(t, "alice", "all", nil, local.dial)
		rc := dialRaw(t, f.addr)
		rc.send(t, "NOT HTTP AT ALL\n")
		rc.SetReadDeadline(time.Now().Add(5 * time.Second))
		line, err := rc.br.ReadString('\n')
		if err != nil || line != "APP saw NOT HTTP AT ALL\n" {
			t.Errorf("got %q %v, want the app's answer while the connection is open", line, err)
		}
		if local.conns.Load() != 0 {
			t.Error("the local process was dialed")
		}
	})

	t.Run("malformed after a good request", func(t *testing.T) {
		app := echoApp(t)
		local := newServer(t, "local", nil, false)
		f := newFront(t, Options{DialApp: app.dial})
		f.add(t, "alice", "all", nil, local.dial)
		rc := dialRaw(t, f.addr)
		rc.send(t, "GET /first HTTP/1.1\r\nHost: x\r\n\r\n")
		if _, body := rc.response(t, "GET"); body != "local GET /first" {
			t.Fatalf("first: %q", body)
		}
		rc.send(t, "BAD REQUEST LINE\r\n\r\n")
		rc.CloseWrite()
		if out, _ := io.ReadAll(rc.br); !strings.HasPrefix(string(out), "APP") {
			t.Errorf("got %q", out)
		}
		if got := app.received(); got != "BAD REQUEST LINE\r\n\r\n" {
			t.Errorf("app got %q", got)
		}
	})
}

// TestMalformedChunkedBody: a body that breaks its chunked framing after the head was
// sent: the destination gets what came before the fault and answers, no hang.
func TestMalformedChunkedBody(t *testing.T) {
	app := newServer(t, "app", nil, false)
	f := newFront(t, Options{DialApp: app.dial})
	rc := dialRaw(t, f.addr)
	rc.send(t, "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\nZZZ\r\n")
	resp, _ := rc.response(t, "POST") // whatever the app makes of it
	t.Logf("the app answered %d", resp.StatusCode)
	if _, err := rc.br.ReadByte(); err != io.EOF {
		t.Errorf("connection not closed after a broken body: %v", err)
	}
}

// TestRouteRemoved: a session ends while its client connections are open; their next
// requests go to the app.
func TestRouteRemoved(t *testing.T) {
	app := newServer(t, "app", nil, false)
	local := newServer(t, "local", nil, false)
	f := newFront(t, Options{DialApp: app.dial})
	m := &stealfilter.Match{Header: hdrMatch("x-user", stealfilter.StringMatch{Exact: "alice"})}
	f.add(t, "alice", "mine", m, local.dial)
	f.add(t, "alice", "second", &stealfilter.Match{Path: []stealfilter.StringMatch{{Prefix: "/mine"}}}, local.dial)
	c := client()
	if _, resp := get(t, c, newReq(t, "GET", f.url("/"), nil, "X-User", "alice")); resp.Header.Get("X-Served-By") != "local" {
		t.Fatal("not stolen before the removal")
	}
	if n := f.RemoveOwner("alice"); n != 2 {
		t.Errorf("RemoveOwner removed %d routes, want 2", n)
	}
	if _, resp := get(t, c, newReq(t, "GET", f.url("/"), nil, "X-User", "alice")); resp.Header.Get("X-Served-By") != "app" {
		t.Error("still stolen after the removal")
	}
	if f.conns.Load() != 1 {
		t.Errorf("%d client connections, want 1", f.conns.Load())
	}
	// the session comes back: stolen again on the same connection
	f.add(t, "alice", "mine", m, local.dial)
	if _, resp := get(t, c, newReq(t, "GET", f.url("/"), nil, "X-User", "alice")); resp.Header.Get("X-Served-By") != "local" {
		t.Error("not stolen after the route came back")
	}
	if f.Remove("alice", "mine") != true || f.Remove("alice", "mine") != false {
		t.Error("Remove")
	}
}

// TestLocalFails covers a local process that is gone, that dies before answering and that
// dies mid-response: the request goes to the app, gets a 502, or sees its connection
// closed — never a hang.
func TestLocalFails(t *testing.T) {
	app := newServer(t, "app", nil, false)
	dying := newServer(t, "local", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/before":
			io.Copy(io.Discard, r.Body)
			c, _, _ := http.NewResponseController(w).Hijack()
			c.Close()
		case "/during":
			w.Header().Set("Content-Length", "1000")
			io.WriteString(w, "partial")
			w.(http.Flusher).Flush()
			c, _, _ := http.NewResponseController(w).Hijack()
			c.Close()
		default:
			io.WriteString(w, "local ok")
		}
	}), false)
	gone := newServer(t, "gone", nil, false)
	goneDial := gone.dial
	gone.Close()

	f := newFront(t, Options{DialApp: app.dial})
	f.add(t, "alice", "dying", &stealfilter.Match{Header: hdrMatch("x-user", stealfilter.StringMatch{Exact: "alice"})}, dying.dial)
	f.add(t, "bob", "gone", &stealfilter.Match{Header: hdrMatch("x-user", stealfilter.StringMatch{Exact: "bob"})}, goneDial)
	c := client()

	if body, _ := get(t, c, newReq(t, "GET", f.url("/x"), nil, "X-User", "bob")); body != "app GET /x" {
		t.Errorf("local process not listening: got %q, want the app's answer", body)
	}
	body, resp := get(t, c, newReq(t, "POST", f.url("/before"), strings.NewReader("data"), "X-User", "alice"))
	if resp.StatusCode != 502 || !strings.Contains(body, "session alice") {
		t.Errorf("died before answering: %d %q, want a 502 naming the session", resp.StatusCode, body)
	}
	resp, err := c.Do(newReq(t, "GET", f.url("/during"), nil, "X-User", "alice"))
	if err == nil {
		_, err = io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("died mid-response: %v, want a cut body", err)
	}
	// and the next request is fine
	if body, _ := get(t, c, newReq(t, "GET", f.url("/ok"), nil, "X-User", "alice")); body != "local ok" {
		t.Errorf("after: %q", body)
	}
}

// TestIdleUpstreamClosed: the app closes an idle keep-alive connection; the next request
// on the client connection goes on a new one.
func TestIdleUpstreamClosed(t *testing.T) {
	app := newServer(t, "app", nil, false, func(s *http.Server) { s.IdleTimeout = 50 * time.Millisecond })
	f := newFront(t, Options{DialApp: app.dial})
	rc := dialRaw(t, f.addr)
	for i := 0; i < 3; i++ {
		rc.send(t, "GET /n HTTP/1.1\r\nHost: x\r\n\r\n")
		if _, body := rc.response(t, "GET"); body != "app GET /n" {
			t.Fatalf("request %d: %q", i, body)
		}
		time.Sleep(150 * time.Millisecond)
	}
	if n := app.conns.Load(); n != 3 {
		t.Errorf("app saw %d connections, want 3", n)
	}
}

// TestContextEndsEverything: a local process that never answers; the context ends the
// connection (newFront's cleanup checks ServeConn returns).
func TestContextEndsEverything(t *testing.T) {
	hang := make(chan struct{})
	local := newServer(t, "local", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-hang }), false)
	t.Cleanup(func() { close(hang) }) // before the server's Close, which waits for the handler
	app := newServer(t, "app", nil, false)
	r, _ := New(Options{Port: 8080, DialApp: app.dial})
	r.Add(Route{Owner: "a", Config: stealfilter.Config{Port: 8080, Name: "x"}, Dial: local.dial})
	cl, sv := net.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.ServeConn(ctx, sv); close(done) }()
	go io.WriteString(cl, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	time.Sleep(100 * time.Millisecond)
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("ServeConn still running after its context ended")
	}
	cl.Close()
}

func TestAdd(t *testing.T) {
	app := newServer(t, "app", nil, false)
	r, err := New(Options{Port: 8080, DialApp: app.dial})
	if err != nil {
		t.Fatal(err)
	}
	user := func(v string) *stealfilter.Match {
		return &stealfilter.Match{Header: hdrMatch("x-kwarp-user", stealfilter.StringMatch{Regex: "^" + v + "$"})}
	}
	add := func(owner, name string, m *stealfilter.Match, port int) error {
		return r.Add(Route{Owner: owner, Config: stealfilter.Config{Kind: "http", Name: name, Port: port, Match: m}, Dial: app.dial})
	}
	if err := add("alice@laptop", "mine", user("alice"), 8080); err != nil {
		t.Fatal(err)
	}
	if err := add("bob@desk", "mine", user("bob"), 8080); err != nil {
		t.Errorf("a distinct filter was refused: %v", err)
	}
	err = add("carol@box", "api", &stealfilter.Match{Path: []stealfilter.StringMatch{{Prefix: "/api"}}}, 8080)
	var oe *OverlapError
	if !errors.As(err, &oe) || oe.Holder.Owner != "alice@laptop" {
		t.Fatalf("overlap: %v, want an OverlapError naming alice@laptop", err)
	}
	t.Log(err)
	if !strings.Contains(err.Error(), "X-Kwarp-User: alice") {
		t.Errorf("message without an example: %v", err)
	}
	if err := add("alice@laptop", "api", &stealfilter.Match{Method: []string{"GET"}, Header: hdrMatch("x-kwarp-user", stealfilter.StringMatch{Exact: "alice"})}, 8080); err != nil {
		t.Errorf("an owner's own overlap was refused: %v", err)
	}
	if err := add("alice@laptop", "mine", user("x"), 8080); err == nil {
		t.Error("a duplicate name was accepted")
	}
	if err := add("dave", "other", user("dave"), 9090); err == nil {
		t.Error("a route for another port was accepted")
	}
	if err := add("dave", "bad", &stealfilter.Match{Path: []stealfilter.StringMatch{{Regex: "("}}}, 8080); err == nil {
		t.Error("a bad regex was accepted")
	}
	if got := len(r.Routes()); got != 3 {
		t.Errorf("%d routes, want 3", got)
	}
}
