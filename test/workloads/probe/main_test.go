package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/h2c"
	"golang.org/x/net/websocket"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/kwarp-dev/kwarp/test/workloads/httpecho/server"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name        string
		args        []string
		wantCmd     string
		wantPos     []string
		wantTimeout time.Duration
		wantHeaders []string
		wantErr     bool
	}{
		{name: "no subcommand", args: nil, wantErr: true},
		{name: "unknown subcommand", args: []string{"ping"}, wantErr: true},
		{name: "help", args: []string{"-h"}, wantErr: true},
		{name: "dns", args: []string{"dns", "echo"}, wantCmd: "dns", wantPos: []string{"echo"}, wantTimeout: 5 * time.Second},
		{name: "dns missing name", args: []string{"dns"}, wantErr: true},
		{name: "dns extra arg", args: []string{"dns", "a", "b"}, wantErr: true},
		{name: "udp default timeout is 3s", args: []string{"udp", "h:1", "m"}, wantCmd: "udp", wantPos: []string{"h:1", "m"}, wantTimeout: 3 * time.Second},
		{name: "timeout before args", args: []string{"tcp", "-timeout", "2s", "h:1", "m"}, wantCmd: "tcp", wantPos: []string{"h:1", "m"}, wantTimeout: 2 * time.Second},
		{name: "flags after args", args: []string{"http", "http://x/", "-H", "A: 1", "-H", "B: 2", "-timeout=1s"},
			wantCmd: "http", wantPos: []string{"http://x/"}, wantTimeout: time.Second, wantHeaders: []string{"A: 1", "B: 2"}},
		{name: "dash dash keeps dash message", args: []string{"tcp", "h:1", "--", "-timeout"}, wantCmd: "tcp", wantPos: []string{"h:1", "-timeout"}, wantTimeout: 5 * time.Second},
		{name: "bad header", args: []string{"http", "-H", "nocolon", "http://x/"}, wantErr: true},
		{name: "bad duration", args: []string{"tcp", "-timeout", "soon", "h:1", "m"}, wantErr: true},
		{name: "negative timeout", args: []string{"tcp", "-timeout", "-1s", "h:1", "m"}, wantErr: true},
		{name: "flag of another subcommand", args: []string{"tcp", "-H", "A: 1", "h:1", "m"}, wantErr: true},
		{name: "sleep forever by default", args: []string{"sleep"}, wantCmd: "sleep", wantTimeout: 0},
		{name: "grpc", args: []string{"grpc", "h:1", "-H", "A: 1"}, wantCmd: "grpc", wantPos: []string{"h:1"}, wantTimeout: 5 * time.Second, wantHeaders: []string{"A: 1"}},
		{name: "grpc missing address", args: []string{"grpc"}, wantErr: true},
		{name: "ws several messages", args: []string{"ws", "ws://x/ws", "a", "b", "-H", "A: 1"}, wantCmd: "ws", wantPos: []string{"ws://x/ws", "a", "b"},
			wantTimeout: 5 * time.Second, wantHeaders: []string{"A: 1"}},
		{name: "ws needs a message", args: []string{"ws", "ws://x/ws"}, wantErr: true},
		{name: "load", args: []string{"load", "http://x/"}, wantCmd: "load", wantPos: []string{"http://x/"}},
		{name: "load without clients", args: []string{"load", "-c", "0", "http://x/"}, wantErr: true},
		{name: "load without duration", args: []string{"load", "-d", "0s", "http://x/"}, wantErr: true},
		{name: "http body twice", args: []string{"http", "-d", "x", "-body-size", "3", "http://x/"}, wantErr: true},
		{name: "http negative body size", args: []string{"http", "-body-size", "-2", "http://x/"}, wantErr: true},
		{name: "http both h2c modes", args: []string{"http", "-h2c", "-h2c-upgrade", "http://x/"}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd, o, pos, err := parse(tt.args, io.Discard)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if tt.wantErr {
				if code := run(context.Background(), tt.args, io.Discard, io.Discard); code != exitUsage {
					t.Errorf("run exit = %d, want %d", code, exitUsage)
				}
				return
			}
			if cmd.name != tt.wantCmd || !slices.Equal(pos, tt.wantPos) || o.timeout != tt.wantTimeout ||
				!slices.Equal([]string(o.headers), tt.wantHeaders) {
				t.Errorf("got cmd=%s pos=%q timeout=%s headers=%q", cmd.name, pos, o.timeout, o.headers)
			}
		})
	}
}

