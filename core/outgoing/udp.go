package outgoing

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kwarp-dev/kwarp/agent/api/tunnel"
	"github.com/kwarp-dev/kwarp/layer"
)

// relay is the local stand-in of one UDP destination.
type relay struct {
	h    *Handler
	dst  netip.AddrPort // normalized
	addr netip.AddrPort // the relay socket's own, normalized
	conn *net.UDPConn
	raw  syscall.RawConn
	dns  bool

	mu     sync.Mutex
	closed bool
	flows  map[netip.AddrPort]*udpFlow // by the process socket's address as the relay sees it
}

type flowState uint8

const (
	dialing flowState = iota
	open
	failed
)

// udpFlow carries one local port's datagrams to one destination.
type udpFlow struct {
	r   *relay
	src netip.AddrPort
	// last is the time (unix nanoseconds) of the last datagram either way.
	last atomic.Int64

	// Under r.mu.
	state    flowState
	conn     Conn
	podLocal netip.AddrPort
	queue    [][]byte
	closed   bool
}

func (h *Handler) connectUDP(sock *os.File, dst netip.AddrPort) error {
	si, err := inspect(sock)
	if err != nil {
		return errnoOf(err, "outgoing: connect to %s", dst)
	}
	if si.family == unix.AF_INET && !dst.Addr().Unmap().Is4() {
		return unix.EAFNOSUPPORT
	}
	r, err := h.relayFor(dst)
	if err != nil {
		return err
	}
	sa, err := toSockaddr(r.addr, si.family)
	if err != nil {
		return err
	}
	if err := control(sock, func(fd int) error { return unix.Connect(fd, sa) }); err != nil {
		return errnoOf(err, "outgoing: connect the process's socket to the relay for %s", dst)
	}
	local, err := localAddr(sock)
	if err != nil {
		return errnoOf(err, "outgoing: connect to %s", dst)
	}
	// Before the first datagram: the process may wait for answers before it sends anything.
	h.touchPort(local.Port(), time.Now().UnixNano())
	return nil
}

// Relay implements layer.NetHandler.
func (h *Handler) Relay(ctx context.Context, dst netip.AddrPort) (netip.AddrPort, error) {
	r, err := h.relayFor(dst)
	if err != nil {
		return netip.AddrPort{}, err
	}
	return inForm(r.addr, dst.Addr().Is4In6()), nil
}

// relayFor returns dst's relay, made on first use. Relays live as long as the Handler: a
// connected socket may stay quiet for hours and must still reach its relay after.
func (h *Handler) relayFor(dst netip.AddrPort) (*relay, error) {
	key := normalize(dst)
	h.mu.RLock()
	r, ok := h.relays[key]
	closed := h.closed
	h.mu.RUnlock()
	if ok {
		return r, nil
	}
	if closed {
		return nil, errClosed
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, errClosed
	}
	if r, ok := h.relays[key]; ok {
		return r, nil
	}
	network, ip := "udp4", net.IPv4(127, 0, 0, 1)
	if !key.Addr().Is4() {
		network, ip = "udp6", net.IPv6loopback
	}
	conn, err := net.ListenUDP(network, &net.UDPAddr{IP: ip})
	if err != nil {
		if !key.Addr().Is4() {
			return nil, unix.ENETUNREACH // no IPv6 loopback: this machine has no IPv6 at all
		}
		return nil, fmt.Errorf("outgoing: relay for %s: %w", dst, err)
	}
	raw, err := conn.SyscallConn()
	if err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("outgoing: relay for %s: %w", dst, err)
	}
	r = &relay{
		h:     h,
		dst:   key,
		addr:  normalize(conn.LocalAddr().(*net.UDPAddr).AddrPort()),
		conn:  conn,
		raw:   raw,
		dns:   h.dns != nil && h.table.IsNameserver(key),
		flows: map[netip.AddrPort]*udpFlow{},
	}
	h.relays[key] = r
	h.relayByAddr[r.addr] = r
	h.wg.Add(1)
	go r.read()
	h.log.Debug().Str("dst", dst.String()).Str("relay", r.addr.String()).Bool("dns", r.dns).Msg("outgoing: UDP relay")
	return r, nil
}

