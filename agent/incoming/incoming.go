// Package incoming is the agent's Incoming capability (agentv1.Incoming): it gives a session
// the pod's incoming TCP traffic on a port, all of it (steal), the HTTP requests its filters
// match (filtered steal, package httpsteal), or a copy (mirror), while the deployed container
// keeps serving everyone else.
//
// # Subscriptions
//
// Subscribe holds one subscription (a port, a mode, the steal blocks of a filtered steal) for
// as long as its stream is open. Its first event is Subscribed, once the port is redirected to
// the agent, or Refused, after which the stream ends: another session already steals what the
// subscription asks for (a whole-port steal excludes every other session's steal on the port;
// filters of different sessions must not overlap, httpsteal.OverlapError), or the agent
// cannot redirect at all (no NET_ADMIN, no iptables, a targetless agent). Mirrors never
// conflict. When the stream ends, however it ends (the client cancels it, the CLI dies, the
// session ends: EndSession), everything the subscription added goes: its redirect rule, its
// routes in the port's router, its tunnels waiting or spliced.
//
// # Data path
//
// Bytes never leave the agent except on tunnels. Each port that any subscription wants has one
// listener, made in the target's network namespace (so that REDIRECT can reach it) and shared
// by every session; each subscription adds its own redirect rule to it (netfilter, nat
// PREROUTING), so the port stays redirected as long as one subscription needs it. An accepted
// connection goes to, in this order: the session with a whole-port steal; the port's router
// when it has routes (each request to the session whose filter matches it, the rest to the
// app); else the deployed app, dialled from inside the target's namespace to the connection's
// original destination (SO_ORIGINAL_DST; PREROUTING rules do not apply to it, so it is not
// redirected again). Connections from the node itself (the kubelet's probes) always go to the
// app: a steal must not make the pod NotReady.
//
// A connection handed to a session is announced with an IncomingConnection event carrying a
// fresh token; the client opens a tunnel with it (agent/api/tunnel: the agent's tunnels all
// arrive through outgoing.Options.Claim) and says whether it reached its local process. When it
// did not, when no tunnel comes within Options.TunnelTimeout, or when the session is gone, the
// connection goes to the app instead: a client of the pod never hangs on a session.
//
// A mirror is a passthrough tap: the connection goes to the app as above, the app answers the
// real client, and every mirroring session gets a copy of what the client sends on a tunnel of
// its own (its answers are read and discarded). Each copy has a bounded buffer
// (Options.MirrorBuffer); a session that reads too slowly loses its copy, never slows the real
// connection. Mirror redirects do not reset established connections (no conntrack flush).
package incoming

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/kwarp-dev/kwarp/agent/api/stealfilter"
	"github.com/kwarp-dev/kwarp/agent/api/tunnel"
	agentv1 "github.com/kwarp-dev/kwarp/agent/api/v1"
	"github.com/kwarp-dev/kwarp/agent/httpsteal"
	"github.com/kwarp-dev/kwarp/agent/sessionserver"
	"github.com/kwarp-dev/kwarp/logging"
	"github.com/rs/zerolog"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Defaults of Options.
const (
	DefaultTunnelTimeout = 5 * time.Second
	DefaultMirrorBuffer  = 8 << 20
	DefaultDialTimeout   = 5 * time.Second
	// eventBuffer bounds the events waiting to be sent on one stream: a client that does not
	// read its stream gets its connections sent to the app rather than queued without end.
	eventBuffer = 1024
)

// Sessions tells which sessions are open and who opened them; the agent's is its
// *sessionserver.Server.
type Sessions interface {
	Known(id string) bool
	Info(id string) (user, host string, ok bool)
}

// Redirects adds the netfilter redirects; the agent's wraps its netfilter.Redirector.
type Redirects interface {
	// Ready waits until redirects can be added; its error says why they cannot.
	Ready(ctx context.Context) error
	// Redirect sends the TCP connections that arrive from outside the target's namespace on
	// port to toPort, for session. flush: connections established before are reset (a steal);
	// a mirror keeps them. remove undoes this redirect only.
	Redirect(port, toPort int, session string, flush bool) (remove func() error, err error)
	// Hold keeps what the redirected connections need (the namespace's connection tracking)
	// while one is open; release when it closes.
	Hold() (release func())
}