// runProbe runs probe as main would and returns exit status, stdout and stderr.
func runProbe(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

// tcpServer serves each connection with fn on 127.0.0.1.
func tcpServer(t *testing.T, fn func(c net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				fn(c)
			}()
		}
	}()
	return ln.Addr().String()
}

func echoWithBanner(banner string) func(net.Conn) {
	return func(c net.Conn) {
		if banner != "" {
			io.WriteString(c, banner+"\n")
		}
		io.Copy(c, c)
	}
}

func TestTCP(t *testing.T) {
	tests := []struct {
		name       string
		server     func(net.Conn)
		msg        string
		timeout    string
		wantCode   int
		wantOut    string
		wantErrSub string
	}{
		{name: "pure echo", server: echoWithBanner(""), msg: "hello", wantOut: "hello\n"},
		{name: "banner then echo", server: echoWithBanner("echo-abc"), msg: "hello", wantOut: "echo-abc\nhello\n"},
		// A banner equal to the message cannot be told from the echo; pinned so a change is deliberate.
		{name: "banner equal to message ends the read", server: echoWithBanner("same"), msg: "same", wantOut: "same\n"},
		{name: "echo after other lines", server: func(c net.Conn) {
			l, _ := bufio.NewReader(c).ReadString('\n')
			io.WriteString(c, "one\n")
			time.Sleep(20 * time.Millisecond)
			io.WriteString(c, "two\n"+l+"after\n")
		}, msg: "hello", wantOut: "one\ntwo\nhello\n"},
		// the server reads the message first: closing with it unread would send a reset, not a FIN
		{name: "server closes without echo", server: func(c net.Conn) { io.WriteString(c, "bye\n"); bufio.NewReader(c).ReadString('\n') },
			msg: "hello", wantCode: 1, wantOut: "bye\n", wantErrSub: "closed the connection"},
		{name: "server never answers", server: func(c net.Conn) { io.WriteString(c, "partial"); time.Sleep(3 * time.Second) },
			msg: "hello", timeout: "300ms", wantCode: 1, wantOut: "partial", wantErrSub: "within 300ms"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := tcpServer(t, tt.server)
			args := []string{"tcp", addr, tt.msg}
			if tt.timeout != "" {
				args = append(args, "-timeout", tt.timeout)
			}
			start := time.Now()
			code, out, errs := runProbe(t, args...)
			if code != tt.wantCode || out != tt.wantOut || !strings.Contains(errs, tt.wantErrSub) {
				t.Errorf("exit=%d out=%q err=%q; want exit=%d out=%q err containing %q",
					code, out, errs, tt.wantCode, tt.wantOut, tt.wantErrSub)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("took %s", d)
			}
		})
	}
	t.Run("connection refused", func(t *testing.T) {
		ln, _ := net.Listen("tcp", "127.0.0.1:0")
		addr := ln.Addr().String()
		ln.Close()
		if code, _, errs := runProbe(t, "tcp", addr, "x"); code != 1 || !strings.Contains(errs, "refused") {
			t.Errorf("exit=%d err=%q", code, errs)
		}
	})
}

