// Package agent is the in-cluster side of a kwarp session: one gRPC server with one service
// per capability (env, fs, dns, outgoing, incoming), running in the target's namespaces. The CLI
// reaches it through the API server with a port-forward, so a session needs only a kubeconfig.
//
// Each capability lives in its own package and registers here:
//
//	agent/target         finds the target container's main process (and follows it)
//	agent/sessionserver  Session: sessions and the agent's lease (agent/lease)
//	agent/envserver      Env: the target's environment
//	agent/fsserver       Fs: the target's files, inside its root, with its credentials
//	agent/netns          sockets made in the target's network namespace (for the two below)
//	agent/outgoing       Outgoing: connections from the pod, their bytes on tunnels
//	agent/dnsserver      Dns: DNS queries from the pod, its resolv.conf and hosts
//	agent/netfilter      redirects of the pod's incoming ports to the agent (for steal), and
//	                     their cleanup however the agent ends
//	agent/incoming       Incoming: the pod's incoming connections, stolen (whole port or HTTP
//	                     requests a filter matches, agent/httpsteal) or mirrored, on tunnels
//
// plus the standard gRPC health service, which the CLI uses to know the agent is up.
//
// The agent listens on one port, since a port-forward reaches one port: gRPC connections and
// the data tunnels (outgoing and incoming connections') arrive there alike, told apart by
// their first four bytes (Serve).
package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kwarp-dev/kwarp/agent/api/tunnel"
	agentv1 "github.com/kwarp-dev/kwarp/agent/api/v1"
	"github.com/kwarp-dev/kwarp/agent/creds"
	"github.com/kwarp-dev/kwarp/agent/dnsserver"
	"github.com/kwarp-dev/kwarp/agent/envserver"
	"github.com/kwarp-dev/kwarp/agent/fsserver"
	"github.com/kwarp-dev/kwarp/agent/incoming"
	"github.com/kwarp-dev/kwarp/agent/lease"
	"github.com/kwarp-dev/kwarp/agent/netns"
	"github.com/kwarp-dev/kwarp/agent/outgoing"
	"github.com/kwarp-dev/kwarp/agent/sessionserver"
	"github.com/kwarp-dev/kwarp/agent/target"
	"github.com/rs/zerolog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// Options say what the agent serves and how long it lives.
type Options struct {
	// Namespace, Pod and Container name the target for the CLI's messages (OpenResponse).
	Namespace, Pod, Container string
	// ContainerID is the target container's ID from the pod status ("containerd://…").
	// Empty and not Ephemeral: a targetless agent.
	ContainerID string
	// Ephemeral: the agent is an ephemeral container sharing the target's PID namespace.
	Ephemeral bool
	// TargetPID, when set, is served instead of discovering the target: for tests and for
	// debugging on a node.
	TargetPID int
	// ProcRoot is where processes are found; "" is /proc.
	ProcRoot string
	// TTL is how long the agent outlives its last session (0: it exits with the last session).
	TTL time.Duration
	// IdleStart is how long the agent waits for its first session (0: forever).
	IdleStart time.Duration
	// Clock drives the lease; nil is the real clock.
	Clock lease.Clock
	// StopGrace bounds a graceful stop: calls still running after it are cut. 0 is 10s.
	StopGrace time.Duration
	// TunnelPairTimeout is how long an outgoing connection and its tunnel wait for each
	// other; 0 is outgoing.DefaultPairTimeout (10s).
	TunnelPairTimeout time.Duration
	// IncomingTunnelTimeout is how long an incoming connection waits for its tunnel before it
	// goes to the app; 0 is incoming.DefaultTunnelTimeout (5s).
	IncomingTunnelTimeout time.Duration
	// NodeIPs are the node's addresses, when known: incoming connections from them (the
	// kubelet's probes) always go to the app, even under a whole-port steal.
	NodeIPs []netip.Addr
	// GuardExe is the program started as the netfilter guard (netfilter.Options.GuardExe); ""
	// is the agent's own executable.
	GuardExe string
}

// Server is the agent's gRPC server.
type Server struct {
	grpc     *grpc.Server
	health   *health.Server
	sessions *sessionserver.Server
	lease    *lease.Lease
	tracker  *target.Tracker // nil: targetless
	netns    *netns.Dialer
	outgoing *outgoing.Server
	incoming *incoming.Server
	nf       *netfilterState // set by Serve
	port     atomic.Int32    // the port Serve listens on
	opts     Options
	log      zerolog.Logger
}

