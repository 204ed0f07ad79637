// Package outgoing carries the user's process's outgoing connections and datagrams through
// the pod: it is the core's layer.NetHandler.
//
// TCP: the layer hands over a duplicate of the process's socket. Connect asks the pod to
// connect first (through Remote), so that the process's connect returns the pod's outcome
// (ECONNREFUSED, ETIMEDOUT…); then it connects the process's socket to a listener of the
// Handler on loopback, and the accepted connection is spliced with the pod's, both ways, with
// half-close. A connection and its accepted end are paired by the process socket's local
// address, whichever of the two is known first. The Handler does not bind the process's
// socket to learn that address ahead of the connect: it reads it after, which works the same
// for sockets the process bound itself (IP_BIND_ADDRESS_NO_PORT included) and leaves the
// socket exactly as a plain connect would.
//
// UDP: each destination has a relay, a UDP socket on loopback that stands for it. A connected
// socket is connected to its relay; an unconnected one's sendto is sent there by the layer.
// What reaches a relay from a local port is carried on one pod flow per (port, destination),
// opened on the first datagram and closed when idle; answers come back from the relay, whose
// address the layer replaces with the destination's in recvfrom.
//
// The pod's nameservers are special: their relays and connections are answered by the DNS
// router (core/dnsroute) instead of being carried as raw traffic, over UDP and over TCP
// alike, so that dns.local names resolve on this machine and the answers teach the host
// filters which names an address has.
package outgoing

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/kwarp-dev/kwarp/core/dnsroute"
	"github.com/kwarp-dev/kwarp/layer"
)

// Conn is one connection or UDP flow opened in the pod: a tunnel. TCP carries the
// connection's bytes; UDP carries datagrams framed as agent/api/tunnel's WriteDatagram and
// ReadDatagram write and read them.
type Conn interface {
	io.ReadWriteCloser
	// CloseWrite ends the sending direction only (the pod's socket gets shutdown(SHUT_WR)),
	// for TCP half-close: the process's shutdown(SHUT_WR) reaches the server while its answer
	// still comes back. UDP flows are never half-closed.
	CloseWrite() error
}

// Remote opens connections from inside the pod.
type Remote interface {
	// Dial connects to dst from the pod and returns the tunnel and the pod side's local
	// address (invalid when unknown). dst is normalized: IPv4 is never IPv4-mapped IPv6, and
	// there is no zone. When the pod's connect failed, the error is (or wraps)
	// the unix.Errno it gave, which the process's connect returns.
	Dial(ctx context.Context, p layer.Proto, dst netip.AddrPort) (Conn, netip.AddrPort, error)
}

// Options builds a Handler.
type Options struct {
	Rules Rules
	// Remote opens the pod's side of every carried connection and flow.
	Remote Remote
	// DNS answers the queries to Rules.Nameservers and records the names host filters match;
	// nil when DNS is not carried (then Rules.Nameservers must be empty and host filters
	// match nothing).
	DNS *dnsroute.Router
	// LocalAddrs are this machine's addresses, which always stay local; nil means the
	// interfaces' addresses at New.
	LocalAddrs []netip.Addr
	// UDPIdle closes a UDP flow after this long without a datagram either way; 0 means
	// DefaultUDPIdle.
	UDPIdle time.Duration
	// PairTimeout drops a connection whose two halves (the registered flow, the accepted
	// socket) did not meet in this time; 0 means DefaultPairTimeout.
	PairTimeout time.Duration
	Log         zerolog.Logger
}

const (
	// DefaultUDPIdle is conntrack's timeout for an assured UDP stream: what a program that
	// keeps a flow alive through NAT already copes with.
	DefaultUDPIdle = 2 * time.Minute
	// DefaultPairTimeout: the loopback connect of a flow completes in microseconds; anything
	// this late is a stranger knocking on the listener.
	DefaultPairTimeout = 10 * time.Second
	// dialTimeout bounds the pod's side of a UDP flow (TCP's is the process's connect).
	dialTimeout = 30 * time.Second
	// failedRetry is how long datagrams of a flow whose pod side failed are dropped before
	// the next one tries again: a program retrying in a loop must not become a dial storm.
	failedRetry = time.Second
	// maxDNSInFlight bounds the UDP queries being answered at once; more are dropped, as a
	// busy server would, and the resolver retries.
	maxDNSInFlight = 256
	// maxQueued bounds the datagrams kept for a flow whose pod side is still connecting.
	maxQueued = 64
)