func TestUDP(t *testing.T) {
	tests := []struct {
		name       string
		reply      func(msg []byte) []byte // nil: never reply
		args       []string
		wantCode   int
		wantOut    string
		wantErrSub string
	}{
		{name: "echo", reply: func(m []byte) []byte { return m }, args: []string{"ping"}, wantOut: "ping\n"},
		{name: "banner prefix", reply: func(m []byte) []byte { return append([]byte("pod-1 "), m...) }, args: []string{"ping"}, wantOut: "pod-1 ping\n"},
		{name: "reply with newline kept as is", reply: func(m []byte) []byte { return []byte("x\n") }, args: []string{"ping"}, wantOut: "x\n"},
		{name: "no reply times out", args: []string{"-timeout", "200ms", "ping"}, wantCode: 1, wantErrSub: "no reply"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pc, err := net.ListenPacket("udp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer pc.Close()
			got := make(chan string, 1)
			go func() {
				buf := make([]byte, 65535)
				n, from, err := pc.ReadFrom(buf)
				if err != nil {
					return
				}
				got <- string(buf[:n])
				if tt.reply != nil {
					pc.WriteTo(tt.reply(buf[:n]), from)
				}
			}()
			args := append([]string{"udp", pc.LocalAddr().String()}, tt.args...)
			start := time.Now()
			code, out, errs := runProbe(t, args...)
			if code != tt.wantCode || out != tt.wantOut || !strings.Contains(errs, tt.wantErrSub) {
				t.Errorf("exit=%d out=%q err=%q; want exit=%d out=%q err containing %q",
					code, out, errs, tt.wantCode, tt.wantOut, tt.wantErrSub)
			}
			select {
			case m := <-got:
				if m != "ping" {
					t.Errorf("server got datagram %q, want exactly %q", m, "ping")
				}
			case <-time.After(time.Second):
				t.Error("server got no datagram")
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("took %s", d)
			}
		})
	}
}