// New finds the target (unless targetless) and builds the server with every capability
// registered. It fails when the target cannot be found: the agent is useless without it, and
// the error (logged to the pod's log) tells the CLI why.
func New(log zerolog.Logger, opts Options) (*Server, error) {
	if opts.ProcRoot == "" {
		opts.ProcRoot = "/proc"
	}
	if opts.StopGrace == 0 {
		opts.StopGrace = 10 * time.Second
	}
	s := &Server{grpc: grpc.NewServer(), health: health.NewServer(), opts: opts, log: log}

	var loc target.Locator // stays a nil interface when targetless
	if find := finder(opts); find != nil {
		t, err := target.NewTracker(opts.ProcRoot, find)
		if err != nil {
			return nil, fmt.Errorf("find the target container: %w", err)
		}
		s.tracker, loc = t, t
		if err := creds.CheckCanSwitch(); err != nil {
			log.Warn().Err(err).Msg("fs capability limited")
		}
	}
	s.lease = lease.New(opts.TTL, opts.IdleStart, opts.Clock)
	s.sessions = sessionserver.New(log, s.lease, opts.Clock, s.Target)
	s.netns = netns.New(loc)
	inOpts := incoming.Options{
		Sessions:      s.sessions,
		NS:            s.netns,
		ProcRoot:      opts.ProcRoot,
		AgentPorts:    s.agentPorts,
		NodeAddrs:     opts.NodeIPs,
		TunnelTimeout: opts.IncomingTunnelTimeout,
	}
	if s.tracker != nil {
		inOpts.Redirects = incomingRedirects{s}
		inOpts.TargetPID = s.TargetPIDErr
	} else {
		inOpts.RedirectErr = errTargetless
	}
	s.incoming = incoming.New(log, inOpts)
	s.outgoing = outgoing.New(log, s.netns, dnsserver.NewResolver(loc, s.netns), outgoing.Options{
		PairTimeout: opts.TunnelPairTimeout,
		Sessions:    s.sessions,
		// Incoming connections' tunnels arrive on the same port as outgoing ones.
		Claim: s.incoming.Claim,
	})
	s.sessions.OnEnd(s.outgoing.EndSession)
	s.sessions.OnEnd(s.incoming.EndSession)

	healthpb.RegisterHealthServer(s.grpc, s.health)
	agentv1.RegisterSessionServer(s.grpc, s.sessions)
	agentv1.RegisterEnvServer(s.grpc, envserver.New(log, loc))
	agentv1.RegisterFsServer(s.grpc, fsserver.New(log, loc))
	agentv1.RegisterOutgoingServer(s.grpc, s.outgoing)
	agentv1.RegisterIncomingServer(s.grpc, s.incoming)
	agentv1.RegisterDnsServer(s.grpc, dnsserver.New(log, loc, s.netns, dnsserver.Options{}))
	s.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	return s, nil
}

// finder returns how to find the target's PID, or nil for a targetless agent.
func finder(opts Options) func() (int, error) {
	switch {
	case opts.TargetPID > 0:
		pid := opts.TargetPID
		return func() (int, error) { return pid, nil }
	case opts.ContainerID != "" || opts.Ephemeral:
		self := os.Getpid()
		return func() (int, error) {
			return target.Locate(opts.ProcRoot, opts.ContainerID, opts.Ephemeral, self)
		}
	}
	return nil
}

// Target describes the target as of now (its PID changes when the container restarts).
func (s *Server) Target() *agentv1.Target {
	t := &agentv1.Target{
		Namespace:   s.opts.Namespace,
		Pod:         s.opts.Pod,
		Container:   s.opts.Container,
		ContainerId: s.opts.ContainerID,
	}
	if s.tracker == nil {
		return t
	}
	p, err := s.tracker.Process()
	if err != nil {
		s.log.Warn().Err(err).Msg("target not found")
		return t
	}
	t.Pid = int32(p.PID)
	if h, err := target.Hostname(s.opts.ProcRoot, p.PID); err != nil {
		s.log.Debug().Err(err).Msg("target hostname")
	} else {
		t.Hostname = h
	}
	return t
}

// Serve answers on lis until ctx ends or the lease expires, then stops gracefully: calls in
// flight get StopGrace to finish and Hold streams end with Unavailable; outgoing connections
// are closed. Both ends return nil; Expired tells them apart.
//
// lis carries gRPC and tunnels both: each accepted connection's first four bytes are read
// (on its own goroutine, with a deadline, so a silent client holds up no one) and the
// connection goes to the outgoing tunnels when they are tunnel.Magic, to gRPC otherwise, with
// the four bytes given back.
func (s *Server) Serve(ctx context.Context, lis net.Listener) error {
	if ta, ok := lis.Addr().(*net.TCPAddr); ok {
		s.port.Store(int32(ta.Port))
	}
	s.nf = s.startNetfilter(ctx)
	defer func() {
		s.nf.close(s)
		s.incoming.Close()
		s.outgoing.Close()
		s.netns.Close()
		if s.tracker != nil {
			s.tracker.Close()
		}
	}()
	s.log.Info().Str("addr", lis.Addr().String()).Msg("agent serving")
	errc := make(chan error, 1)
	grpcLis := splitTunnels(lis, s.outgoing.ServeTunnel)
	go func() { errc <- s.grpc.Serve(grpcLis) }()
	select {
	case err := <-errc:
		if err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			return fmt.Errorf("agent grpc server: %w", err)
		}
		return nil
	case <-ctx.Done():
		s.log.Info().Msg("agent stopping: signalled")
	case <-s.lease.Done():
		s.log.Info().Str("reason", s.lease.Reason()).Msg("agent stopping: lease expired")
	}
	// The pod's ports first: the kubelet kills what is left of the agent (and its guard) when
	// the pod's short grace period ends, however long the calls take to finish.
	s.nf.close(s)
	s.stop()
	<-errc
	return nil
}