// Namespace makes sockets in the target's network namespace; *netns.Dialer is one.
type Namespace interface {
	Run(fn func() error) error
	DialTCP(ctx context.Context, addr netip.AddrPort, timeout time.Duration) (net.Conn, error)
}

// Options configure the service.
type Options struct {
	// Sessions, required, refuses subscriptions of sessions that are not open and names the
	// holders in refusals.
	Sessions Sessions
	// Redirects adds the redirect rules; nil: the agent cannot redirect (every subscription is
	// refused with RedirectErr's reason).
	Redirects Redirects
	// RedirectErr says why Redirects is nil (a targetless agent…).
	RedirectErr error
	// NS makes the listeners and dials the app in the target's namespace; required.
	NS Namespace
	// TargetPID is the target's current PID, for its listening ports and its routes; nil
	// when targetless.
	TargetPID func() (int, error)
	// ProcRoot is where processes are found; "" is /proc.
	ProcRoot string
	// AgentPorts are ports the agent itself listens on in the target's namespace (an
	// ephemeral-container agent's gRPC port), left out of Subscribed.pod_ports.
	AgentPorts func() []int
	// NodeAddrs are the node's addresses, when known: connections from them (kubelet probes)
	// always go to the app. The pod's default gateway counts as the node too.
	NodeAddrs []netip.Addr
	// TunnelTimeout is how long a connection waits for its tunnel (DefaultTunnelTimeout).
	TunnelTimeout time.Duration
	// MirrorBuffer bounds what one mirrored copy may hold before it is dropped
	// (DefaultMirrorBuffer, 8 MiB).
	MirrorBuffer int
	// DialTimeout bounds a dial of the app (DefaultDialTimeout).
	DialTimeout time.Duration
	// SniffTimeout is the port routers' httpsteal.Options.SniffTimeout (0: its default).
	SniffTimeout time.Duration
}

// Server is the Incoming service.
type Server struct {
	agentv1.UnimplementedIncomingServer
	log    zerolog.Logger
	opts   Options
	ctx    context.Context // ends with Close: every connection's
	cancel context.CancelFunc

	mu      sync.Mutex
	ports   map[int]*port
	subs    map[*sub]struct{}
	pending map[tunnel.Token]*waiter
	stale   map[tunnel.Token]time.Time // tokens whose wait ended: their late tunnels are refused at once
	live    map[*tracked]struct{}      // connections being served
	closed  bool
	nextID  uint64

	gw gatewayCache
}

// sub is one subscription.
type sub struct {
	id      uint64
	session string
	port    int
	mode    agentv1.SubscribeRequest_Mode
	filters []stealfilter.Config // a filtered steal's blocks; nil: the whole port
	p       *port
	log     zerolog.Logger
	events  chan *agentv1.IncomingEvent // never closed: done says the end
	done    chan struct{}
	once    sync.Once

	// under Server.mu
	ended  bool
	remove func() error // its redirect, once added
}

func (sb *sub) steal() bool { return sb.mode == agentv1.SubscribeRequest_STEAL }
func (sb *sub) whole() bool { return sb.steal() && len(sb.filters) == 0 }

func (sb *sub) isEnded() bool {
	select {
	case <-sb.done:
		return true
	default:
		return false
	}
}

// emit queues ev for the subscription's stream; false when it ended or its queue is full.
func (sb *sub) emit(ev *agentv1.IncomingEvent) bool {
	select {
	case <-sb.done:
		return false
	default:
	}
	select {
	case sb.events <- ev:
		return true
	default:
		sb.log.Warn().Msg("incoming: the client reads its events too slowly; connection sent to the app")
		return false
	}
}

func (sb *sub) describe() string {
	if !sb.steal() {
		return "mirror"
	}
	if sb.whole() {
		return "steal"
	}
	return "steal " + quoteNames(sb.filters)
}

