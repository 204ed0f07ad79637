// Package outgoing is the agent's outgoing capability (agentv1.Outgoing): connections the
// user's process opens, made from inside the target's network namespace (package netns), so
// they leave from the pod: its address, its routes, its loopback, the cluster's Services.
//
// The control exchange and the bytes travel apart. Connect resolves the address (a name as the
// pod's C library would, package dnsserver), dials, and answers with the errno the pod's
// connect gave; a connected socket is parked under the token the client chose. The bytes go
// over a tunnel (agent/api/tunnel): a raw stream to the agent's one port that starts with the
// tunnel magic and the same token. The agent's listener hands such streams to ServeTunnel.
// Connect and tunnel may arrive in either order; the one that comes first waits for the other
// for PairTimeout (10 s), then is dropped: an unpaired socket is closed, an unpaired tunnel is
// answered StatusUnknown. A tunnel waiting for a Connect that fails is answered StatusUnknown
// at once.
//
// Once paired, the agent writes StatusOK and splices: for TCP the bytes both ways with
// half-close (the client's EOF becomes a shutdown(SHUT_WR) towards the server and the other
// way round, so request-then-EOF protocols work); for UDP each tunnel frame is one datagram on
// the connected socket and each datagram received one frame back.
//
// Every connection belongs to the session named in Connect's metadata (SessionIDKey). When the
// session ends (sessionserver's OnEnd calls EndSession), its connections are closed, parked or
// spliced: a CLI that died leaves nothing open in the pod.
//
// What the user's process must see travels as an errno in ConnectResponse: ECONNREFUSED,
// ETIMEDOUT, ENETUNREACH, EHOSTUNREACH…, and ENOENT (with a message) for a name that does not
// resolve. gRPC errors are for the agent's own trouble and for malformed requests.
package outgoing

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/kwarp-dev/kwarp/agent/api/tunnel"
	agentv1 "github.com/kwarp-dev/kwarp/agent/api/v1"
	"github.com/kwarp-dev/kwarp/agent/dnsserver"
	"github.com/kwarp-dev/kwarp/agent/netns"
	"github.com/kwarp-dev/kwarp/agent/sessionserver"
	"github.com/kwarp-dev/kwarp/internal/splice"
	"github.com/kwarp-dev/kwarp/logging"
	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Defaults of Options.
const (
	DefaultConnectTimeout = 20 * time.Second
	DefaultPairTimeout    = 10 * time.Second
)

// Resolver finds a name's addresses as the pod would; the agent's is a *dnsserver.Resolver.
type Resolver interface {
	LookupHost(ctx context.Context, host string) ([]netip.Addr, error)
}

// Sessions tells whether a session is still open; the agent's is its *sessionserver.Server.
type Sessions interface {
	Known(id string) bool
}

// Options tune the service; zero values are the defaults.
type Options struct {
	// ConnectTimeout bounds a connect when the request gives none (default 20 s).
	ConnectTimeout time.Duration
	// PairTimeout is how long a Connect's socket or a tunnel waits for its other half
	// (default 10 s), and how long a tunnel may take to send its token.
	PairTimeout time.Duration
	// Sessions, when set, refuses Connects of sessions that are not open: their connections
	// would never be closed by the session's end.
	Sessions Sessions
	// Claim, when set, is offered every tunnel right after its token is read: a tunnel whose
	// token another service issued (an incoming connection's, agent/incoming) is that
	// service's, and Claim takes c and returns true. Tunnels and gRPC share the agent's one
	// port, and this is where the tunnels of every capability arrive.
	Claim func(tok tunnel.Token, c net.Conn) bool
}

// Server is the Outgoing service and the agent's side of the tunnels.
type Server struct {
	agentv1.UnimplementedOutgoingServer
	log  zerolog.Logger
	d    dnsserver.Dialer
	res  Resolver
	opts Options

	mu      sync.Mutex
	pending map[tunnel.Token]*half
	links   map[*link]struct{}
	closed  bool
	// splices counts the splice goroutines, which Close waits for: none logs after it.
	splices sync.WaitGroup
}

// half is one side waiting for the other: a dialled socket waiting for its tunnel (conn set),
// or a tunnel waiting for its Connect (tun set).
type half struct {
	conn, tun net.Conn
	session   string
	network   string
	log       zerolog.Logger
	timer     *time.Timer
}

