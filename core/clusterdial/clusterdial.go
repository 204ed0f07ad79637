// Package clusterdial opens connections from inside the pod: the net plugin does the control
// exchange with the agent (Connect, under a token), and a tunnel — a raw stream through the
// port-forward to the agent — carries the bytes, so they never pass through the plugin. The
// two start together and the agent pairs them by token: a connection costs one round trip to
// the agent, as kubectl port-forward's do.
package clusterdial

import (
	"context"
	"fmt"
	"net"

	"golang.org/x/sys/unix"

	"github.com/kwarp-dev/kwarp/agent/api/tunnel"
	"github.com/kwarp-dev/kwarp/sdk"
)

// Connector asks the agent to connect (the net plugin, through the plugin host).
type Connector interface {
	Connect(ctx context.Context, network, address string, token []byte) (sdk.ConnectResult, error)
}

// Opener opens a raw stream to the agent's port (a port-forward stream pair).
type Opener func(ctx context.Context) (net.Conn, error)

// Dialer dials through the cluster.
type Dialer struct {
	Connector Connector
	Open      Opener
}

// Conn is a connection opened in the pod: the tunnel, ready for bytes (TCP) or datagram
// frames (UDP, agent/api/tunnel), and what the agent said of it.
type Conn struct {
	net.Conn
	Result sdk.ConnectResult
}

// CloseWrite half-closes the tunnel when the stream supports it (the port-forward's does).
func (c *Conn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Conn.Close()
}

// Dial connects to address ("tcp" or "udp"; ip:port or name:port, names resolved in the
// pod). A connect the pod's kernel refused comes back as the unix.Errno the program should
// see (ECONNREFUSED, ETIMEDOUT, ENETUNREACH…); ENOENT for a name the pod cannot resolve.
func (d *Dialer) Dial(ctx context.Context, network, address string) (*Conn, error) {
	tok := tunnel.NewToken()
	type opened struct {
		c   net.Conn
		err error
	}
	tun := make(chan opened, 1)
	go func() {
		c, err := d.Open(ctx)
		if err == nil {
			err = tunnel.WriteHeader(c, tok)
		}
		if err == nil {
			// the status is read as soon as the agent sends it, not after Connect returns: a
			// port-forward stream whose data waits unread holds up the connection's other
			// streams (the port-forward multiplexer has no flow control), Connect's answer
			// among them
			err = tunnel.ReadStatus(c)
		}
		if err != nil && c != nil {
			c.Close()
			c = nil
		}
		tun <- opened{c, err}
	}()
	res, err := d.Connector.Connect(ctx, network, address, tok[:])
	if err == nil && res.Errno != 0 {
		err = &ConnectError{Errno: unix.Errno(res.Errno), Message: res.Message, Address: address}
	}
	if err != nil {
		// the tunnel is useless now; the agent drops its half after its pairing timeout
		go func() {
			if t := <-tun; t.c != nil {
				t.c.Close()
			}
		}()
		return nil, err
	}
	t := <-tun
	if t.err != nil {
		return nil, fmt.Errorf("tunnel for %s %s: %w", network, address, t.err)
	}
	return &Conn{Conn: t.c, Result: res}, nil
}

// ConnectError is a connect the pod refused.
type ConnectError struct {
	Errno   unix.Errno
	Message string
	Address string
}

func (e *ConnectError) Error() string {
	if e.Message != "" {
		return fmt.Sprintf("connect to %s from the pod: %s", e.Address, e.Message)
	}
	return fmt.Sprintf("connect to %s from the pod: %s", e.Address, e.Errno)
}

// Unwrap makes errors.Is(err, unix.ECONNREFUSED) work.
func (e *ConnectError) Unwrap() error { return e.Errno }