func (s *Server) stop() {
	s.health.Shutdown()
	s.sessions.Shutdown()
	// Their spliced connections would otherwise outlive the agent's calls, and Subscribe
	// streams would hold up the graceful stop.
	s.incoming.Close()
	s.outgoing.Close()
	done := make(chan struct{})
	go func() {
		s.grpc.GracefulStop()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(s.opts.StopGrace):
		s.log.Warn().Dur("grace", s.opts.StopGrace).Msg("calls still running after the grace; cutting them")
		s.grpc.Stop()
		<-done
	}
}

// Expired reports whether the lease ended (as opposed to a signal) — for the exit message.
func (s *Server) Expired() bool {
	select {
	case <-s.lease.Done():
		return true
	default:
		return false
	}
}

// TargetPID is the target's current PID (0 when targetless or not found), for the ready line.
func (s *Server) TargetPID() int {
	pid, _ := s.TargetPIDErr()
	return pid
}

// TargetPIDErr is the target's current PID, or why there is none.
func (s *Server) TargetPIDErr() (int, error) {
	if s.tracker == nil {
		return 0, errTargetless
	}
	p, err := s.tracker.Process()
	if err != nil {
		return 0, err
	}
	return p.PID, nil
}

// agentPorts is the agent's own port when the agent listens in the target's network
// namespace (an ephemeral container), so that it is not reported as one of the pod's.
func (s *Server) agentPorts() []int {
	port := int(s.port.Load())
	pid, err := s.TargetPIDErr()
	if port == 0 || err != nil {
		return nil
	}
	self, err1 := os.Readlink("/proc/self/ns/net")
	target, err2 := os.Readlink(filepath.Join(s.opts.ProcRoot, strconv.Itoa(pid), "ns", "net"))
	if err1 != nil || err2 != nil || self != target {
		return nil
	}
	return []int{port}
}

// peekTimeout bounds how long an accepted connection may take to send its first four bytes.
// gRPC clients send their preface at once, tunnels their header.
const peekTimeout = 10 * time.Second

// splitListener is the gRPC side of the agent's one listener: it accepts from lis, hands
// tunnels to their handler and yields every other connection from Accept.
type splitListener struct {
	net.Listener
	tunnels func(net.Conn)
	conns   chan net.Conn
	done    chan struct{}
	once    sync.Once

	mu  sync.Mutex
	err error // why accepting ended
}

func splitTunnels(lis net.Listener, tunnels func(net.Conn)) *splitListener {
	l := &splitListener{Listener: lis, tunnels: tunnels, conns: make(chan net.Conn), done: make(chan struct{})}
	go l.acceptLoop()
	return l
}

func (l *splitListener) acceptLoop() {
	var delay time.Duration
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			// Out of fds and the like: wait and go on, as net/http and gRPC do.
			if te, ok := err.(interface{ Temporary() bool }); ok && te.Temporary() && !l.isClosed() {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				time.Sleep(delay)
				continue
			}
			l.fail(err)
			return
		}
		delay = 0
		go l.route(c)
	}
}

// route reads the first four bytes of c and sends it on its way.
func (l *splitListener) route(c net.Conn) {
	var head [len(tunnel.Magic)]byte
	_ = c.SetReadDeadline(time.Now().Add(peekTimeout))
	if _, err := io.ReadFull(c, head[:]); err != nil {
		c.Close()
		return
	}
	_ = c.SetReadDeadline(time.Time{})
	if head == tunnel.Magic {
		l.tunnels(c)
		return
	}
	select {
	case l.conns <- &replayConn{Conn: c, head: head[:]}:
	case <-l.done:
		c.Close()
	}
}

// Accept yields the next connection that is not a tunnel.
func (l *splitListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		l.mu.Lock()
		defer l.mu.Unlock()
		return nil, l.err
	}
}

// Close closes the underlying listener; Accept then fails.
func (l *splitListener) Close() error {
	err := l.Listener.Close()
	l.fail(net.ErrClosed)
	return err
}

func (l *splitListener) fail(err error) {
	l.once.Do(func() {
		l.mu.Lock()
		l.err = err
		l.mu.Unlock()
		close(l.done)
	})
}

func (l *splitListener) isClosed() bool {
	select {
	case <-l.done:
		return true
	default:
		return false
	}
}

// replayConn gives back the bytes read to route the connection before the rest of it.
type replayConn struct {
	net.Conn
	head []byte
}

func (c *replayConn) Read(b []byte) (int, error) {
	if len(c.head) > 0 {
		n := copy(b, c.head)
		c.head = c.head[n:]
		return n, nil
	}
	return c.Conn.Read(b)
}