// New returns the service.
func New(log zerolog.Logger, opts Options) *Server {
	if opts.ProcRoot == "" {
		opts.ProcRoot = "/proc"
	}
	if opts.TunnelTimeout <= 0 {
		opts.TunnelTimeout = DefaultTunnelTimeout
	}
	if opts.MirrorBuffer <= 0 {
		opts.MirrorBuffer = DefaultMirrorBuffer
	}
	if opts.DialTimeout <= 0 {
		opts.DialTimeout = DefaultDialTimeout
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Server{
		log: log, opts: opts, ctx: ctx, cancel: cancel,
		ports: map[int]*port{}, subs: map[*sub]struct{}{}, pending: map[tunnel.Token]*waiter{},
		stale: map[tunnel.Token]time.Time{}, live: map[*tracked]struct{}{},
	}
}

// Subscribe holds one subscription while the stream is open: see the package doc.
func (s *Server) Subscribe(req *agentv1.SubscribeRequest, stream agentv1.Incoming_SubscribeServer) error {
	ctx := stream.Context()
	id := sessionserver.SessionID(ctx)
	if id == "" {
		return status.Errorf(codes.InvalidArgument, "Subscribe: no session id in metadata %q", sessionserver.SessionIDKey)
	}
	if !s.known(id) {
		return status.Errorf(codes.FailedPrecondition, "Subscribe: session %s is not open (Open and Hold it first)", id)
	}
	if req.Port < 1 || req.Port > 65535 {
		return status.Errorf(codes.InvalidArgument, "Subscribe: port %d: want 1 to 65535", req.Port)
	}
	port := int(req.Port)
	var filters []stealfilter.Config
	switch req.Mode {
	case agentv1.SubscribeRequest_MIRROR:
		if len(req.HttpFilters) > 0 {
			return status.Errorf(codes.InvalidArgument, "Subscribe: port %d: HTTP filters are for steal only, not mirror", port)
		}
	case agentv1.SubscribeRequest_STEAL:
		for i, raw := range req.HttpFilters {
			c, err := stealfilter.Decode(raw)
			if err != nil {
				return status.Errorf(codes.InvalidArgument, "Subscribe: port %d: HTTP filter %d: %v", port, i, err)
			}
			if c.Port == 0 {
				c.Port = port // a block's port is the subscription's
			}
			if c.Port != port {
				return status.Errorf(codes.InvalidArgument, "Subscribe: port %d: steal %q is for port %d", port, c.Name, c.Port)
			}
			if c.Name == "" {
				c.Name = fmt.Sprintf("filter %d", i+1)
			}
			filters = append(filters, c)
		}
	default:
		return status.Errorf(codes.InvalidArgument, "Subscribe: port %d: unknown mode %d", port, req.Mode)
	}
	log := logging.WithSession(s.log, id).With().Int("port", port).Str("mode", req.Mode.String()).Logger()
	if len(filters) > 0 {
		log = log.With().Str("filters", quoteNames(filters)).Logger()
	}

	refuse := func(r *agentv1.Refused) error {
		log.Info().Str("holder_session", r.HolderSession).Msg("incoming: subscription refused: " + r.Message)
		return stream.Send(&agentv1.IncomingEvent{Event: &agentv1.IncomingEvent_Refused{Refused: r}})
	}

	// Can the agent redirect at all? Asked before anything is made for the port.
	if s.opts.Redirects == nil {
		return refuse(&agentv1.Refused{Message: unavailableMessage(port, s.opts.RedirectErr)})
	}
	if err := s.opts.Redirects.Ready(ctx); err != nil {
		if ctx.Err() != nil {
			return status.FromContextError(ctx.Err()).Err()
		}
		return refuse(&agentv1.Refused{Message: unavailableMessage(port, err)})
	}

	sb := &sub{session: id, port: port, mode: req.Mode, filters: filters, log: log,
		events: make(chan *agentv1.IncomingEvent, eventBuffer), done: make(chan struct{})}
	refusal, err := s.register(sb)
	if err != nil {
		return err
	}
	if refusal != nil {
		return refuse(refusal)
	}
	defer s.endSub(sb, "stream ended")

	remove, err := s.opts.Redirects.Redirect(port, sb.p.lport, id, sb.steal())
	if err != nil {
		log.Warn().Err(err).Msg("incoming: redirect failed")
		s.endSub(sb, "redirect failed")
		return refuse(&agentv1.Refused{Message: unavailableMessage(port, err)})
	}
	s.mu.Lock()
	ended := sb.ended
	if !ended {
		sb.remove = remove
	}
	s.mu.Unlock()
	if ended {
		// The session ended while the rule was being added: endSub did not see it.
		if err := remove(); err != nil {
			log.Warn().Err(err).Msg("incoming: remove the redirect")
		}
		return status.Errorf(codes.FailedPrecondition, "Subscribe: session %s ended", id)
	}
	// Registered before this check, the subscription is either seen here as orphaned or
	// ended by EndSession, which runs only after the session is gone.
	if !s.known(id) {
		return status.Errorf(codes.FailedPrecondition, "Subscribe: session %s ended", id)
	}

	ports := s.podPorts()
	log.Info().Int("listener", sb.p.lport).Uints32("pod_ports", ports).Int("subscriptions", s.Active()).Msg("incoming: subscribed")
	if err := stream.Send(&agentv1.IncomingEvent{Event: &agentv1.IncomingEvent_Subscribed{Subscribed: &agentv1.Subscribed{PodPorts: ports}}}); err != nil {
		return err
	}
	for {
		select {
		case ev := <-sb.events:
			if err := stream.Send(ev); err != nil {
				log.Debug().Err(err).Msg("incoming: stream broke")
				return nil
			}
		case <-ctx.Done():
			return nil
		case <-sb.done:
			if s.isClosed() {
				return status.Error(codes.Unavailable, "agent stopping")
			}
			if !s.known(id) {
				return status.Errorf(codes.FailedPrecondition, "session %s ended", id)
			}
			return nil
		}
	}
}

func (s *Server) known(id string) bool { return s.opts.Sessions == nil || s.opts.Sessions.Known(id) }

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// register checks sb against the port's other subscriptions and adds it, with the port's
// listener (made on the first subscription) and its routes. A refusal is returned as a value;
// an error is the agent's own trouble.
func (s *Server) register(sb *sub) (*agentv1.Refused, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, status.Error(codes.Unavailable, "Subscribe: the agent is stopping")
	}
	p := s.ports[sb.port]
	if p != nil && sb.steal() {
		for _, o := range p.subs {
			if o.session == sb.session || !o.steal() {
				continue
			}
			if sb.whole() || o.whole() {
				return s.conflict(sb, o), nil
			}
		}
	}
	if p == nil {
		var err error
		p, err = s.openPort(sb.port)
		if err != nil {
			sb.log.Warn().Err(err).Msg("incoming: listen in the target's namespace")
			return &agentv1.Refused{Message: unavailableMessage(sb.port, err)}, nil
		}
		s.ports[sb.port] = p
	}
	if len(sb.filters) > 0 {
		if r := s.addRoutes(p, sb); r != nil {
			if len(p.subs) == 0 {
				delete(s.ports, sb.port)
				p.close()
			}
			return r, nil
		}
	}
	s.nextID++
	sb.id = s.nextID
	sb.p = p
	sb.log = sb.log.With().Uint64("subscription", sb.id).Logger()
	p.subs = append(p.subs, sb)
	s.subs[sb] = struct{}{}
	return nil, nil
}

