package agent

import (
	"bytes"
	"io"
	"net"
	"testing"
	"time"

	"github.com/kwarp-dev/kwarp/agent/api/tunnel"
)

// Whatever a client sends first, its connection goes to the tunnels exactly when it starts
// with the magic, and the side that gets it reads every byte the client sent after what
// routing consumed, in order: gRPC all of them, the tunnel handler all after the magic.
func FuzzRoute(f *testing.F) {
	f.Add([]byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"))
	f.Add(append(tunnel.Magic[:], bytes.Repeat([]byte{7}, 16)...))
	f.Add([]byte("KWT"))
	f.Add([]byte("KWT2rest"))
	f.Fuzz(func(t *testing.T, data []byte) {
		tunnels := make(chan net.Conn, 1)
		l := &splitListener{
			tunnels: func(c net.Conn) { tunnels <- c },
			conns:   make(chan net.Conn, 1),
			done:    make(chan struct{}),
		}
		client, server := net.Pipe()
		go func() {
			client.Write(data)
			client.Close()
		}()
		l.route(server)
		var got []byte
		var err error
		isTunnel := false
		select {
		case c := <-tunnels:
			isTunnel = true
			got, err = readAll(c)
		case c := <-l.conns:
			got, err = readAll(c)
		default:
			if len(data) >= len(tunnel.Magic) {
				t.Fatalf("%q went nowhere", data)
			}
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		wantTunnel := bytes.HasPrefix(data, tunnel.Magic[:])
		want := data
		if wantTunnel {
			want = data[len(tunnel.Magic):]
		}
		if isTunnel != wantTunnel || !bytes.Equal(got, want) {
			t.Errorf("%q: tunnel %v, read %q", data, isTunnel, got)
		}
	})
}

func readAll(c net.Conn) ([]byte, error) {
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	return io.ReadAll(c)
}