func TestHTTP(t *testing.T) {
	type seen struct {
		method, host, body, proto string
		header                    http.Header
		contentLength             int64
		te                        []string
	}
	seenc := make(chan seen, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		seenc <- seen{r.Method, r.Host, string(b), r.Proto, r.Header, r.ContentLength, r.TransferEncoding}
		if r.URL.Path == "/missing" {
			http.Error(w, "nope", http.StatusNotFound)
			return
		}
		fmt.Fprintf(w, "body of %s", r.URL.Path)
	})
	ts := cleartextServer(t, h)

	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantOut    string
		wantErrSub string
		check      func(t *testing.T, s seen)
	}{
		{name: "get", args: []string{ts.URL + "/a"}, wantOut: "body of /a", check: func(t *testing.T, s seen) {
			if s.method != "GET" || s.proto != "HTTP/1.1" {
				t.Errorf("method=%s proto=%s", s.method, s.proto)
			}
		}},
		{name: "headers method and host", args: []string{"-X", "PUT", "-H", "X-One: 1", "-H", "X-One: 2", "-H", "Host: svc.example", ts.URL + "/b"},
			wantOut: "body of /b", check: func(t *testing.T, s seen) {
				if s.method != "PUT" || s.host != "svc.example" || !slices.Equal(s.header["X-One"], []string{"1", "2"}) {
					t.Errorf("got %+v", s)
				}
			}},
		{name: "data implies post", args: []string{"-d", "payload", ts.URL + "/c"}, wantOut: "body of /c", check: func(t *testing.T, s seen) {
			if s.method != "POST" || s.body != "payload" {
				t.Errorf("method=%s body=%q", s.method, s.body)
			}
		}},
		{name: "h2c", args: []string{"-h2c", ts.URL + "/d"}, wantOut: "body of /d", check: func(t *testing.T, s seen) {
			if s.proto != "HTTP/2.0" {
				t.Errorf("proto=%s", s.proto)
			}
		}},
		{name: "body size", args: []string{"-body-size", "100000", ts.URL + "/e"}, wantOut: "body of /e", check: func(t *testing.T, s seen) {
			want, _ := io.ReadAll(server.GeneratedBody(100000))
			if s.method != "POST" || s.body != string(want) || s.contentLength != 100000 || len(s.te) != 0 {
				t.Errorf("method=%s body %d bytes (pattern: %v) content-length=%d te=%q", s.method, len(s.body),
					s.body == string(want), s.contentLength, s.te)
			}
		}},
		{name: "body size zero", args: []string{"-body-size", "0", ts.URL + "/e"}, wantOut: "body of /e", check: func(t *testing.T, s seen) {
			if s.method != "POST" || s.body != "" || s.contentLength != 0 || len(s.te) != 0 {
				t.Errorf("method=%s body=%q content-length=%d te=%q", s.method, s.body, s.contentLength, s.te)
			}
		}},
		{name: "chunked", args: []string{"-chunked", "-d", "payload", "-X", "PUT", ts.URL + "/f"}, wantOut: "body of /f", check: func(t *testing.T, s seen) {
			if s.method != "PUT" || s.body != "payload" || s.contentLength != -1 || !slices.Equal(s.te, []string{"chunked"}) {
				t.Errorf("method=%s body=%q content-length=%d te=%q", s.method, s.body, s.contentLength, s.te)
			}
		}},
		{name: "chunked h2c has no length", args: []string{"-chunked", "-h2c", "-body-size", "70000", ts.URL + "/g"}, wantOut: "body of /g", check: func(t *testing.T, s seen) {
			if s.proto != "HTTP/2.0" || len(s.body) != 70000 || s.contentLength != -1 {
				t.Errorf("proto=%s body %d bytes content-length=%d", s.proto, len(s.body), s.contentLength)
			}
		}},
		{name: "no upgrade is a failure", args: []string{"-h2c-upgrade", ts.URL + "/h"}, wantCode: 1, wantOut: "body of /h", wantErrSub: "did not switch"},
		{name: "non-2xx fails but prints body", args: []string{ts.URL + "/missing"}, wantCode: 1, wantOut: "nope\n", wantErrSub: "404"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errs := runProbe(t, append([]string{"http"}, tt.args...)...)
			if code != tt.wantCode || out != tt.wantOut || !strings.Contains(errs, tt.wantErrSub) {
				t.Errorf("exit=%d out=%q err=%q; want exit=%d out=%q err containing %q",
					code, out, errs, tt.wantCode, tt.wantOut, tt.wantErrSub)
			}
			s := <-seenc
			if tt.check != nil {
				tt.check(t, s)
			}
		})
	}
	t.Run("unreachable", func(t *testing.T) {
		ln, _ := net.Listen("tcp", "127.0.0.1:0")
		addr := ln.Addr().String()
		ln.Close()
		if code, _, errs := runProbe(t, "http", "http://"+addr+"/"); code != 1 || errs == "" {
			t.Errorf("exit=%d err=%q", code, errs)
		}
	})
}

// dnsServer answers A queries for the names in records and NXDOMAIN for anything else, over UDP
// on 127.0.0.1, so the dns subcommand can be tested without depending on the host's resolver.
func dnsServer(t *testing.T, records map[string][4]byte) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 512)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			var p dnsmessage.Parser
			hdr, err := p.Start(buf[:n])
			if err != nil {
				continue
			}
			q, err := p.Question()
			if err != nil {
				continue
			}
			a, known := records[q.Name.String()]
			rh := dnsmessage.Header{ID: hdr.ID, Response: true, Authoritative: true, RecursionDesired: hdr.RecursionDesired, RecursionAvailable: true}
			if !known {
				rh.RCode = dnsmessage.RCodeNameError
			}
			b := dnsmessage.NewBuilder(nil, rh)
			b.EnableCompression()
			b.StartQuestions()
			b.Question(q)
			b.StartAnswers()
			if known && q.Type == dnsmessage.TypeA {
				b.AResource(dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: 5}, dnsmessage.AResource{A: a})
			}
			msg, err := b.Finish()
			if err != nil {
				continue
			}
			pc.WriteTo(msg, from)
		}
	}()
	return pc.LocalAddr().String()
}