// read takes the process's datagrams to the destination.
func (r *relay) read() {
	h := r.h
	defer h.wg.Done()
	buf := make([]byte, tunnel.MaxDatagram)
	for {
		n, src, err := r.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			h.log.Debug().Err(err).Str("relay", r.addr.String()).Msg("outgoing: relay read failed")
			continue
		}
		src = normalize(src)
		now := time.Now().UnixNano()
		h.touchPort(src.Port(), now)
		if r.dns {
			r.answer(src, append([]byte(nil), buf[:n]...))
			continue
		}
		r.forward(src, buf[:n], now)
	}
}

// answer has the DNS router answer one query, without holding up the relay's other queries.
func (r *relay) answer(src netip.AddrPort, q []byte) {
	h := r.h
	select {
	case h.dnsSem <- struct{}{}:
	default:
		h.log.Debug().Str("server", r.dst.String()).Msg("outgoing: too many DNS queries at once; query dropped")
		return
	}
	// The relay's reader holds a count of h.wg, so adding here cannot race Close's Wait.
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		defer func() { <-h.dnsSem }()
		ans, err := h.dns.Answer(h.ctx, r.dst, q, false)
		if err != nil {
			h.log.Debug().Err(err).Str("server", r.dst.String()).Msg("outgoing: DNS query dropped")
			return
		}
		if _, err := r.conn.WriteToUDPAddrPort(ans, src); err != nil && !errors.Is(err, net.ErrClosed) {
			h.log.Debug().Err(err).Str("to", src.String()).Msg("outgoing: DNS answer not delivered")
		}
	}()
}

// forward sends one datagram from src on its flow, opening the flow on the first.
func (r *relay) forward(src netip.AddrPort, p []byte, now int64) {
	h := r.h
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return
	}
	f := r.flows[src]
	if f == nil {
		f = &udpFlow{r: r, src: src}
		r.flows[src] = f
		h.wg.Add(1) // see answer: the reader holds a count
		go f.dial()
	}
	f.last.Store(now)
	switch f.state {
	case dialing:
		if len(f.queue) < maxQueued {
			f.queue = append(f.queue, append([]byte(nil), p...))
		}
		r.mu.Unlock()
	case failed:
		r.mu.Unlock()
	case open:
		conn := f.conn
		r.mu.Unlock()
		if err := tunnel.WriteDatagram(conn, p); err != nil {
			h.log.Debug().Err(err).Str("dst", r.dst.String()).Msg("outgoing: UDP flow broke")
			r.drop(f)
		}
	}
}

// dial opens the pod side of a flow, sends what was queued meanwhile, then carries the
// answers back until the flow ends.
func (f *udpFlow) dial() {
	r, h := f.r, f.r.h
	defer h.wg.Done()
	ctx, cancel := context.WithTimeout(h.ctx, dialTimeout)
	conn, podLocal, err := h.remote.Dial(ctx, layer.UDP, r.dst)
	cancel()
	r.mu.Lock()
	if err != nil || f.closed {
		f.state, f.queue = failed, nil
		f.last.Store(time.Now().UnixNano()) // retry after failedRetry, not after the idle time
		r.mu.Unlock()
		if conn != nil {
			_ = conn.Close()
		}
		if err != nil {
			h.log.Debug().Err(err).Str("dst", r.dst.String()).Str("src", f.src.String()).Msg("outgoing: the pod's UDP flow failed; datagrams dropped")
		}
		return
	}
	f.conn, f.podLocal = conn, podLocal
	// Datagrams that arrive while the queue is sent join the queue, so order is kept.
	for len(f.queue) > 0 {
		q := f.queue
		f.queue = nil
		r.mu.Unlock()
		for _, p := range q {
			if err := tunnel.WriteDatagram(conn, p); err != nil {
				r.drop(f)
				return
			}
		}
		r.mu.Lock()
	}
	f.state = open
	r.mu.Unlock()

	buf := make([]byte, tunnel.MaxDatagram)
	for {
		n, err := tunnel.ReadDatagram(conn, buf)
		if err != nil {
			break
		}
		now := time.Now().UnixNano()
		f.last.Store(now)
		h.touchPort(f.src.Port(), now)
		if _, err := r.conn.WriteToUDPAddrPort(buf[:n], f.src); err != nil && errors.Is(err, net.ErrClosed) {
			break
		}
	}
	r.drop(f)
}

