package httpsteal

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kwarp-dev/kwarp/agent/api/stealfilter"
	"github.com/rs/zerolog"
)

// server is an "app" or "local process": an httptest server that says who it is and
// counts its connections.
type server struct {
	*httptest.Server
	name  string
	conns atomic.Int32
}

func newServer(t testing.TB, name string, h http.Handler, h2c bool, configure ...func(*http.Server)) *server {
	s := &server{name: name}
	if h == nil {
		h = whoami(name)
	}
	s.Server = httptest.NewUnstartedServer(h)
	s.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			s.conns.Add(1)
		}
	}
	if h2c {
		s.Config.Protocols = new(http.Protocols)
		s.Config.Protocols.SetHTTP1(true)
		s.Config.Protocols.SetUnencryptedHTTP2(true)
	}
	for _, c := range configure {
		c(s.Config)
	}
	s.Start()
	t.Cleanup(s.Close)
	return s
}

// whoami answers with the server's name, the method and the path it saw.
func whoami(name string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("X-Served-By", name)
		io.WriteString(w, name+" "+r.Method+" "+r.URL.RequestURI())
	})
}

func (s *server) dial(ctx context.Context) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, "tcp", s.Listener.Addr().String())
}

// front is a router on a listener, as the agent would run it.
type front struct {
	*Router
	addr    string
	conns   atomic.Int32 // client connections accepted
	cancel  context.CancelFunc
	serving sync.WaitGroup
}

func newFront(t testing.TB, opts Options) *front {
	if opts.Port == 0 {
		opts.Port = 8080
	}
	if testing.Verbose() {
		opts.Log = zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.DebugLevel)
	}
	r, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	f := &front{Router: r, addr: ln.Addr().String(), cancel: cancel}
	f.serving.Add(1)
	go func() {
		defer f.serving.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			f.conns.Add(1)
			f.serving.Add(1)
			go func() {
				defer f.serving.Done()
				r.ServeConn(ctx, c)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		cancel()
		done := make(chan struct{})
		go func() { f.serving.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Error("ServeConn did not return after its context ended")
		}
	})
	return f
}

func (f *front) url(path string) string { return "http://" + f.addr + path }

func (f *front) add(t testing.TB, owner, name string, m *stealfilter.Match, dial DialFunc) {
	t.Helper()
	if err := f.Add(Route{Owner: owner, Config: stealfilter.Config{Kind: "http", Name: name, Port: 8080, Match: m}, Dial: dial}); err != nil {
		t.Fatal(err)
	}
}

// client is an HTTP/1.1 client with one keep-alive connection.
func client() *http.Client {
	return &http.Client{Transport: &http.Transport{MaxConnsPerHost: 1, MaxIdleConnsPerHost: 1, DisableCompression: true}, Timeout: 20 * time.Second}
}

func get(t testing.TB, c *http.Client, req *http.Request) (string, *http.Response) {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: body: %v", req.Method, req.URL, err)
	}
	return string(b), resp
}

func newReq(t testing.TB, method, url string, body io.Reader, kv ...string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(kv); i += 2 {
		req.Header.Add(kv[i], kv[i+1])
	}
	return req
}

// rawConn is a client that writes bytes as given and reads responses with net/http's
// parser.
type rawConn struct {
	net.Conn
	br *bufio.Reader
}

func dialRaw(t testing.TB, addr string) *rawConn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(20 * time.Second))
	t.Cleanup(func() { c.Close() })
	return &rawConn{Conn: c, br: bufio.NewReader(c)}
}

func (c *rawConn) send(t testing.TB, s string) {
	t.Helper()
	if _, err := io.WriteString(c, s); err != nil {
		t.Fatal(err)
	}
}

func (c *rawConn) response(t testing.TB, method string) (*http.Response, string) {
	t.Helper()
	resp, err := http.ReadResponse(c.br, &http.Request{Method: method})
	if err != nil {
		t.Fatalf("reading response: %v", err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading response body: %v", err)
	}
	return resp, string(b)
}

// rawApp is a TCP server that records what it receives and answers with its own bytes.
type rawApp struct {
	ln    net.Listener
	mu    sync.Mutex
	got   strings.Builder
	first chan struct{} // closed when the first connection came
	once  sync.Once
}

// newRawApp serves each connection with serve (which may write first).
func newRawApp(t testing.TB, serve func(c net.Conn, a *rawApp)) *rawApp {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := &rawApp{ln: ln, first: make(chan struct{})}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			a.once.Do(func() { close(a.first) })
			go func() {
				defer c.Close()
				serve(c, a)
			}()
		}
	}()
	return a
}

func (a *rawApp) record(p []byte) {
	a.mu.Lock()
	a.got.Write(p)
	a.mu.Unlock()
}

func (a *rawApp) received() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.got.String()
}

func (a *rawApp) dial(ctx context.Context) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, "tcp", a.ln.Addr().String())
}

// watchHeap samples the heap until the returned function is called, which gives how much
// it grew over the level at the start.
func watchHeap(t testing.TB) func() uint64 {
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	base := ms.HeapInuse
	stop := make(chan struct{})
	peak := make(chan uint64)
	go func() {
		var top uint64
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			top = max(top, ms.HeapInuse)
			select {
			case <-stop:
				peak <- top
				return
			case <-tick.C:
			}
		}
	}()
	return func() uint64 {
		close(stop)
		top := <-peak
		if top < base {
			return 0
		}
		return top - base
	}
}