func TestDNS(t *testing.T) {
	server := dnsServer(t, map[string][4]byte{"echo.kwarp.test.": {10, 1, 2, 3}})
	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantOut    string
		wantErrSub string
	}{
		// Rooted names keep the host's search list out of the test.
		{name: "found", args: []string{"-server", server, "echo.kwarp.test."}, wantOut: "10.1.2.3\n"},
		{name: "ip4 only", args: []string{"-server", server, "-net", "ip4", "echo.kwarp.test."}, wantOut: "10.1.2.3\n"},
		{name: "nxdomain", args: []string{"-server", server, "nothing.kwarp.test."}, wantCode: 1, wantErrSub: "no such host"},
		{name: "bad -net", args: []string{"-net", "ip5", "x."}, wantCode: 1, wantErrSub: "-net"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errs := runProbe(t, append([]string{"dns"}, tt.args...)...)
			if code != tt.wantCode || out != tt.wantOut || !strings.Contains(errs, tt.wantErrSub) {
				t.Errorf("exit=%d out=%q err=%q; want exit=%d out=%q err containing %q",
					code, out, errs, tt.wantCode, tt.wantOut, tt.wantErrSub)
			}
		})
	}
}

func TestDNSBench(t *testing.T) {
	server := dnsServer(t, map[string][4]byte{"echo.kwarp.test.": {10, 1, 2, 3}})
	code, out, errs := runProbe(t, "dnsbench", "-server", server, "echo.kwarp.test.", "20")
	if code != 0 {
		t.Fatalf("exit=%d err=%q", code, errs)
	}
	var n, mean, p50, p99 int64
	if _, err := fmt.Sscanf(out, "lookups %d\nmean-ns %d\np50-ns %d\np99-ns %d\n", &n, &mean, &p50, &p99); err != nil {
		t.Fatalf("output %q: %v", out, err)
	}
	if n != 20 || mean <= 0 || p50 <= 0 || p99 < p50 {
		t.Errorf("output %q: want 20 lookups, positive times and p99 >= p50", out)
	}
	for _, args := range [][]string{{"-server", server, "nothing.kwarp.test.", "3"}, {"-server", server, "echo.kwarp.test.", "0"}} {
		if code, out, _ := runProbe(t, append([]string{"dnsbench"}, args...)...); code != exitFailure {
			t.Errorf("dnsbench %q: exit=%d out=%q, want %d", args, code, out, exitFailure)
		}
	}
	if code, _, _ := runProbe(t, "dnsbench", "echo.kwarp.test."); code != exitUsage {
		t.Errorf("dnsbench without N: exit=%d, want %d", code, exitUsage)
	}
}

func TestSleep(t *testing.T) {
	t.Run("ends on signal", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan int, 1)
		go func() { done <- run(ctx, []string{"sleep"}, io.Discard, io.Discard) }()
		select {
		case <-done:
			t.Fatal("sleep returned before being stopped")
		case <-time.After(100 * time.Millisecond):
		}
		cancel()
		select {
		case code := <-done:
			if code != exitOK {
				t.Errorf("exit = %d", code)
			}
		case <-time.After(2 * time.Second):
			t.Fatal("sleep did not return after cancel")
		}
	})
	t.Run("ends at timeout", func(t *testing.T) {
		start := time.Now()
		if code, _, _ := runProbe(t, "sleep", "-timeout", "50ms"); code != exitOK {
			t.Errorf("exit = %d", code)
		}
		if d := time.Since(start); d < 50*time.Millisecond || d > 2*time.Second {
			t.Errorf("took %s", d)
		}
	})
}