// errClosed is returned by calls after Close.
var errClosed = errors.New("outgoing: the handler is closed")

// Handler carries outgoing traffic; it implements layer.NetHandler.
type Handler struct {
	table       *Table
	remote      Remote
	dns         *dnsroute.Router
	log         zerolog.Logger
	udpIdle     time.Duration
	pairTimeout time.Duration

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// l4 and l6 are the TCP listeners; l6 is nil without IPv6 loopback.
	l4, l6         *net.TCPListener
	l4addr, l6addr netip.AddrPort

	mu     sync.RWMutex
	closed bool
	// flows are the TCP flows by the process socket's local address (normalized), for
	// Lookup and pairing; waiting are those not yet paired with an accepted connection and
	// parked the accepted connections not yet claimed by a flow.
	flows   map[netip.AddrPort]*tcpFlow
	all     map[*tcpFlow]struct{}
	waiting map[netip.AddrPort]*tcpFlow
	parked  map[netip.AddrPort]*parkedConn
	// relays by destination and by their own address (both normalized).
	relays      map[netip.AddrPort]*relay
	relayByAddr map[netip.AddrPort]*relay

	// ports are the local UDP ports that sent through a relay, with the last time (unix
	// nanoseconds) a datagram went either way.
	portsMu sync.RWMutex
	ports   map[uint16]*atomic.Int64

	dnsSem chan struct{}
}

var _ layer.NetHandler = (*Handler)(nil)

// New starts a Handler: its TCP listeners and the janitor that expires idle UDP flows.
func New(o Options) (*Handler, error) {
	if o.Remote == nil {
		return nil, errors.New("outgoing: no Remote")
	}
	if len(o.Rules.Nameservers) > 0 && o.DNS == nil {
		return nil, errors.New("outgoing: the rules name pod nameservers but there is no DNS router to answer them")
	}
	own := o.LocalAddrs
	if own == nil {
		var err error
		if own, err = InterfaceAddrs(); err != nil {
			return nil, err
		}
	}
	var names *dnsroute.Names
	if o.DNS != nil {
		names = o.DNS.Names()
	}
	table, err := Compile(o.Rules, names, own)
	if err != nil {
		return nil, err
	}
	if names == nil {
		for _, f := range o.Rules.Filters {
			if len(f.Hosts) > 0 {
				o.Log.Warn().Msg("outgoing: host filters match names from DNS answers, and DNS is not carried: they match no name")
				break
			}
		}
	}
	h := &Handler{
		table:       table,
		remote:      o.Remote,
		dns:         o.DNS,
		log:         o.Log,
		udpIdle:     o.UDPIdle,
		pairTimeout: o.PairTimeout,
		flows:       map[netip.AddrPort]*tcpFlow{},
		all:         map[*tcpFlow]struct{}{},
		waiting:     map[netip.AddrPort]*tcpFlow{},
		parked:      map[netip.AddrPort]*parkedConn{},
		relays:      map[netip.AddrPort]*relay{},
		relayByAddr: map[netip.AddrPort]*relay{},
		ports:       map[uint16]*atomic.Int64{},
		dnsSem:      make(chan struct{}, maxDNSInFlight),
	}
	if h.udpIdle <= 0 {
		h.udpIdle = DefaultUDPIdle
	}
	if h.pairTimeout <= 0 {
		h.pairTimeout = DefaultPairTimeout
	}
	h.l4, err = net.ListenTCP("tcp4", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, fmt.Errorf("outgoing: listen on IPv4 loopback: %w", err)
	}
	h.l4addr = h.l4.Addr().(*net.TCPAddr).AddrPort()
	if l6, err := net.ListenTCP("tcp6", &net.TCPAddr{IP: net.IPv6loopback}); err == nil {
		h.l6, h.l6addr = l6, l6.Addr().(*net.TCPAddr).AddrPort()
	} else {
		h.log.Debug().Err(err).Msg("outgoing: no IPv6 loopback; IPv6 destinations cannot be carried")
	}
	h.ctx, h.cancel = context.WithCancel(context.Background())
	h.wg.Add(1)
	go h.accept(h.l4)
	if h.l6 != nil {
		h.wg.Add(1)
		go h.accept(h.l6)
	}
	h.wg.Add(1)
	go h.janitor()
	return h, nil
}

