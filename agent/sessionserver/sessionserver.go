// Package sessionserver is the agent's Session service: it registers the CLI's sessions and
// ties each to the agent's lease, so the agent lives exactly as long as someone uses it.
//
// A session is Open (id, user, host; the answer describes the target) followed by a Hold
// stream that stays open for the session's life, the CLI pinging and the agent answering each
// ping. Hold names its session in the gRPC metadata key SessionIDKey (Ping carries no id).
//
// The lease is held from Open: if the Hold stream does not follow within OpenGrace the session
// is dropped (a CLI that died between the two calls). It ends when the session's last Hold
// stream ends, for whatever reason: the CLI closed it, exited, or was killed and the
// port-forward broke.
package sessionserver

import (
	"context"
	"errors"
	"io"
	"sync"
	"time"

	agentv1 "github.com/kwarp-dev/kwarp/agent/api/v1"
	"github.com/kwarp-dev/kwarp/agent/lease"
	"github.com/kwarp-dev/kwarp/logging"
	"github.com/kwarp-dev/kwarp/version"
	"github.com/rs/zerolog"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// SessionIDKey is the gRPC metadata key naming the session of a call: of a Hold stream, and of
// every call whose effect lasts as long as its session (an outgoing connection).
const SessionIDKey = "kwarp-session-id"

// OpenGrace is how long an opened session holds the lease without a Hold stream.
const OpenGrace = time.Minute

// Server is the Session service.
type Server struct {
	agentv1.UnimplementedSessionServer
	log    zerolog.Logger
	lease  *lease.Lease
	clock  lease.Clock
	target func() *agentv1.Target
	grace  time.Duration

	mu       sync.Mutex
	sessions map[string]*session
	onEnd    []func(id string)
	stopping chan struct{}
	stopOnce sync.Once
}

type session struct {
	id, user, host string
	opened         time.Time
	holds          int         // Hold streams open
	release        func()      // non-nil while the session holds the lease
	graceTimer     lease.Timer // pending drop of a session that was opened but not held
}

// New returns the service. target describes the target at the time of each Open (its PID may
// change when the container restarts). A nil clock is the real one.
func New(log zerolog.Logger, l *lease.Lease, clock lease.Clock, target func() *agentv1.Target) *Server {
	if clock == nil {
		clock = lease.RealClock{}
	}
	return &Server{
		log: log, lease: l, clock: clock, target: target, grace: OpenGrace,
		sessions: map[string]*session{}, stopping: make(chan struct{}),
	}
}

// Shutdown ends every Hold stream with Unavailable, so a graceful stop of the gRPC server is not
// held up by streams that would otherwise last as long as their sessions.
func (s *Server) Shutdown() {
	s.stopOnce.Do(func() { close(s.stopping) })
}

// OnEnd registers fn to run when a session ends (its last Hold stream ended, or it was opened
// and never held), so a capability can release what the session held. fn runs outside the
// server's lock, after the session is gone: Known(id) is false by then.
func (s *Server) OnEnd(fn func(id string)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.onEnd = append(s.onEnd, fn)
}

// ended runs the OnEnd hooks for id.
func (s *Server) ended(id string) {
	s.mu.Lock()
	hooks := s.onEnd
	s.mu.Unlock()
	for _, fn := range hooks {
		fn(id)
	}
}

// Known reports whether session id is registered: opened or held, and not ended.
func (s *Server) Known(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.sessions[id]
	return ok
}

// Info is who opened session id (OpenRequest's user and host, empty for a session held
// without Open); ok is false when the session is not registered. For messages that name
// the holder of something another session wants.
func (s *Server) Info(id string) (user, host string, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sess, ok := s.sessions[id]
	if !ok {
		return "", "", false
	}
	return sess.user, sess.host, true
}

// Active is the number of registered sessions.
func (s *Server) Active() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sessions)
}

// Open registers a session (again, for a reconnecting CLI) and describes the target.
func (s *Server) Open(ctx context.Context, req *agentv1.OpenRequest) (*agentv1.OpenResponse, error) {
	if req.SessionId == "" {
		return nil, status.Error(codes.InvalidArgument, "Open: session_id is empty")
	}
	log := logging.WithSession(s.log, req.SessionId)
	if req.Version != "" && req.Version != version.Version {
		// The image tag is the release's version, so this is a CLI run against an agent another
		// release started (a shared agent). The protocol is the same v1 API; say so in the logs.
		log.Warn().Str("cli_version", req.Version).Str("agent_version", version.Version).Msg("CLI and agent versions differ")
	}
	s.mu.Lock()
	sess, known := s.sessions[req.SessionId]
	if !known {
		sess = &session{id: req.SessionId, opened: s.clock.Now()}
		s.sessions[req.SessionId] = sess
	}
	sess.user, sess.host = req.User, req.Host
	if sess.release == nil {
		release, ok := s.lease.Acquire()
		if !ok {
			delete(s.sessions, req.SessionId)
			s.mu.Unlock()
			return nil, status.Error(codes.Unavailable, "agent is shutting down: its lease expired; start a new session")
		}
		sess.release = release
	}
	if sess.holds == 0 {
		s.armGraceLocked(sess)
	}
	active := len(s.sessions)
	s.mu.Unlock()

	log.Info().Str("user", req.User).Str("host", req.Host).Bool("reopen", known).Int("active", active).Msg("session opened")
	return &agentv1.OpenResponse{
		AgentVersion:   version.Version,
		Target:         s.target(),
		ActiveSessions: int32(active),
	}, nil
}

