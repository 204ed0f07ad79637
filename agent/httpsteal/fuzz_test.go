package httpsteal

import (
	"io"
	"net"
	"testing"
	"time"

	"github.com/kwarp-dev/kwarp/agent/api/stealfilter"
)

// FuzzServeConn writes arbitrary bytes as a client and half-closes: the router must neither
// panic nor hang — the connection ends within the test's deadline whatever came in.
func FuzzServeConn(f *testing.F) {
	for _, s := range []string{
		"GET / HTTP/1.1\r\nHost: x\r\nX-User: alice\r\n\r\n",
		"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nX-User: alice\r\n\r\n3\r\nabc\r\n0\r\nT: 1\r\n\r\nGET / HTTP/1.1\r\n\r\n",
		"GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nxx",
		"GET / HTTP/1.1\r\nUpgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\nHTTP2-Settings: AAMAAABk\r\n\r\n",
		"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00",
		"CONNECT h:443 HTTP/1.1\r\n\r\n",
		"\x16\x03\x01garbage",
	} {
		f.Add([]byte(s))
	}
	app := newServer(f, "app", nil, true)
	local := newServer(f, "local", nil, true)
	fr := newFront(f, Options{DialApp: app.dial, SniffTimeout: 200 * time.Millisecond})
	fr.add(f, "alice", "mine", &stealfilter.Match{Header: hdrMatch("x-user", stealfilter.StringMatch{Exact: "alice"})}, local.dial)
	f.Fuzz(func(t *testing.T, in []byte) {
		c, err := net.Dial("tcp", fr.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		go func() {
			c.Write(in)
			c.(*net.TCPConn).CloseWrite()
		}()
		if _, err := io.Copy(io.Discard, c); err != nil {
			t.Fatalf("the connection did not end: %v", err)
		}
	})
}
