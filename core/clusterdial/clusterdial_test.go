package clusterdial

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kwarp-dev/kwarp/agent/api/tunnel"
	"github.com/kwarp-dev/kwarp/sdk"
)

// fakeAgent pairs tunnels with connects by token, as the agent does, and echoes the bytes of
// a paired tunnel in upper case.
type fakeAgent struct {
	mu        sync.Mutex
	connected map[tunnel.Token]bool
	refuse    map[string]unix.Errno
	tunnels   int
}

func (a *fakeAgent) Connect(_ context.Context, network, address string, token []byte) (sdk.ConnectResult, error) {
	if e, ok := a.refuse[address]; ok {
		return sdk.ConnectResult{Errno: int(e), Message: e.Error()}, nil
	}
	tok, err := tunnel.ParseToken(token)
	if err != nil {
		return sdk.ConnectResult{}, err
	}
	a.mu.Lock()
	a.connected[tok] = true
	a.mu.Unlock()
	return sdk.ConnectResult{LocalAddress: "10.244.0.9:41000", RemoteAddress: address}, nil
}

func (a *fakeAgent) Open(context.Context) (net.Conn, error) {
	client, server := net.Pipe()
	a.mu.Lock()
	a.tunnels++
	a.mu.Unlock()
	go func() {
		defer server.Close()
		var m [4]byte
		if _, err := io.ReadFull(server, m[:]); err != nil || m != tunnel.Magic {
			return
		}
		tok, err := tunnel.ReadToken(server)
		if err != nil {
			return
		}
		// the connect may still be on its way: wait for it as the agent does
		for i := 0; i < 100; i++ {
			a.mu.Lock()
			ok := a.connected[tok]
			a.mu.Unlock()
			if ok {
				server.Write([]byte{byte(tunnel.StatusOK)})
				buf := make([]byte, 1024)
				for {
					n, err := server.Read(buf)
					if err != nil {
						return
					}
					server.Write(bytes.ToUpper(buf[:n]))
				}
			}
			time.Sleep(5 * time.Millisecond)
		}
		server.Write([]byte{byte(tunnel.StatusUnknown)})
	}()
	return client, nil
}

func newFake() (*fakeAgent, *Dialer) {
	a := &fakeAgent{connected: map[tunnel.Token]bool{}, refuse: map[string]unix.Errno{"10.0.0.9:80": unix.ECONNREFUSED}}
	return a, &Dialer{Connector: a, Open: a.Open}
}

func TestDialPairsConnectAndTunnel(t *testing.T) {
	_, d := newFake()
	c, err := d.Dial(context.Background(), "tcp", "10.0.0.1:80")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.Result.LocalAddress != "10.244.0.9:41000" {
		t.Errorf("result %+v", c.Result)
	}
	c.Write([]byte("ping"))
	buf := make([]byte, 4)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "PING" {
		t.Fatalf("echo %q, %v", buf, err)
	}
}

func TestDialRefusedIsTheErrno(t *testing.T) {
	_, d := newFake()
	_, err := d.Dial(context.Background(), "tcp", "10.0.0.9:80")
	if !errors.Is(err, unix.ECONNREFUSED) {
		t.Fatalf("err = %v, want ECONNREFUSED", err)
	}
	var ce *ConnectError
	if !errors.As(err, &ce) || ce.Address != "10.0.0.9:80" {
		t.Fatalf("err %v is not a ConnectError naming the address", err)
	}
}

type failingConnector struct{}

func (failingConnector) Connect(context.Context, string, string, []byte) (sdk.ConnectResult, error) {
	return sdk.ConnectResult{}, errors.New("plugin gone")
}

func TestDialPluginFailure(t *testing.T) {
	a, _ := newFake()
	d := &Dialer{Connector: failingConnector{}, Open: a.Open}
	if _, err := d.Dial(context.Background(), "tcp", "10.0.0.1:80"); err == nil || errors.Is(err, unix.ECONNREFUSED) {
		t.Fatalf("err = %v, want the plugin's failure", err)
	}
}

func TestDialTunnelRefused(t *testing.T) {
	a, _ := newFake()
	// the connector says yes but never registers the token with the agent
	d := &Dialer{Connector: yesConnector{}, Open: a.Open}
	_, err := d.Dial(context.Background(), "tcp", "10.0.0.1:80")
	if !errors.Is(err, tunnel.StatusUnknown) {
		t.Fatalf("err = %v, want the tunnel's StatusUnknown", err)
	}
}

type yesConnector struct{}

func (yesConnector) Connect(context.Context, string, string, []byte) (sdk.ConnectResult, error) {
	return sdk.ConnectResult{}, nil
}

func TestDialOpenFailure(t *testing.T) {
	a, _ := newFake()
	d := &Dialer{Connector: a, Open: func(context.Context) (net.Conn, error) { return nil, errors.New("port-forward closed") }}
	if _, err := d.Dial(context.Background(), "tcp", "10.0.0.1:80"); err == nil {
		t.Fatal("dial without a tunnel succeeded")
	}
}
