package dnsserver

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// Dialer opens sockets where the target's programs would open them; the agent's is a
// *netns.Dialer.
type Dialer interface {
	DialTCP(ctx context.Context, addr netip.AddrPort, timeout time.Duration) (net.Conn, error)
	DialUDP(ctx context.Context, addr netip.AddrPort) (net.Conn, error)
}

// headerLen is the size of a DNS message header: anything shorter is not a query.
const headerLen = 12

// maxMessage is the largest DNS message over either transport.
const maxMessage = 65535

// exchange sends one DNS message to server and returns the answer: over UDP, the first
// datagram with the query's ID; over TCP, the first length-prefixed message. timeout bounds
// the whole exchange. A server that does not answer gives ETIMEDOUT, one that refuses
// ECONNREFUSED, as wrapped errnos.
func exchange(ctx context.Context, d Dialer, server netip.AddrPort, msg []byte, tcp bool, timeout time.Duration) ([]byte, error) {
	if tcp {
		return exchangeTCP(ctx, d, server, msg, timeout)
	}
	return exchangeUDP(ctx, d, server, msg, timeout)
}

func exchangeUDP(ctx context.Context, d Dialer, server netip.AddrPort, msg []byte, timeout time.Duration) ([]byte, error) {
	c, err := d.DialUDP(ctx, server)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	defer bound(ctx, c, timeout)()
	if _, err := c.Write(msg); err != nil {
		return nil, ioErr(ctx, server, err)
	}
	buf := make([]byte, maxMessage)
	for {
		n, err := c.Read(buf)
		if err != nil {
			return nil, ioErr(ctx, server, err)
		}
		// The socket is connected, so only the server's datagrams arrive; a late answer to
		// an earlier query with another ID is skipped as the C library skips it.
		if n >= 2 && len(msg) >= 2 && buf[0] == msg[0] && buf[1] == msg[1] {
			return append([]byte(nil), buf[:n]...), nil
		}
	}
}

func exchangeTCP(ctx context.Context, d Dialer, server netip.AddrPort, msg []byte, timeout time.Duration) ([]byte, error) {
	if len(msg) > maxMessage {
		return nil, fmt.Errorf("DNS message of %d bytes for TCP: %w", len(msg), unix.EMSGSIZE)
	}
	start := time.Now()
	c, err := d.DialTCP(ctx, server, timeout)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	left := timeout - time.Since(start) // the connect took its part
	defer bound(ctx, c, left)()
	b := make([]byte, 2+len(msg))
	binary.BigEndian.PutUint16(b, uint16(len(msg)))
	copy(b[2:], msg)
	if _, err := c.Write(b); err != nil {
		return nil, ioErr(ctx, server, err)
	}
	var h [2]byte
	if _, err := io.ReadFull(c, h[:]); err != nil {
		return nil, ioErr(ctx, server, err)
	}
	ans := make([]byte, binary.BigEndian.Uint16(h[:]))
	if _, err := io.ReadFull(c, ans); err != nil {
		return nil, ioErr(ctx, server, err)
	}
	return ans, nil
}

// bound makes c's I/O end at the timeout or when ctx ends; the returned func stops watching ctx.
func bound(ctx context.Context, c net.Conn, timeout time.Duration) func() {
	_ = c.SetDeadline(time.Now().Add(timeout))
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Unix(1, 0)) })
	return func() { stop() }
}

// ioErr gives an exchange's I/O error the errno a resolver in the pod would have met.
func ioErr(ctx context.Context, server netip.AddrPort, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		return cerr
	}
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		err = unix.ETIMEDOUT
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		err = unix.ECONNRESET // the server closed the connection before its answer
	}
	return fmt.Errorf("DNS server %s: %w", server, err)
}