// armGraceLocked drops sess after the grace unless a Hold attached by then.
func (s *Server) armGraceLocked(sess *session) {
	if sess.graceTimer != nil {
		sess.graceTimer.Stop()
	}
	sess.graceTimer = s.clock.AfterFunc(s.grace, func() {
		s.mu.Lock()
		if s.sessions[sess.id] != sess || sess.holds > 0 {
			s.mu.Unlock()
			return
		}
		s.endLocked(sess)
		s.mu.Unlock()
		s.ended(sess.id)
		log := logging.WithSession(s.log, sess.id)
		log.Warn().Dur("grace", s.grace).Msg("session opened but never held; dropped")
	})
}

// endLocked removes sess and gives up its lease.
func (s *Server) endLocked(sess *session) {
	delete(s.sessions, sess.id)
	if sess.graceTimer != nil {
		sess.graceTimer.Stop()
		sess.graceTimer = nil
	}
	if sess.release != nil {
		sess.release()
		sess.release = nil
	}
}

// Hold keeps the session's lease while the stream is open and answers each Ping with a Pong of
// the same seq.
func (s *Server) Hold(stream agentv1.Session_HoldServer) error {
	id := SessionID(stream.Context())
	if id == "" {
		return status.Errorf(codes.InvalidArgument, "Hold: no session id in metadata %q; call Open, then Hold with the same id", SessionIDKey)
	}
	log := logging.WithSession(s.log, id)

	s.mu.Lock()
	sess, known := s.sessions[id]
	if !known {
		// Open was not called, or its grace passed before Hold came (a slow port-forward):
		// accept the stream, it is proof enough that a CLI wants the agent.
		sess = &session{id: id, opened: s.clock.Now()}
		s.sessions[id] = sess
	}
	if sess.release == nil {
		release, ok := s.lease.Acquire()
		if !ok {
			delete(s.sessions, id)
			s.mu.Unlock()
			return status.Error(codes.Unavailable, "agent is shutting down: its lease expired; start a new session")
		}
		sess.release = release
	}
	sess.holds++
	if sess.graceTimer != nil {
		sess.graceTimer.Stop()
		sess.graceTimer = nil
	}
	s.mu.Unlock()
	if !known {
		log.Info().Msg("session held without Open")
	}
	log.Debug().Msg("session hold started")

	reason, err := s.pingPong(stream)

	s.mu.Lock()
	sess.holds--
	closed := sess.holds == 0 && s.sessions[id] == sess
	if closed {
		s.endLocked(sess)
	}
	active := len(s.sessions)
	s.mu.Unlock()
	if closed {
		s.ended(id)
		log.Info().Str("reason", reason).Dur("duration", s.clock.Now().Sub(sess.opened)).Int("active", active).Msg("session closed")
	}
	return err
}

// pingPong answers pings until the client ends the stream, the stream breaks (a broken session
// is an ended session, not an error of the agent: nil), or the agent stops. reason is for the log.
func (s *Server) pingPong(stream agentv1.Session_HoldServer) (reason string, err error) {
	pings := make(chan *agentv1.Ping)
	recvErr := make(chan error, 1)
	go func() {
		for {
			p, err := stream.Recv()
			if err != nil {
				recvErr <- err
				return
			}
			select {
			case pings <- p:
			case <-stream.Context().Done():
				recvErr <- stream.Context().Err()
				return
			}
		}
	}()
	for {
		select {
		case p := <-pings:
			if err := stream.Send(&agentv1.Pong{Seq: p.Seq}); err != nil {
				return "send pong: " + err.Error(), nil
			}
		case err := <-recvErr:
			if errors.Is(err, io.EOF) {
				return "the CLI ended the session", nil
			}
			return "stream broke: " + err.Error(), nil
		case <-s.stopping:
			return "agent stopping", status.Error(codes.Unavailable, "agent stopping")
		}
	}
}

// SessionID is the session a call names in its metadata (SessionIDKey); "" when none.
func SessionID(ctx context.Context) string {
	md, ok := metadata.FromIncomingContext(ctx)
	if !ok {
		return ""
	}
	if v := md.Get(SessionIDKey); len(v) > 0 {
		return v[0]
	}
	return ""
}