// link is a paired connection being spliced.
type link struct {
	session   string
	network   string
	conn, tun net.Conn
	log       zerolog.Logger
	start     time.Time
	once      sync.Once
}

func (l *link) close() {
	l.once.Do(func() {
		l.conn.Close()
		l.tun.Close()
	})
}

// New returns the service: it dials through d and resolves names with res.
func New(log zerolog.Logger, d dnsserver.Dialer, res Resolver, opts Options) *Server {
	if opts.ConnectTimeout <= 0 {
		opts.ConnectTimeout = DefaultConnectTimeout
	}
	if opts.PairTimeout <= 0 {
		opts.PairTimeout = DefaultPairTimeout
	}
	return &Server{
		log: log, d: d, res: res, opts: opts,
		pending: map[tunnel.Token]*half{}, links: map[*link]struct{}{},
	}
}

// Connect dials from the target's namespace and parks the socket for its tunnel.
func (s *Server) Connect(ctx context.Context, req *agentv1.ConnectRequest) (*agentv1.ConnectResponse, error) {
	id := sessionserver.SessionID(ctx)
	if id == "" {
		return nil, status.Errorf(codes.InvalidArgument, "Connect: no session id in metadata %q", sessionserver.SessionIDKey)
	}
	if !s.known(id) {
		return nil, status.Errorf(codes.FailedPrecondition, "Connect: session %s is not open (Open and Hold it first)", id)
	}
	tok, err := tunnel.ParseToken(req.Token)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "Connect: %v", err)
	}
	if req.Network != "tcp" && req.Network != "udp" {
		return nil, status.Errorf(codes.InvalidArgument, "Connect: network %q (want tcp or udp)", req.Network)
	}
	host, portText, err := net.SplitHostPort(req.Address)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "Connect: address %q: %v", req.Address, err)
	}
	port, err := strconv.ParseUint(portText, 10, 16)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "Connect: address %q: the port must be a number from 0 to 65535", req.Address)
	}
	// The timeout bounds the connect, not the name's resolution before it, as for the pod's
	// program (getaddrinfo, then connect); the resolver has resolv.conf's own bounds.
	timeout := s.opts.ConnectTimeout
	if req.TimeoutMs > 0 {
		timeout = time.Duration(req.TimeoutMs) * time.Millisecond
	}
	log := logging.WithSession(s.log, id).With().Str("conn", tok.String()).Str("network", req.Network).Str("address", req.Address).Logger()

	conn, err := s.dial(ctx, req.Network, host, uint16(port), timeout)
	if err != nil {
		s.connectFailed(tok)
		if errors.Is(err, dnsserver.ErrNotFound) {
			log.Debug().Err(err).Msg("outgoing: name does not resolve")
			return &agentv1.ConnectResponse{Errno: int32(unix.ENOENT), Message: err.Error()}, nil
		}
		errno, serr := netns.Classify(err)
		if serr != nil {
			log.Debug().Err(err).Msg("outgoing: connect failed on the agent's side")
			return nil, serr
		}
		log.Debug().Err(err).Msg("outgoing: connect failed")
		return &agentv1.ConnectResponse{Errno: int32(errno), Message: err.Error()}, nil
	}
	resp := &agentv1.ConnectResponse{LocalAddress: conn.LocalAddr().String(), RemoteAddress: conn.RemoteAddr().String()}
	log = log.With().Str("local", resp.LocalAddress).Str("remote", resp.RemoteAddress).Logger()
	if err := s.park(tok, id, req.Network, conn, log); err != nil {
		conn.Close()
		return nil, err
	}
	// Registered before this check, the connection is either seen here as orphaned or closed
	// by EndSession, which runs only after the session is gone.
	if !s.known(id) {
		s.EndSession(id)
		return nil, status.Errorf(codes.FailedPrecondition, "Connect: session %s ended", id)
	}
	log.Debug().Msg("outgoing: connected")
	return resp, nil
}

func (s *Server) known(id string) bool {
	return s.opts.Sessions == nil || s.opts.Sessions.Known(id)
}

