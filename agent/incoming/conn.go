package incoming

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/kwarp-dev/kwarp/agent/api/tunnel"
	agentv1 "github.com/kwarp-dev/kwarp/agent/api/v1"
	"github.com/kwarp-dev/kwarp/agent/httpsteal"
	"github.com/kwarp-dev/kwarp/internal/splice"
	"github.com/rs/zerolog"
)

// port is one pod port that subscriptions want: the agent's listener for it in the target's
// namespace, its subscriptions in arrival order, and its router once a filtered steal came.
type port struct {
	num    int
	lis    net.Listener
	lport  int // the listener's port: where the redirect rules send the connections
	subs   []*sub
	router *httpsteal.Router
	once   sync.Once
}

func (p *port) close() { p.once.Do(func() { p.lis.Close() }) }

// openPort listens for port's redirected connections. The socket is made on a thread inside
// the target's namespace: REDIRECT delivers to a local port of the namespace the packet
// arrived in. The wildcard takes both families (REDIRECT rewrites the destination to the
// address of the interface the connection came in on).
func (s *Server) openPort(num int) (*port, error) {
	var lis net.Listener
	err := s.opts.NS.Run(func() (err error) {
		// A literal address: no resolver, no helper goroutine; the socket is made on this
		// thread (see package netns).
		lis, err = (&net.ListenConfig{}).Listen(context.Background(), "tcp", ":0")
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("listen for port %d in the target's network namespace: %w", num, err)
	}
	p := &port{num: num, lis: lis, lport: lis.Addr().(*net.TCPAddr).Port}
	go s.acceptLoop(p)
	return p, nil
}

func (s *Server) acceptLoop(p *port) {
	log := s.log.With().Int("port", p.num).Int("listener", p.lport).Logger()
	var delay time.Duration
	for {
		c, err := p.lis.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of fds and the like: wait and go on, as net/http does.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			log.Warn().Err(err).Dur("retry_in", delay).Msg("incoming: accept")
			time.Sleep(delay)
			continue
		}
		delay = 0
		go s.handle(p, c)
	}
}

// connInfo is what is known of an accepted connection.
type connInfo struct {
	client netip.AddrPort // the pod's client
	local  netip.AddrPort // where it connected to in the pod: its original destination
}

type infoKey struct{}

func withInfo(ctx context.Context, ci connInfo) context.Context {
	return context.WithValue(ctx, infoKey{}, ci)
}

func infoFrom(ctx context.Context) (connInfo, bool) {
	ci, ok := ctx.Value(infoKey{}).(connInfo)
	return ci, ok
}

// handle sends one accepted connection on its way: see the package doc for the order.
func (s *Server) handle(p *port, c net.Conn) {
	// the redirect may go before this connection ends: its address translation must stay
	defer s.opts.Redirects.Hold()()
	ci := connInfo{client: addrPort(c.RemoteAddr())}
	dst, err := originalDst(c)
	if err != nil || dst.Port() == uint16(p.lport) {
		// Not redirected (someone dialled the listener itself) or the kernel would not say:
		// the port the listener stands for, on the address that was reached.
		dst = netip.AddrPortFrom(addrPort(c.LocalAddr()).Addr(), uint16(p.num))
	}
	ci.local = netip.AddrPortFrom(dst.Addr().Unmap(), dst.Port())
	ci.client = netip.AddrPortFrom(ci.client.Addr().Unmap(), ci.client.Port())
	log := s.log.With().Int("port", p.num).Str("client", ci.client.String()).Logger()

	if s.fromNode(ci.client.Addr()) {
		// The kubelet's probes: the app answers them, so a steal does not make the pod
		// NotReady; nor are they copied to mirrors (noise, every few seconds).
		log.Debug().Msg("incoming: connection from the node; to the app")
		s.toApp(c, ci, log)
		return
	}

	s.mu.Lock()
	var whole *sub
	var mirrors []*sub
	for _, sb := range p.subs {
		switch {
		case sb.whole() && whole == nil:
			whole = sb
		case !sb.steal():
			mirrors = append(mirrors, sb)
		}
	}
	router := p.router
	if router != nil && len(router.Routes()) == 0 {
		router = nil
	}
	s.mu.Unlock()

	if whole != nil {
		tun := s.await(s.ctx, whole, ci)
		if tun != nil {
			s.spliceSession(whole, c, tun)
			return
		}
		whole.log.Debug().Str("client", ci.client.String()).Msg("incoming: not delivered; the connection goes to the app")
	}
	src := s.tap(c, mirrors, ci)
	if router != nil {
		untrack, ok := s.track(nil, src)
		if !ok {
			return
		}
		defer untrack()
		router.ServeConn(withInfo(s.ctx, ci), src)
		return
	}
	s.toApp(src, ci, log)
}