// addRoutes adds one route per filter of sb to the port's router, all or none.
func (s *Server) addRoutes(p *port, sb *sub) *agentv1.Refused {
	if p.router == nil {
		r, err := httpsteal.New(httpsteal.Options{
			Port:         p.num,
			DialApp:      s.dialApp,
			SniffTimeout: s.opts.SniffTimeout,
			Log:          s.log.With().Str("component", "httpsteal").Logger(),
		})
		if err != nil {
			return &agentv1.Refused{Message: fmt.Sprintf("port %d: %v", p.num, err)}
		}
		p.router = r
	}
	var added []string
	for _, c := range sb.filters {
		err := p.router.Add(httpsteal.Route{Owner: sb.session, Config: c, Dial: s.routeDial(sb)})
		if err == nil {
			added = append(added, c.Name)
			continue
		}
		for _, name := range added {
			p.router.Remove(sb.session, name)
		}
		var oe *httpsteal.OverlapError
		if errors.As(err, &oe) {
			user, host, _ := s.info(oe.Holder.Owner)
			msg := fmt.Sprintf("port %d: steal %q overlaps steal %q held by %s", p.num, c.Name, oe.Holder.Config.Name, holderText(oe.Holder.Owner, user, host))
			if oe.Example != "" {
				msg += ": both match " + oe.Example
			}
			msg += "; make the filters disjoint (a header only you send, a path prefix of your own) or ask the holder to stop"
			return &agentv1.Refused{Message: msg, HolderSession: oe.Holder.Owner, HolderUser: user, HolderHost: host}
		}
		return &agentv1.Refused{Message: fmt.Sprintf("port %d: steal %q cannot be added: %v", p.num, c.Name, err)}
	}
	return nil
}