// drop ends a flow and forgets it; its port's next datagram opens a new one.
func (r *relay) drop(f *udpFlow) {
	r.mu.Lock()
	if r.flows[f.src] == f {
		delete(r.flows, f.src)
	}
	f.closeLocked()
	r.mu.Unlock()
}

func (f *udpFlow) closeLocked() {
	if f.closed {
		return
	}
	f.closed = true
	if f.conn != nil {
		_ = f.conn.Close()
	}
}

// expire closes the flows idle since before now - udpIdle, and forgets failed ones after
// failedRetry.
func (r *relay) expire(now time.Time) {
	idle := now.Add(-r.h.udpIdle).UnixNano()
	retry := now.Add(-failedRetry).UnixNano()
	r.mu.Lock()
	defer r.mu.Unlock()
	for src, f := range r.flows {
		switch last := f.last.Load(); {
		case f.state == failed && last < retry, f.state == open && last < idle:
			delete(r.flows, src)
			f.closeLocked()
		}
	}
}

func (r *relay) close() {
	_ = r.conn.Close()
	r.mu.Lock()
	r.closed = true
	for src, f := range r.flows {
		delete(r.flows, src)
		f.closeLocked()
	}
	r.mu.Unlock()
}

// peekFrom says whether the next datagram waiting on the relay socket comes from port.
func (r *relay) peekFrom(port uint16) bool {
	var from netip.AddrPort
	_ = r.raw.Control(func(fd uintptr) {
		var b [1]byte
		_, sa, err := unix.Recvfrom(int(fd), b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
		if err == nil {
			from = fromSockaddr(sa)
		}
	})
	return from.IsValid() && from.Port() == port
}

func (h *Handler) touchPort(port uint16, now int64) {
	h.portsMu.RLock()
	t := h.ports[port]
	h.portsMu.RUnlock()
	if t == nil {
		h.portsMu.Lock()
		if t = h.ports[port]; t == nil {
			t = new(atomic.Int64)
			h.ports[port] = t
		}
		h.portsMu.Unlock()
	}
	t.Store(now)
}

// Relayed implements layer.NetHandler. Ports are matched without their address: a socket
// bound to the wildcard address reaches a relay from a loopback address, and a false yes
// only costs the layer a Lookup that finds nothing.
func (h *Handler) Relayed(local netip.AddrPort) bool {
	port := local.Port()
	h.portsMu.RLock()
	t := h.ports[port]
	h.portsMu.RUnlock()
	if t != nil && t.Load() >= time.Now().Add(-h.udpIdle).UnixNano() {
		return true
	}
	// The process may ask for its answer before the relay's reader took its datagram off
	// the relay socket (an unconnected socket's sendto goes straight there): look at what
	// waits.
	h.mu.RLock()
	defer h.mu.RUnlock()
	for _, r := range h.relays {
		if r.peekFrom(port) {
			return true
		}
	}
	return false
}

func (h *Handler) lookupUDP(local, peer netip.AddrPort) (layer.Flow, bool) {
	h.mu.RLock()
	r, ok := h.relayByAddr[normalize(peer)]
	h.mu.RUnlock()
	if !ok {
		return layer.Flow{}, false
	}
	mapped := peer.Addr().Is4In6()
	fl := layer.Flow{Remote: inForm(r.dst, mapped)}
	src := normalize(local)
	if src.Addr().IsUnspecified() || !src.Addr().IsValid() {
		// A wildcard-bound socket reaches the relay from the loopback address.
		src = netip.AddrPortFrom(r.addr.Addr(), src.Port())
	}
	r.mu.Lock()
	if f := r.flows[src]; f != nil && f.podLocal.IsValid() {
		fl.PodLocal = inForm(f.podLocal, mapped)
	}
	r.mu.Unlock()
	return fl, true
}