// toApp dials the deployed app at the connection's original destination and splices.
func (s *Server) toApp(c net.Conn, ci connInfo, log zerolog.Logger) {
	app, err := s.dialApp(withInfo(s.ctx, ci))
	if err != nil {
		log.Warn().Err(err).Msg("incoming: dial the app; connection closed")
		c.Close()
		return
	}
	untrack, ok := s.track(nil, c, app)
	if !ok {
		return
	}
	defer untrack()
	splice.Conns(c, app, 0)
}

// dialApp connects to the app: from inside the target's namespace to the original
// destination, which no PREROUTING rule sees (the connection is local to the namespace).
func (s *Server) dialApp(ctx context.Context) (net.Conn, error) {
	ci, ok := infoFrom(ctx)
	if !ok {
		return nil, errors.New("incoming: no connection to dial the app for")
	}
	c, err := s.opts.NS.DialTCP(ctx, ci.local, s.opts.DialTimeout)
	if err != nil {
		return nil, fmt.Errorf("dial the app at %s: %w", ci.local, err)
	}
	return c, nil
}

var errNotDelivered = errors.New("the session did not take the connection (its local process does not listen, or no tunnel came)")

// routeDial is the Dial of sb's routes: a connection to sb's local process, through a tunnel.
// Its failure sends the request to the app (httpsteal's fallback).
func (s *Server) routeDial(sb *sub) httpsteal.DialFunc {
	return func(ctx context.Context) (net.Conn, error) {
		ci, ok := infoFrom(ctx)
		if !ok {
			return nil, errors.New("incoming: no connection to route")
		}
		tun := s.await(ctx, sb, ci)
		if tun == nil {
			return nil, errNotDelivered
		}
		untrack, ok := s.track(sb, tun)
		if !ok {
			return nil, errNotDelivered
		}
		return &untrackConn{Conn: tun, untrack: untrack}, nil
	}
}

// untrackConn unregisters its connection when closed.
type untrackConn struct {
	net.Conn
	untrack func()
	once    sync.Once
}

func (c *untrackConn) Close() error {
	c.once.Do(c.untrack)
	return c.Conn.Close()
}

func (c *untrackConn) CloseWrite() error { return closeWrite(c.Conn) }

// spliceSession splices a stolen connection with its session's tunnel.
func (s *Server) spliceSession(sb *sub, c, tun net.Conn) {
	untrack, ok := s.track(sb, c, tun)
	if !ok {
		return
	}
	defer untrack()
	start := time.Now()
	up, down := splice.Conns(c, tun, 0)
	sb.log.Debug().Int64("bytes_in", up).Int64("bytes_out", down).Dur("duration", time.Since(start)).Msg("incoming: stolen connection closed")
}

// waiter is a connection waiting for its tunnel.
type waiter struct {
	sub *sub
	ch  chan net.Conn // one tunnel, from Claim
}

// staleFor is how long a token whose wait ended is remembered, so that its late tunnel is
// answered at once rather than left to wait as an outgoing one.
const staleFor = time.Minute