// conflict is the refusal of sb because of o, another session's steal on the port.
func (s *Server) conflict(sb, o *sub) *agentv1.Refused {
	user, host, _ := s.info(o.session)
	holder := holderText(o.session, user, host)
	var msg string
	switch {
	case sb.whole() && o.whole():
		msg = fmt.Sprintf("port %d: cannot steal the whole port: %s steals the whole port already", sb.port, holder)
	case sb.whole():
		msg = fmt.Sprintf("port %d: cannot steal the whole port: %s steals %s on it; steal with an HTTP filter that does not overlap theirs instead", sb.port, holder, quoteNames(o.filters))
	default:
		msg = fmt.Sprintf("port %d: steal %s cannot be added: %s steals the whole port", sb.port, quoteNames(sb.filters), holder)
	}
	msg += "; wait until they stop, or mirror the port instead"
	return &agentv1.Refused{Message: msg, HolderSession: o.session, HolderUser: user, HolderHost: host}
}

func (s *Server) info(id string) (user, host string, ok bool) {
	if s.opts.Sessions == nil {
		return "", "", false
	}
	return s.opts.Sessions.Info(id)
}

// holderText names a session for a message: "session 3f2a9c01… (bob@bob-laptop)".
func holderText(id, user, host string) string {
	short := id
	if len(short) > 8 {
		short = short[:8] + "…"
	}
	t := "session " + short
	switch {
	case user != "" && host != "":
		t += " (" + user + "@" + host + ")"
	case user != "":
		t += " (" + user + ")"
	case host != "":
		t += " (on " + host + ")"
	}
	return t
}

func quoteNames(cs []stealfilter.Config) string {
	names := make([]string, len(cs))
	for i, c := range cs {
		names[i] = fmt.Sprintf("%q", c.Name)
	}
	return strings.Join(names, ", ")
}

// unavailableMessage says why the agent cannot redirect port, with what would fix it.
func unavailableMessage(port int, err error) string {
	if err == nil {
		err = errors.New("no redirector")
	}
	text := err.Error()
	low := strings.ToLower(text)
	switch {
	case strings.Contains(low, "targetless"):
		return fmt.Sprintf("port %d: this agent has no target (a targetless session), so there is no pod traffic to steal or mirror; run with --target to receive a pod's incoming traffic", port)
	case strings.Contains(low, "executable file not found") || strings.Contains(low, "xtables") && strings.Contains(low, "no such file"):
		return fmt.Sprintf("the agent cannot redirect port %d: %s; its image lacks the iptables binaries (xtables-nft-multi, xtables-legacy-multi)", port, text)
	case strings.Contains(low, "namespace changed"):
		return fmt.Sprintf("the agent cannot redirect port %d: %s; the target restarted into a new network namespace: start the session again", port, text)
	case strings.Contains(low, "target network namespace"):
		return fmt.Sprintf("the agent cannot work in the target's network namespace for port %d: %s; it needs to be able to enter it (CAP_SYS_ADMIN, hostPID) and the target must be running", port, text)
	case strings.Contains(low, "permission denied") || strings.Contains(low, "operation not permitted") || strings.Contains(low, "eperm"):
		return fmt.Sprintf("the agent cannot redirect port %d: %s; it needs the NET_ADMIN capability in the target's network namespace (agent privileged = true, or NET_ADMIN granted to the agent)", port, text)
	}
	return fmt.Sprintf("the agent cannot redirect port %d: %s; it needs the NET_ADMIN capability in the target's network namespace and iptables in its image", port, text)
}