func TestEnvAndCat(t *testing.T) {
	t.Setenv("PROBE_TEST_VAR", "value-42")
	file := t.TempDir() + "/f.conf"
	if err := os.WriteFile(file, []byte("marker=1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		args     []string
		wantCode int
		wantOut  string
	}{
		{[]string{"env", "PROBE_TEST_VAR"}, exitOK, "value-42\n"},
		{[]string{"env", "PROBE_TEST_UNSET_VAR"}, exitFailure, ""},
		{[]string{"cat", file}, exitOK, "marker=1\n"},
		{[]string{"cat", file + ".missing"}, exitFailure, ""},
		{[]string{"cat"}, exitUsage, ""},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			code, out, _ := runProbe(t, tt.args...)
			if code != tt.wantCode || out != tt.wantOut {
				t.Errorf("probe %v = %d %q, want %d %q", tt.args, code, out, tt.wantCode, tt.wantOut)
			}
		})
	}
}

// upgradeServer serves httpecho's handler the way httpecho does: HTTP/1.1, h2c with prior
// knowledge and h2c by upgrade.
func upgradeServer(t *testing.T, s http.Handler) *httptest.Server {
	t.Helper()
	return cleartextServer(t, h2c.NewHandler(s, &http2.Server{}))
}

// cleartextServer serves h over HTTP/1.1 and cleartext HTTP/2 with prior knowledge until the
// test ends.
func cleartextServer(t *testing.T, h http.Handler) *httptest.Server {
	t.Helper()
	ts := httptest.NewUnstartedServer(h)
	ts.Config.Protocols = new(http.Protocols)
	ts.Config.Protocols.SetHTTP1(true)
	ts.Config.Protocols.SetUnencryptedHTTP2(true)
	ts.Start()
	t.Cleanup(ts.Close)
	return ts
}

func decodeOut[T any](t *testing.T, out string) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("output %q: %v", out, err)
	}
	return v
}