// dial resolves host and connects to its addresses in turn until one answers. For TCP the
// timeout is shared among the addresses left, as net.Dialer shares it, so that one address
// that drops SYNs does not use up the time of the others.
func (s *Server) dial(ctx context.Context, network, host string, port uint16, timeout time.Duration) (net.Conn, error) {
	addrs, err := s.res.LookupHost(ctx, host)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(timeout)
	var first error
	for i, ip := range addrs {
		ap := netip.AddrPortFrom(ip, port)
		var c net.Conn
		if network == "udp" {
			c, err = s.d.DialUDP(ctx, ap)
		} else {
			left := time.Until(deadline)
			if left <= 0 {
				break
			}
			share := left / time.Duration(len(addrs)-i)
			const minShare = 2 * time.Second
			if share < minShare {
				share = min(minShare, left)
			}
			c, err = s.d.DialTCP(ctx, ap, share)
		}
		if err == nil {
			return c, nil
		}
		if _, serr := netns.Classify(err); serr != nil {
			return nil, err // the agent's trouble or the call's end: no use trying the others
		}
		if first == nil {
			first = err
		}
	}
	if first == nil {
		first = unix.ETIMEDOUT
	}
	return nil, first
}

// park registers a dialled socket under tok, or splices it at once with its waiting tunnel.
func (s *Server) park(tok tunnel.Token, session, network string, conn net.Conn, log zerolog.Logger) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return status.Error(codes.Unavailable, "Connect: the agent is stopping")
	}
	if h, ok := s.pending[tok]; ok {
		if h.tun == nil {
			return status.Errorf(codes.AlreadyExists, "Connect: token %s is already in use", tok)
		}
		delete(s.pending, tok)
		h.timer.Stop()
		s.spliceLocked(session, network, conn, h.tun, log)
		return nil
	}
	h := &half{conn: conn, session: session, network: network, log: log}
	h.timer = time.AfterFunc(s.opts.PairTimeout, func() { s.expire(tok, h) })
	s.pending[tok] = h
	return nil
}

// connectFailed answers a tunnel already waiting for tok's Connect.
func (s *Server) connectFailed(tok tunnel.Token) {
	s.mu.Lock()
	h, ok := s.pending[tok]
	if !ok || h.tun == nil {
		s.mu.Unlock()
		return
	}
	delete(s.pending, tok)
	h.timer.Stop()
	s.mu.Unlock()
	answer(h.tun, tunnel.StatusUnknown)
}

// ServeTunnel serves a tunnel whose magic the caller has read from c: it reads the token and
// pairs c with its Connect, or parks it to wait for one. It does not block beyond reading the
// token; c belongs to the server from here.
func (s *Server) ServeTunnel(c net.Conn) {
	_ = c.SetReadDeadline(time.Now().Add(s.opts.PairTimeout))
	tok, err := tunnel.ReadToken(c)
	if err != nil {
		s.log.Debug().Err(err).Str("from", c.RemoteAddr().String()).Msg("outgoing: tunnel without a token")
		c.Close()
		return
	}
	_ = c.SetReadDeadline(time.Time{})
	if s.opts.Claim != nil && s.opts.Claim(tok, c) {
		return
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		answer(c, tunnel.StatusRefused)
		return
	}
	if h, ok := s.pending[tok]; ok {
		if h.conn == nil {
			s.mu.Unlock()
			s.log.Debug().Str("conn", tok.String()).Msg("outgoing: a second tunnel for one token; refused")
			answer(c, tunnel.StatusRefused)
			return
		}
		delete(s.pending, tok)
		h.timer.Stop()
		s.spliceLocked(h.session, h.network, h.conn, c, h.log)
		s.mu.Unlock()
		return
	}
	h := &half{tun: c}
	h.timer = time.AfterFunc(s.opts.PairTimeout, func() { s.expire(tok, h) })
	s.pending[tok] = h
	s.mu.Unlock()
}

// expire drops h when it is still waiting under tok.
func (s *Server) expire(tok tunnel.Token, h *half) {
	s.mu.Lock()
	if s.pending[tok] != h {
		s.mu.Unlock()
		return
	}
	delete(s.pending, tok)
	s.mu.Unlock()
	if h.conn != nil {
		h.log.Debug().Dur("waited", s.opts.PairTimeout).Msg("outgoing: no tunnel came; connection closed")
		h.conn.Close()
	}
	if h.tun != nil {
		s.log.Debug().Str("conn", tok.String()).Dur("waited", s.opts.PairTimeout).Msg("outgoing: no Connect came for the tunnel")
		answer(h.tun, tunnel.StatusUnknown)
	}
}

