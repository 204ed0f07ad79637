package h1

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

func TestParseRequestHead(t *testing.T) {
	tests := []struct {
		name, in string
		method   string
		target   string
		fields   Fields
		framing  Framing
		keep     bool
		bad      bool // ParseRequestHead fails
		badFrame bool // Framing fails
	}{
		{name: "simple", in: "GET /a?b HTTP/1.1\r\nHost: h\r\n\r\n", method: "GET", target: "/a?b",
			fields: Fields{{"Host", "h"}}, keep: true},
		{name: "bare LF", in: "GET / HTTP/1.1\nHost: h\n\n", method: "GET", target: "/", fields: Fields{{"Host", "h"}}, keep: true},
		{name: "leading empty lines", in: "\r\n\r\nGET / HTTP/1.1\r\n\r\n", method: "GET", target: "/", keep: true},
		{name: "value blanks trimmed", in: "POST / HTTP/1.1\r\nContent-Length: \t 12 \r\nX:\r\n\r\n", method: "POST", target: "/",
			fields: Fields{{"Content-Length", "12"}, {"X", ""}}, framing: Framing{Length, 12}, keep: true},
		{name: "chunked", in: "POST / HTTP/1.1\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n", method: "POST", target: "/",
			fields: Fields{{"Transfer-Encoding", "gzip, Chunked"}}, framing: Framing{Kind: Chunked}, keep: true},
		{name: "close", in: "GET / HTTP/1.1\r\nConnection: foo, close\r\n\r\n", method: "GET", target: "/",
			fields: Fields{{"Connection", "foo, close"}}},
		{name: "1.0", in: "GET / HTTP/1.0\r\n\r\n", method: "GET", target: "/"},
		{name: "1.0 keep-alive", in: "GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", method: "GET", target: "/",
			fields: Fields{{"Connection", "Keep-Alive"}}, keep: true},
		{name: "repeated equal lengths", in: "PUT / HTTP/1.1\r\nContent-Length: 3, 3\r\nContent-Length: 3\r\n\r\n", method: "PUT", target: "/",
			fields: Fields{{"Content-Length", "3, 3"}, {"Content-Length", "3"}}, framing: Framing{Length, 3}, keep: true},
		{name: "h2 preface line parses", in: "PRI * HTTP/2.0\r\n\r\n", method: "PRI", target: "*", keep: true},

		{name: "no version", in: "GET /\r\n\r\n", bad: true},
		{name: "two spaces", in: "GET  / HTTP/1.1\r\n\r\n", bad: true},
		{name: "lower version", in: "GET / http/1.1\r\n\r\n", bad: true},
		{name: "bad method", in: "G(T / HTTP/1.1\r\n\r\n", bad: true},
		{name: "obs-fold", in: "GET / HTTP/1.1\r\nA: b\r\n c\r\n\r\n", bad: true},
		{name: "blank before colon", in: "GET / HTTP/1.1\r\nA : b\r\n\r\n", bad: true},
		{name: "no colon", in: "GET / HTTP/1.1\r\nAb\r\n\r\n", bad: true},
		{name: "bare CR", in: "GET / HTTP/1.1\r\nA: b\rc\r\n\r\n", bad: true},
		{name: "NUL in value", in: "GET / HTTP/1.1\r\nA: b\x00\r\n\r\n", bad: true},
		{name: "control in target", in: "GET /\x01 HTTP/1.1\r\n\r\n", bad: true},
		{name: "TE and CL", in: "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n", method: "POST", target: "/", badFrame: true},
		{name: "TE not chunked", in: "POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", method: "POST", target: "/", badFrame: true},
		{name: "chunked twice", in: "POST / HTTP/1.1\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", method: "POST", target: "/", badFrame: true},
		{name: "TE on 1.0", in: "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", method: "POST", target: "/", badFrame: true},
		{name: "differing lengths", in: "POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n", method: "POST", target: "/", badFrame: true},
		{name: "signed length", in: "POST / HTTP/1.1\r\nContent-Length: +3\r\n\r\n", method: "POST", target: "/", badFrame: true},
		{name: "huge length", in: "POST / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n", method: "POST", target: "/", badFrame: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, _ := HeadLen([]byte(tt.in), 0)
			if n != len(tt.in) {
				t.Fatalf("HeadLen = %d, want %d", n, len(tt.in))
			}
			h, err := ParseRequestHead([]byte(tt.in))
			if tt.bad {
				if !errors.Is(err, ErrMalformed) {
					t.Fatalf("err = %v, want ErrMalformed", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if h.Method != tt.method || h.Target != tt.target || h.Raw != tt.in {
				t.Errorf("got %q %q raw %q", h.Method, h.Target, h.Raw)
			}
			if len(h.Fields) != len(tt.fields) && !tt.badFrame {
				t.Errorf("fields %q, want %q", h.Fields, tt.fields)
			}
			for i := range tt.fields {
				if i < len(h.Fields) && h.Fields[i] != tt.fields[i] {
					t.Errorf("field %d = %q, want %q", i, h.Fields[i], tt.fields[i])
				}
			}
			f, err := h.Framing()
			if tt.badFrame {
				if !errors.Is(err, ErrMalformed) {
					t.Fatalf("framing err = %v, want ErrMalformed", err)
				}
				return
			}
			if err != nil || f != tt.framing {
				t.Errorf("framing %+v %v, want %+v", f, err, tt.framing)
			}
			if h.KeepAlive() != tt.keep {
				t.Errorf("KeepAlive = %v", h.KeepAlive())
			}
		})
	}
}

func TestResponseFraming(t *testing.T) {
	tests := []struct {
		in, method string
		want       Framing
		bad        bool
	}{
		{"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", "GET", Framing{Length, 5}, false},
		{"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", "HEAD", Framing{}, false},
		{"HTTP/1.1 204 No Content\r\n\r\n", "GET", Framing{}, false},
		{"HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n", "GET", Framing{}, false},
		{"HTTP/1.1 100 Continue\r\n\r\n", "POST", Framing{}, false},
		{"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n", "GET", Framing{}, false},
		{"HTTP/1.1 200 Connection established\r\n\r\n", "CONNECT", Framing{Kind: Tunnel}, false},
		{"HTTP/1.1 200 OK\r\n\r\n", "GET", Framing{Kind: UntilClose}, false},
		{"HTTP/1.0 200 OK\r\n\r\n", "GET", Framing{Kind: UntilClose}, false},
		{"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", "GET", Framing{Kind: Chunked}, false},
		{"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", "GET", Framing{Kind: UntilClose}, false},
		{"HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n", "GET", Framing{}, false},
		{"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", "GET", Framing{}, true},
		{"HTTP/2.0 200 OK\r\n\r\n", "GET", Framing{}, true},
		{"HTTP/1.1 20 OK\r\n\r\n", "GET", Framing{}, true},
		{"ICY 200 OK\r\n\r\n", "GET", Framing{}, true},
	}
	for _, tt := range tests {
		h, err := ParseResponseHead([]byte(tt.in))
		var f Framing
		if err == nil {
			f, err = h.Framing(tt.method)
		}
		if tt.bad != (err != nil) || f != tt.want {
			t.Errorf("%q %s: %+v %v, want %+v bad=%v", tt.in, tt.method, f, err, tt.want, tt.bad)
		}
	}
}

// TestHeadLenIncremental feeds heads byte by byte: the resumed search finds the same end.
func TestHeadLenIncremental(t *testing.T) {
	for _, in := range []string{
		"GET / HTTP/1.1\r\nHost: x\r\n\r\nBODY",
		"GET / HTTP/1.1\nHost: x\n\nBODY",
		"\r\n\nGET / HTTP/1.1\r\nA: b\n\r\nBODY",
		"GET / HTTP/1.1\r\nA: b\r\r\n\r\nBODY",
	} {
		want := strings.Index(in, "BODY")
		next := 0
		got := -1
		for i := 0; i <= len(in); i++ {
			var n int
			n, next = HeadLen([]byte(in[:i]), next)
			if n >= 0 {
				got = n
				break
			}
		}
		if got != want {
			t.Errorf("%q: incremental HeadLen = %d, want %d", in, got, want)
		}
	}
}

type message struct {
	name, in string
	head     string // the head PeekHead returns
	body     string // what CopyMessage writes after the head
	err      error
}

var requestMessages = []message{
	{name: "length", in: "POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhelloNEXT", head: "POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\n", body: "hello"},
	{name: "no body", in: "GET / HTTP/1.1\r\n\r\nNEXT", head: "GET / HTTP/1.1\r\n\r\n"},
	{name: "chunked", in: "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nA;ext=\"x y\"\r\n0123456789\r\n0\r\n\r\nNEXT",
		head: "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", body: "5\r\nhello\r\nA;ext=\"x y\"\r\n0123456789\r\n0\r\n\r\n"},
	{name: "chunked trailers bare LF", in: "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc\n0\nGrpc-Status: 0\nX: y\r\n\nNEXT",
		head: "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", body: "3\nabc\n0\nGrpc-Status: 0\nX: y\r\n\n"},
	{name: "chunk size blank", in: "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3 \r\nabc\r\n0\r\n\r\nNEXT",
		head: "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", body: "3 \r\nabc\r\n0\r\n\r\n"},
	{name: "bad chunk size", in: "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
		head: "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", err: ErrMalformed},
	{name: "chunk without CRLF", in: "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n",
		head: "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", body: "3\r\nabc", err: ErrMalformed},
	{name: "bad trailer", in: "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nno colon\r\n\r\n",
		head: "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", body: "0\r\n", err: ErrMalformed},
	{name: "short body", in: "POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc",
		head: "POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\n", body: "abc", err: io.ErrUnexpectedEOF},
	{name: "short chunk", in: "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nabc",
		head: "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", body: "10\r\nabc", err: io.ErrUnexpectedEOF},
	{name: "huge chunk size", in: "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffff\r\n",
		head: "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", err: ErrMalformed},
}

// TestCopyMessage copies requests read in every way a stream may deliver them.
func TestCopyMessage(t *testing.T) {
	readers := map[string]func(io.Reader) io.Reader{
		"whole":   func(r io.Reader) io.Reader { return r },
		"onebyte": iotest.OneByteReader,
		"half":    iotest.HalfReader,
		"dataerr": iotest.DataErrReader,
	}
	for _, m := range requestMessages {
		for rn, wrap := range readers {
			t.Run(m.name+"/"+rn, func(t *testing.T) {
				r := NewReader(wrap(strings.NewReader(m.in)), 0)
				head, err := r.PeekHead()
				if err != nil {
					t.Fatal(err)
				}
				if string(head) != m.head {
					t.Fatalf("head %q, want %q", head, m.head)
				}
				h, err := ParseRequestHead(head)
				if err != nil {
					t.Fatal(err)
				}
				f, err := h.Framing()
				if err != nil {
					t.Fatal(err)
				}
				var out bytes.Buffer
				err = r.CopyMessage(&out, len(head), f)
				if !errors.Is(err, m.err) || (err != nil) != (m.err != nil) {
					t.Fatalf("CopyMessage err = %v, want %v", err, m.err)
				}
				if m.err != nil {
					if !strings.HasPrefix(out.String(), m.head+m.body) {
						t.Errorf("wrote %q before failing, want at least %q", out.String(), m.head+m.body)
					}
					return
				}
				if out.String() != m.head+m.body {
					t.Errorf("wrote %q, want %q", out.String(), m.head+m.body)
				}
				rest, _ := io.ReadAll(r)
				if string(rest) != "NEXT" {
					t.Errorf("left %q, want NEXT", rest)
				}
			})
		}
	}
}

func TestPeekHeadLimits(t *testing.T) {
	big := "GET / HTTP/1.1\r\nX: " + strings.Repeat("a", 2000) + "\r\n\r\n"
	r := NewReader(strings.NewReader(big), 1024)
	if _, err := r.PeekHead(); err != ErrHeadTooLarge {
		t.Errorf("err = %v, want ErrHeadTooLarge", err)
	}
	// what was read stays buffered, for the caller to replay
	all, _ := io.ReadAll(r)
	if string(all) != big {
		t.Errorf("replayed %d bytes, want %d", len(all), len(big))
	}

	r = NewReader(strings.NewReader(""), 0)
	if _, err := r.PeekHead(); err != io.EOF {
		t.Errorf("empty: err = %v, want io.EOF", err)
	}
	r = NewReader(strings.NewReader("GET / HT"), 0)
	if _, err := r.PeekHead(); err != io.ErrUnexpectedEOF {
		t.Errorf("cut: err = %v, want io.ErrUnexpectedEOF", err)
	}
	if string(r.Bytes()) != "GET / HT" {
		t.Errorf("cut: buffered %q", r.Bytes())
	}
}

// TestCopyWriteError tells the destination's failure from the source's.
func TestCopyWriteError(t *testing.T) {
	r := NewReader(strings.NewReader("POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"), 0)
	head, _ := r.PeekHead()
	err := r.CopyMessage(failWriter{}, len(head), Framing{Length, 3})
	var we *WriteError
	if !errors.As(err, &we) {
		t.Errorf("err = %v, want a *WriteError", err)
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("boom") }

// TestStreamingLargeBody copies a body much larger than any buffer, from a source that
// yields it in pieces, and checks the writes come before the source ends.
func TestStreamingLargeBody(t *testing.T) {
	const size = 8 << 20
	pr, pw := io.Pipe()
	go func() {
		pw.Write([]byte("PUT / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"))
		chunk := bytes.Repeat([]byte("x"), 1000)
		for sent := 0; sent < size; sent += len(chunk) {
			pw.Write([]byte("3e8\r\n"))
			pw.Write(chunk)
			pw.Write([]byte("\r\n"))
		}
		pw.Write([]byte("0\r\n\r\n"))
		pw.Close()
	}()
	r := NewReader(pr, 0)
	head, err := r.PeekHead()
	if err != nil {
		t.Fatal(err)
	}
	cw := &countWriter{}
	if err := r.CopyMessage(cw, len(head), Framing{Kind: Chunked}); err != nil {
		t.Fatal(err)
	}
	chunks := (size + 999) / 1000
	want := len(head) + chunks*(5+1000+2) + 5
	if cw.n != want {
		t.Errorf("wrote %d bytes, want %d", cw.n, want)
	}
	if cap(r.buf) > 64<<10 {
		t.Errorf("buffer grew to %d", cap(r.buf))
	}
}

type countWriter struct{ n, writes int }

func (c *countWriter) Write(p []byte) (int, error) { c.n += len(p); c.writes++; return len(p), nil }

// TestCheckRequestStart: a first line that cannot be a request line is malformed as soon as it
// is seen; a start that may still become a request is not.
func TestCheckRequestStart(t *testing.T) {
	tests := []struct {
		in        string
		malformed bool
	}{
		{"", false},
		{"GE", false},
		{"GET /x HT", false},
		{"\r\nGET / HTTP/1.1\r\n", false},
		{"GET / HTTP/1.1\r\nHost: a\r\n", false},
		{"PRI * HTTP/2.0\r\n", false},
		{"NOT HTTP AT ALL\n", true},
		{"GET /x\r\n", true},
		{"GET / HTTP/x\r\n", true},
		{"\x16\x03\x01\x02\x00", true}, // a TLS ClientHello
		{"G(T ", true},
		{"SSH-2.0-OpenSSH_9.6\r\n", true},
	}
	for _, tt := range tests {
		err := CheckRequestStart([]byte(tt.in))
		if got := errors.Is(err, ErrMalformed); got != tt.malformed || (err != nil && !got) {
			t.Errorf("CheckRequestStart(%q) = %v, want malformed %v", tt.in, err, tt.malformed)
		}
	}
}