// endSub ends a subscription once: its redirect rule goes (before the listener, so that no
// connection meets a closed port), then its routes, its tunnels, and the port's listener when
// no subscription is left on it.
func (s *Server) endSub(sb *sub, why string) {
	sb.once.Do(func() {
		close(sb.done)
		s.mu.Lock()
		sb.ended = true
		remove := sb.remove
		sb.remove = nil
		delete(s.subs, sb)
		p := sb.p
		idle := false
		if p != nil {
			p.subs = slices.DeleteFunc(p.subs, func(o *sub) bool { return o == sb })
			if p.router != nil {
				for _, c := range sb.filters {
					p.router.Remove(sb.session, c.Name)
				}
			}
			if len(p.subs) == 0 && s.ports[p.num] == p {
				delete(s.ports, p.num)
				idle = true
			}
		}
		var closers []*tracked
		for t := range s.live {
			if t.sub == sb {
				closers = append(closers, t)
			}
		}
		active := len(s.subs)
		s.mu.Unlock()
		if remove != nil {
			if err := remove(); err != nil {
				sb.log.Warn().Err(err).Msg("incoming: remove the redirect (the agent's cleanup will try again)")
			}
		}
		if idle {
			p.close()
		}
		for _, t := range closers {
			t.close()
		}
		if sb.p != nil {
			sb.log.Info().Str("reason", why).Int("connections_closed", len(closers)).Int("subscriptions", active).Msg("incoming: subscription ended")
		}
	})
}

// EndSession ends every subscription of session id and closes its connections.
func (s *Server) EndSession(id string) {
	s.mu.Lock()
	var subs []*sub
	for sb := range s.subs {
		if sb.session == id {
			subs = append(subs, sb)
		}
	}
	s.mu.Unlock()
	for _, sb := range subs {
		s.endSub(sb, "session ended")
	}
}

// Close ends every subscription and closes every connection: the agent is stopping.
func (s *Server) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	subs := make([]*sub, 0, len(s.subs))
	for sb := range s.subs {
		subs = append(subs, sb)
	}
	s.mu.Unlock()
	for _, sb := range subs {
		s.endSub(sb, "agent stopping")
	}
	s.cancel()
	s.mu.Lock()
	ports := s.ports
	s.ports = map[int]*port{}
	live := s.live
	s.live = map[*tracked]struct{}{}
	s.mu.Unlock()
	for _, p := range ports {
		p.close()
	}
	for t := range live {
		t.close()
	}
}

// Active is the number of subscriptions, for logs and tests.
func (s *Server) Active() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.subs)
}

// Connections is the number of connections being served (to a session or the app).
func (s *Server) Connections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.live)
}

// tracked is a set of connections served together, closed when their subscription ends (sub
// set) or the agent stops.
type tracked struct {
	sub   *sub // nil: the app's, left alone when subscriptions end
	conns []net.Conn
	once  sync.Once
}

func (t *tracked) close() {
	t.once.Do(func() {
		for _, c := range t.conns {
			c.Close()
		}
	})
}

// track registers conns; untrack unregisters them (it does not close them). When the server is
// closed, conns are closed at once and ok is false.
func (s *Server) track(sb *sub, conns ...net.Conn) (untrack func(), ok bool) {
	t := &tracked{sub: sb, conns: conns}
	s.mu.Lock()
	if s.closed || (sb != nil && sb.ended) {
		s.mu.Unlock()
		t.close()
		return func() {}, false
	}
	s.live[t] = struct{}{}
	s.mu.Unlock()
	return func() {
		s.mu.Lock()
		delete(s.live, t)
		s.mu.Unlock()
	}, true
}