func TestHTTPH2CUpgrade(t *testing.T) {
	s := server.New(server.Config{Pod: "up-pod"})
	ts := upgradeServer(t, s)

	t.Run("body and headers", func(t *testing.T) {
		code, out, errs := runProbe(t, "http", "-h2c-upgrade", "-body-size", "100000", "-H", "Host: svc.example", "-H", "X-A: 1", ts.URL+"/up?q=1")
		if code != 0 {
			t.Fatalf("exit=%d err=%q", code, errs)
		}
		r := decodeOut[server.Record](t, out)
		if r.Pod != "up-pod" || r.Method != "POST" || r.Host != "svc.example" || r.Path != "/up" || r.Query != "q=1" ||
			r.BodyBytes != 100000 || r.BodySHA256 != server.GeneratedSHA256(100000) ||
			r.Headers["Upgrade"][0] != "h2c" || r.Headers["X-A"][0] != "1" {
			t.Errorf("record = %+v", r)
		}
	})
	t.Run("answer larger than the flow-control window", func(t *testing.T) {
		s.Clear()
		tr := &http.Transport{}
		defer tr.CloseIdleConnections()
		// About 600 bytes a record: well beyond the 64 KiB initial windows.
		for i := range 300 {
			resp, err := (&http.Client{Transport: tr}).Get(fmt.Sprintf("%s/r%d", ts.URL, i))
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		code, out, errs := runProbe(t, "http", "-h2c-upgrade", ts.URL+server.ReceivedPath)
		if code != 0 {
			t.Fatalf("exit=%d err=%q", code, errs)
		}
		if len(out) < 100000 {
			t.Errorf("answer is only %d bytes", len(out))
		}
		if recs := decodeOut[[]server.Record](t, out); len(recs) != 300 || recs[299].Path != "/r299" {
			t.Errorf("got %d records", len(recs))
		}
	})
	t.Run("non-2xx after upgrade", func(t *testing.T) {
		code, out, errs := runProbe(t, "http", "-h2c-upgrade", "-X", "POST", ts.URL+server.ReceivedPath)
		if code != 1 || !strings.Contains(out, "method not allowed") || !strings.Contains(errs, "405") {
			t.Errorf("exit=%d out=%q err=%q", code, out, errs)
		}
	})
	t.Run("https refused", func(t *testing.T) {
		if code, _, errs := runProbe(t, "http", "-h2c-upgrade", "https://127.0.0.1:1/"); code != 1 || !strings.Contains(errs, "http://") {
			t.Errorf("exit=%d err=%q", code, errs)
		}
	})
}

func TestGRPC(t *testing.T) {
	s := server.New(server.Config{Pod: "grpc-pod"})
	ts := upgradeServer(t, s)
	addr := ts.Listener.Addr().String()
	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantOut    string
		wantErrSub string
		check      func(t *testing.T, recs []server.Record)
	}{
		{name: "serving", args: []string{addr}, wantOut: "SERVING served-by=grpc-pod\n"},
		{name: "metadata and authority", args: []string{"-H", "X-Route: canary", "-H", "Host: svc.example", addr},
			wantOut: "SERVING served-by=grpc-pod\n", check: func(t *testing.T, recs []server.Record) {
				if len(recs) != 1 || recs[0].Host != "svc.example" || recs[0].Headers["X-Route"][0] != "canary" {
					t.Errorf("records = %+v", recs)
				}
			}},
		{name: "unknown service", args: []string{"-service", "no.such.Service", addr}, wantCode: 1, wantErrSub: "NotFound"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s.Clear()
			code, out, errs := runProbe(t, append([]string{"grpc"}, tt.args...)...)
			if code != tt.wantCode || out != tt.wantOut || !strings.Contains(errs, tt.wantErrSub) {
				t.Errorf("exit=%d out=%q err=%q; want exit=%d out=%q err containing %q",
					code, out, errs, tt.wantCode, tt.wantOut, tt.wantErrSub)
			}
			if tt.check != nil {
				tt.check(t, s.Received())
			}
		})
	}
	t.Run("not serving", func(t *testing.T) {
		// A server whose health service reports NOT_SERVING: the status is printed and fails.
		hs := health.NewServer()
		hs.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
		gs := grpc.NewServer()
		healthpb.RegisterHealthServer(gs, hs)
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		go gs.Serve(ln)
		defer gs.Stop()
		code, out, errs := runProbe(t, "grpc", ln.Addr().String())
		if code != 1 || out != "NOT_SERVING served-by=\n" || !strings.Contains(errs, "NOT_SERVING") {
			t.Errorf("exit=%d out=%q err=%q", code, out, errs)
		}
	})
	t.Run("unreachable", func(t *testing.T) {
		ln, _ := net.Listen("tcp", "127.0.0.1:0")
		addr := ln.Addr().String()
		ln.Close()
		start := time.Now()
		if code, _, errs := runProbe(t, "grpc", "-timeout", "2s", addr); code != 1 || errs == "" {
			t.Errorf("exit=%d err=%q", code, errs)
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("took %s", d)
		}
	})
}

