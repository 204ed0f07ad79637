package dnsroute

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"
)

// Upstream asks a nameserver directly, over real sockets: this machine's resolver for the
// names dns.local keeps here. The core runs outside the layer, so its sockets are its own.
type Upstream struct {
	// Timeout bounds a query when ctx has no deadline; 0 means DefaultTimeout.
	Timeout time.Duration
}

// Query implements Resolver. Over UDP a truncated answer is returned as it is: the process's
// resolver then asks again over TCP, which comes back here with tcp set.
func (u Upstream) Query(ctx context.Context, server netip.AddrPort, packet []byte, tcp bool) ([]byte, error) {
	if len(packet) < 12 {
		return nil, fmt.Errorf("DNS query of %d bytes is shorter than a header", len(packet))
	}
	if _, ok := ctx.Deadline(); !ok {
		t := u.Timeout
		if t <= 0 {
			t = DefaultTimeout
		}
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, t)
		defer cancel()
	}
	network := "udp"
	if tcp {
		network = "tcp"
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, network, server.String())
	if err != nil {
		return nil, fmt.Errorf("dial nameserver %s over %s: %w", server, network, err)
	}
	defer c.Close()
	dl, _ := ctx.Deadline()
	if err := c.SetDeadline(dl); err != nil {
		return nil, fmt.Errorf("nameserver %s: %w", server, err)
	}
	// A cancelled ctx must end the wait even before the deadline.
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	id := binary.BigEndian.Uint16(packet)
	if tcp {
		ans, err := exchangeTCP(c, packet)
		if err != nil {
			return nil, fmt.Errorf("nameserver %s over tcp: %w", server, err)
		}
		return ans, nil
	}
	if _, err := c.Write(packet); err != nil {
		return nil, fmt.Errorf("send query to nameserver %s: %w", server, err)
	}
	buf := make([]byte, 65535)
	for {
		n, err := c.Read(buf)
		if err != nil {
			return nil, fmt.Errorf("read answer of nameserver %s: %w", server, err)
		}
		// A late answer to an earlier query on a reused port is not ours.
		if n >= 12 && binary.BigEndian.Uint16(buf) == id {
			return append([]byte(nil), buf[:n]...), nil
		}
	}
}

// exchangeTCP sends one length-prefixed query and reads the answer (RFC 1035 §4.2.2).
func exchangeTCP(c net.Conn, packet []byte) ([]byte, error) {
	if err := WriteTCPMessage(c, packet); err != nil {
		return nil, fmt.Errorf("send query: %w", err)
	}
	ans, err := ReadTCPMessage(c)
	if err != nil {
		return nil, fmt.Errorf("read answer: %w", err)
	}
	return ans, nil
}

// ReadTCPMessage reads one DNS message with TCP's two-byte length prefix. io.EOF means the
// stream ended between messages.
func ReadTCPMessage(r io.Reader) ([]byte, error) {
	var h [2]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return nil, err
	}
	msg := make([]byte, binary.BigEndian.Uint16(h[:]))
	if _, err := io.ReadFull(r, msg); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return msg, nil
}

// WriteTCPMessage writes one DNS message with TCP's length prefix, in one Write.
func WriteTCPMessage(w io.Writer, msg []byte) error {
	if len(msg) > 65535 {
		return fmt.Errorf("DNS message of %d bytes does not fit TCP's length prefix", len(msg))
	}
	b := make([]byte, 2+len(msg))
	binary.BigEndian.PutUint16(b, uint16(len(msg)))
	copy(b[2:], msg)
	_, err := w.Write(b)
	return err
}

// ReadResolvConf returns the first nameserver of a resolv.conf, on port 53. A file without
// one means the loopback resolver, as glibc and Go read it.
func ReadResolvConf(path string) (netip.AddrPort, error) {
	f, err := os.Open(path)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("read resolver configuration: %w", err)
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		line := s.Text()
		if i := strings.IndexAny(line, "#;"); i >= 0 {
			line = line[:i]
		}
		fields := strings.Fields(line)
		if len(fields) < 2 || fields[0] != "nameserver" {
			continue
		}
		a, err := netip.ParseAddr(fields[1])
		if err != nil {
			continue // glibc skips what it cannot parse, and so does Go's resolver
		}
		return netip.AddrPortFrom(a.Unmap(), 53), nil
	}
	if err := s.Err(); err != nil {
		return netip.AddrPort{}, fmt.Errorf("read %s: %w", path, err)
	}
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), 53), nil
}