// RouteOutgoing implements layer.NetHandler.
func (h *Handler) RouteOutgoing(p layer.Proto, dst netip.AddrPort) layer.Route {
	return h.table.Route(p, dst)
}

// Connect implements layer.NetHandler.
func (h *Handler) Connect(ctx context.Context, p layer.Proto, sock *os.File, dst netip.AddrPort) error {
	switch p {
	case layer.TCP:
		return h.connectTCP(ctx, sock, dst)
	case layer.UDP:
		return h.connectUDP(sock, dst)
	}
	return fmt.Errorf("outgoing: connect over %v: %w", p, unix.EPROTONOSUPPORT)
}

// Lookup implements layer.NetHandler.
func (h *Handler) Lookup(p layer.Proto, local, peer netip.AddrPort) (layer.Flow, bool) {
	switch p {
	case layer.TCP:
		return h.lookupTCP(local, peer)
	case layer.UDP:
		return h.lookupUDP(local, peer)
	}
	return layer.Flow{}, false
}

// Close ends every connection, flow and relay and waits for their goroutines. The session
// calls it after the process tree is gone.
func (h *Handler) Close() error {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil
	}
	h.closed = true
	flows, parked, relays := h.all, h.parked, h.relays
	h.flows, h.all, h.waiting, h.parked = map[netip.AddrPort]*tcpFlow{}, map[*tcpFlow]struct{}{}, map[netip.AddrPort]*tcpFlow{}, map[netip.AddrPort]*parkedConn{}
	h.relays, h.relayByAddr = map[netip.AddrPort]*relay{}, map[netip.AddrPort]*relay{}
	h.mu.Unlock()

	h.cancel()
	var errs []error
	if err := h.l4.Close(); err != nil {
		errs = append(errs, err)
	}
	if h.l6 != nil {
		if err := h.l6.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	for f := range flows {
		f.close()
	}
	for _, pc := range parked {
		pc.timer.Stop()
		_ = pc.conn.Close()
	}
	for _, r := range relays {
		r.close()
	}
	h.wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("outgoing: close listeners: %w", err)
	}
	return nil
}

// janitor expires idle UDP flows and the local ports only they kept relayed.
func (h *Handler) janitor() {
	defer h.wg.Done()
	every := min(max(h.udpIdle/4, 10*time.Millisecond), 30*time.Second)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-h.ctx.Done():
			return
		case now := <-t.C:
			h.expire(now)
		}
	}
}

func (h *Handler) expire(now time.Time) {
	h.mu.RLock()
	relays := make([]*relay, 0, len(h.relays))
	for _, r := range h.relays {
		relays = append(relays, r)
	}
	h.mu.RUnlock()
	for _, r := range relays {
		r.expire(now)
	}
	idle := now.Add(-h.udpIdle).UnixNano()
	h.portsMu.Lock()
	for p, t := range h.ports {
		if t.Load() < idle {
			delete(h.ports, p)
		}
	}
	h.portsMu.Unlock()
}

// errnoOf returns the unix.Errno an error carries (bare, so that the layer hands it to the
// process as is), or the error with context.
func errnoOf(err error, format string, args ...any) error {
	var e unix.Errno
	if errors.As(err, &e) && e != 0 {
		return e
	}
	return fmt.Errorf(format+": %w", append(args, err)...)
}