func TestWS(t *testing.T) {
	s := server.New(server.Config{Pod: "ws-pod"})
	ts := upgradeServer(t, s)
	wsURL := "ws://" + ts.Listener.Addr().String()
	silent := httptest.NewServer(websocket.Handler(func(c *websocket.Conn) { io.Copy(io.Discard, c) }))
	defer silent.Close()
	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantOut    string
		wantErrSub string
		check      func(t *testing.T, r server.Record)
	}{
		{name: "messages", args: []string{wsURL + "/ws", "hello", "two words"}, wantOut: "ws-pod: hello\nws-pod: two words\n"},
		{name: "headers", args: []string{"-H", "Host: svc.example", "-H", "Origin: http://o.example", "-H", "X-A: 1", wsURL + "/ws", "m"},
			wantOut: "ws-pod: m\n", check: func(t *testing.T, r server.Record) {
				if r.Host != "svc.example" || r.Headers["Origin"][0] != "http://o.example" || r.Headers["X-A"][0] != "1" {
					t.Errorf("record = %+v", r)
				}
			}},
		{name: "not a websocket", args: []string{wsURL + "/other", "m"}, wantCode: 1, wantErrSub: "handshake"},
		{name: "http URL", args: []string{ts.URL + "/ws", "m"}, wantCode: 1, wantErrSub: "ws://"},
		{name: "no reply", args: []string{"-timeout", "300ms", "ws://" + silent.Listener.Addr().String(), "m"}, wantCode: 1, wantErrSub: "no reply"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s.Clear()
			start := time.Now()
			code, out, errs := runProbe(t, append([]string{"ws"}, tt.args...)...)
			if code != tt.wantCode || out != tt.wantOut || !strings.Contains(errs, tt.wantErrSub) {
				t.Errorf("exit=%d out=%q err=%q; want exit=%d out=%q err containing %q",
					code, out, errs, tt.wantCode, tt.wantOut, tt.wantErrSub)
			}
			if tt.check != nil {
				recs := s.Received()
				if len(recs) != 1 {
					t.Fatalf("recorded %d requests", len(recs))
				}
				tt.check(t, recs[0])
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("took %s", d)
			}
		})
	}
}

func TestLoad(t *testing.T) {
	var mu sync.Mutex
	conns := 0
	var served atomic.Int64
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		served.Add(1)
		if r.Header.Get("X-A") != "1" || r.Method != "GET" {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		if r.URL.Path == "/fail" {
			http.Error(w, "fail", http.StatusInternalServerError)
			return
		}
		io.WriteString(w, "ok")
	})
	ts := httptest.NewUnstartedServer(h)
	ts.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			mu.Lock()
			conns++
			mu.Unlock()
		}
	}
	ts.Start()
	defer ts.Close()

	parse := func(t *testing.T, out string) (n, errs int, rps, p50, p99 float64) {
		t.Helper()
		if _, err := fmt.Sscanf(out, "requests %d\nerrors %d\nrps %g\np50-ms %g\np99-ms %g\n", &n, &errs, &rps, &p50, &p99); err != nil {
			t.Fatalf("output %q: %v", out, err)
		}
		return
	}
	start := time.Now()
	code, out, errs := runProbe(t, "load", "-c", "3", "-d", "300ms", "-H", "X-A: 1", ts.URL+"/ok")
	elapsed := time.Since(start)
	if code != 0 {
		t.Fatalf("exit=%d out=%q err=%q", code, out, errs)
	}
	n, nerr, rps, p50, p99 := parse(t, out)
	if n < 3 || nerr != 0 || rps <= 0 || p50 <= 0 || p99 < p50 || int64(n) > served.Load() {
		t.Errorf("output %q (server served %d)", out, served.Load())
	}
	if elapsed < 300*time.Millisecond || elapsed > 2*time.Second {
		t.Errorf("took %s for -d 300ms", elapsed)
	}
	mu.Lock()
	if conns != 3 {
		t.Errorf("%d connections for -c 3, want 3 kept alive", conns)
	}
	mu.Unlock()

	// -rate 40 for 500ms: about 20 requests, not the thousands an unpaced loop sends
	before := served.Load()
	code, out, errs = runProbe(t, "load", "-c", "2", "-d", "500ms", "-rate", "40", "-H", "X-A: 1", ts.URL+"/ok")
	if code != 0 {
		t.Fatalf("paced: exit=%d out=%q err=%q", code, out, errs)
	}
	if n, _, _, _, _ := parse(t, out); n < 10 || n > 24 || served.Load()-before > 26 {
		t.Errorf("-rate 40 for 500ms: %d answered, %d served; want about 20", n, served.Load()-before)
	}

	code, out, _ = runProbe(t, "load", "-c", "2", "-d", "200ms", "-H", "X-A: 1", ts.URL+"/fail")
	if n, nerr, _, _, _ := parse(t, out); code != 1 || n != 0 || nerr == 0 {
		t.Errorf("all failing: exit=%d output %q", code, out)
	}
}