// await announces a connection to sb and waits for its tunnel: the tunnel, ready for the bytes
// (StatusOK written), when the client delivered it to its local process; nil when it did not,
// when no tunnel came in time, or when sb or ctx ended.
func (s *Server) await(ctx context.Context, sb *sub, ci connInfo) net.Conn {
	tok := tunnel.NewToken()
	w := &waiter{sub: sb, ch: make(chan net.Conn, 1)}
	s.mu.Lock()
	if s.closed || sb.ended {
		s.mu.Unlock()
		return nil
	}
	s.pending[tok] = w
	s.mu.Unlock()
	log := sb.log.With().Str("conn", tok.String()).Str("client", ci.client.String()).Logger()

	ev := &agentv1.IncomingEvent{Event: &agentv1.IncomingEvent_Connection{Connection: &agentv1.IncomingConnection{
		Token: tok[:], ClientAddress: ci.client.String(), LocalAddress: ci.local.String(),
	}}}
	var tun net.Conn
	if sb.emit(ev) {
		timer := time.NewTimer(s.opts.TunnelTimeout)
		select {
		case tun = <-w.ch:
		case <-timer.C:
			log.Debug().Dur("waited", s.opts.TunnelTimeout).Msg("incoming: no tunnel came")
		case <-sb.done:
		case <-ctx.Done():
		}
		timer.Stop()
	}
	if tun == nil {
		if s.unpend(tok, w) {
			return nil
		}
		// Claimed meanwhile: the tunnel is on its way, and no longer wanted.
		refuse(<-w.ch, tunnel.StatusUnknown)
		return nil
	}

	// The client's verdict follows the token.
	_ = tun.SetReadDeadline(time.Now().Add(s.opts.TunnelTimeout))
	var b [1]byte
	if _, err := io.ReadFull(tun, b[:]); err != nil {
		log.Debug().Err(err).Msg("incoming: tunnel without a delivery byte")
		tun.Close()
		return nil
	}
	_ = tun.SetReadDeadline(time.Time{})
	if b[0] != tunnel.Delivered {
		log.Debug().Uint8("byte", b[0]).Msg("incoming: not delivered (nothing listens locally)")
		tun.Close()
		return nil
	}
	if sb.isEnded() || ctx.Err() != nil {
		refuse(tun, tunnel.StatusRefused)
		return nil
	}
	_ = tun.SetWriteDeadline(time.Now().Add(s.opts.TunnelTimeout))
	if _, err := tun.Write([]byte{byte(tunnel.StatusOK)}); err != nil {
		log.Debug().Err(err).Msg("incoming: tunnel broke before the bytes")
		tun.Close()
		return nil
	}
	_ = tun.SetWriteDeadline(time.Time{})
	log.Debug().Msg("incoming: delivered")
	return tun
}

// unpend drops tok's waiter if it still waits (true), remembering the token as stale.
func (s *Server) unpend(tok tunnel.Token, w *waiter) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pending[tok] != w {
		return false
	}
	delete(s.pending, tok)
	now := time.Now()
	for t, at := range s.stale {
		if now.Sub(at) > staleFor {
			delete(s.stale, t)
		}
	}
	s.stale[tok] = now
	return true
}

// Claim takes a tunnel whose token this service issued (outgoing.Options.Claim): it hands it to
// its waiting connection, or refuses it at once when the wait is over. Tokens it never issued
// it leaves (false) to the outgoing service.
func (s *Server) Claim(tok tunnel.Token, c net.Conn) bool {
	s.mu.Lock()
	if w, ok := s.pending[tok]; ok {
		delete(s.pending, tok)
		s.mu.Unlock()
		w.ch <- c // buffered; the only send
		return true
	}
	if _, ok := s.stale[tok]; ok {
		delete(s.stale, tok)
		s.mu.Unlock()
		go refuse(c, tunnel.StatusUnknown)
		return true
	}
	s.mu.Unlock()
	return false
}

// refuse writes a refusal status on a tunnel and closes it.
func refuse(c net.Conn, st tunnel.Status) {
	// A client that reads nothing must not hold the goroutine.
	_ = c.SetWriteDeadline(time.Now().Add(time.Second))
	_, _ = c.Write([]byte{byte(st)})
	c.Close()
}

func closeWrite(c net.Conn) error {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}

func addrPort(a net.Addr) netip.AddrPort {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.AddrPort()
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap
}