// answer writes a refusal status on a tunnel and closes it.
func answer(c net.Conn, st tunnel.Status) {
	// A client that reads nothing must not hold the goroutine.
	_ = c.SetWriteDeadline(time.Now().Add(time.Second))
	_, _ = c.Write([]byte{byte(st)})
	c.Close()
}

// EndSession closes every connection of session id, waiting or spliced.
func (s *Server) EndSession(id string) {
	var closers []func() error
	s.mu.Lock()
	for tok, h := range s.pending {
		if h.conn != nil && h.session == id {
			delete(s.pending, tok)
			h.timer.Stop()
			closers = append(closers, h.conn.Close)
		}
	}
	for l := range s.links {
		if l.session == id {
			closers = append(closers, func() error { l.close(); return nil })
		}
	}
	s.mu.Unlock()
	for _, c := range closers {
		c()
	}
	if len(closers) > 0 {
		log := logging.WithSession(s.log, id)
		log.Debug().Int("connections", len(closers)).Msg("outgoing: session ended; its connections closed")
	}
}

// Close closes every connection and refuses tunnels from now on: the agent is stopping.
func (s *Server) Close() {
	s.mu.Lock()
	s.closed = true
	pending, links := s.pending, s.links
	s.pending, s.links = map[tunnel.Token]*half{}, map[*link]struct{}{}
	s.mu.Unlock()
	for _, h := range pending {
		h.timer.Stop()
		if h.conn != nil {
			h.conn.Close()
		}
		if h.tun != nil {
			answer(h.tun, tunnel.StatusRefused)
		}
	}
	for l := range links {
		l.close()
	}
	s.splices.Wait()
}

// Active is the number of connections spliced now, for tests and the agent's state.
func (s *Server) Active() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.links)
}

// spliceLocked registers the pair and starts moving its bytes.
func (s *Server) spliceLocked(session, network string, conn, tun net.Conn, log zerolog.Logger) {
	l := &link{session: session, network: network, conn: conn, tun: tun, log: log, start: time.Now()}
	s.links[l] = struct{}{}
	s.splices.Add(1)
	go func() {
		defer s.splices.Done()
		s.splice(l)
	}()
}

func (s *Server) splice(l *link) {
	var up, down int64
	defer func() {
		l.close()
		s.mu.Lock()
		delete(s.links, l)
		s.mu.Unlock()
		l.log.Debug().Int64("bytes_out", up).Int64("bytes_in", down).Dur("duration", time.Since(l.start)).Msg("outgoing: closed")
	}()
	if _, err := l.tun.Write([]byte{byte(tunnel.StatusOK)}); err != nil {
		return
	}
	l.log.Debug().Msg("outgoing: tunnel paired")
	if l.network == "udp" {
		up, down = spliceUDP(l)
	} else {
		// up: the program's bytes (the tunnel's) to the pod's server; down: back
		up, down = splice.Conns(l.tun, l.conn, 0)
	}
}

// spliceUDP moves frames to datagrams and back until the tunnel ends.
func spliceUDP(l *link) (up, down int64) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer l.close() // the tunnel's end is the connection's end
		buf := make([]byte, tunnel.MaxDatagram)
		for {
			n, err := tunnel.ReadDatagram(l.tun, buf)
			if err != nil {
				return
			}
			// A datagram the network refuses (EMSGSIZE, an earlier ICMP error) is lost, as
			// UDP loses datagrams; only the socket's end stops the loop.
			if _, err := l.conn.Write(buf[:n]); errors.Is(err, net.ErrClosed) {
				return
			}
			up += int64(n)
		}
	}()
	buf := make([]byte, tunnel.MaxDatagram)
	for {
		n, err := l.conn.Read(buf)
		if err != nil {
			if icmpError(err) {
				continue
			}
			break
		}
		if tunnel.WriteDatagram(l.tun, buf[:n]) != nil {
			break
		}
		down += int64(n)
	}
	l.close()
	<-done
	return up, down
}

// icmpError reports a connected UDP socket's report of an ICMP error for an earlier datagram:
// the kernel says it once, the socket stays usable.
func icmpError(err error) bool {
	var e unix.Errno
	if !errors.As(err, &e) {
		return false
	}
	switch e {
	case unix.ECONNREFUSED, unix.EHOSTUNREACH, unix.ENETUNREACH, unix.EHOSTDOWN, unix.EMSGSIZE:
		return true
	}
	return false
}
