package agentpod

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/httpstream"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/transport/spdy"

	"github.com/kwarp-dev/kwarp/agent/sessionserver"
)

// healthTimeout bounds the wait for the agent to answer SERVING through a new port-forward.
// The port-forward is ready when the API server accepted it, which can be before the agent
// listens (an ephemeral agent that has just started), so Dial retries within this time.
const healthTimeout = 20 * time.Second

// forward is one port-forward connection to the agent pod through the API server. gRPC runs
// over its streams directly: there is no local listener, so no other user or process on this
// machine can reach the agent through the session's forward.
type forward struct {
	conn   httpstream.Connection
	port   int
	nextID atomic.Int64
}

func (f *forward) close() { f.conn.Close() }

// dial opens one stream pair (data and error, as kubectl's port-forward does per local
// connection) to the agent's port and returns it as a net.Conn for gRPC.
func (f *forward) dial(ctx context.Context, _ string) (net.Conn, error) {
	id := strconv.FormatInt(f.nextID.Add(1), 10)
	headers := http.Header{}
	headers.Set(corev1.StreamType, corev1.StreamTypeError)
	headers.Set(corev1.PortHeader, strconv.Itoa(f.port))
	headers.Set(corev1.PortForwardRequestIDHeader, id)
	errStream, err := f.conn.CreateStream(headers)
	if err != nil {
		return nil, fmt.Errorf("port-forward error stream: %w", err)
	}
	// nothing is written on the error stream; the API server writes on it when the pod
	// refuses the connection
	errStream.Close()
	headers.Set(corev1.StreamType, corev1.StreamTypeData)
	data, err := f.conn.CreateStream(headers)
	if err != nil {
		f.conn.RemoveStreams(errStream)
		return nil, fmt.Errorf("port-forward data stream: %w", err)
	}
	c := &streamConn{data: data, port: f.port}
	go func() {
		msg, _ := io.ReadAll(errStream)
		if len(msg) > 0 {
			c.fail(fmt.Errorf("agent port %d: %s", f.port, strings.TrimSpace(string(msg))))
		}
		f.conn.RemoveStreams(errStream)
	}()
	return c, nil
}

// streamConn is a port-forward data stream as a net.Conn. Deadlines are not supported by the
// stream; gRPC keeps its own timers.
type streamConn struct {
	data httpstream.Stream
	port int
	mu   sync.Mutex
	err  error
}

func (c *streamConn) fail(err error) {
	c.mu.Lock()
	c.err = err
	c.mu.Unlock()
	c.data.Reset()
}

func (c *streamConn) Read(b []byte) (int, error) {
	n, err := c.data.Read(b)
	if err != nil {
		c.mu.Lock()
		if c.err != nil {
			err = c.err
		}
		c.mu.Unlock()
	}
	return n, err
}

func (c *streamConn) Write(b []byte) (int, error) { return c.data.Write(b) }
func (c *streamConn) Close() error                { return c.data.Reset() }

// CloseWrite ends the stream's sending half (a TCP half-close travelling through the
// port-forward); reads go on until the agent closes its side.
func (c *streamConn) CloseWrite() error                { return c.data.Close() }
func (c *streamConn) LocalAddr() net.Addr              { return pfAddr("kwarp-session") }
func (c *streamConn) RemoteAddr() net.Addr             { return pfAddr("agent:" + strconv.Itoa(c.port)) }
func (c *streamConn) SetDeadline(time.Time) error      { return nil }
func (c *streamConn) SetReadDeadline(time.Time) error  { return nil }
func (c *streamConn) SetWriteDeadline(time.Time) error { return nil }

type pfAddr string

func (a pfAddr) Network() string { return "portforward" }
func (a pfAddr) String() string  { return string(a) }

// Dial opens a port-forward through the API server to the agent's port and a gRPC client
// connection over its streams, and waits until the agent's health service answers SERVING.
// The connection carries the agent's services (agentv1.Session, Env, Fs, …) inside the API
// server's TLS tunnel, reachable by no one else on this machine. Close (on the Agent) closes
// it and the port-forward.
//
// A port-forward that breaks (the API server restarts, the laptop sleeps) is not
// re-established yet: calls then fail with Unavailable and the caller dials again.
func (a *Agent) Dial(ctx context.Context) (*grpc.ClientConn, error) {
	fw, err := a.forward(ctx)
	if err != nil {
		return nil, err
	}
	conn, err := grpc.NewClient("passthrough:///agent",
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(fw.dial),
		grpc.WithChainUnaryInterceptor(a.unarySession),
		grpc.WithChainStreamInterceptor(a.streamSession))
	if err != nil {
		fw.close()
		return nil, fmt.Errorf("grpc client for agent %s: %w", a, err)
	}
	if err := waitServing(ctx, conn); err != nil {
		conn.Close()
		fw.close()
		return nil, fmt.Errorf("agent %s does not answer through the port-forward: %w", a, err)
	}
	a.mu.Lock()
	a.forwards = append(a.forwards, fw)
	a.conns = append(a.conns, conn)
	a.mu.Unlock()
	return conn, nil
}

// Tunnel opens a raw stream to the agent's port: the agent's data tunnels (agent/api/tunnel)
// for outgoing connections. Like the gRPC connection it is reachable by no one else on this
// machine. Each tunnel is one stream pair, the unit kubectl's port-forward uses per local
// connection.
//
// Tunnels travel on a port-forward of their own, opened at the first tunnel: the port-forward
// multiplexer has no flow control, so a stream whose reader is slow (a program that does not
// read its socket) holds up the streams that share its connection; the session's gRPC calls
// and lease pings must not be among them.
func (a *Agent) Tunnel(ctx context.Context) (net.Conn, error) {
	fw, err := a.tunnelForward(ctx)
	if err != nil {
		return nil, fmt.Errorf("tunnel to agent %s: %w", a, err)
	}
	c, err := fw.dial(ctx, "")
	if err != nil {
		return nil, fmt.Errorf("tunnel to agent %s: %w", a, err)
	}
	return c, nil
}

// tunnelForward is the tunnels' port-forward, opened once; concurrent first callers wait for
// the one being opened.
func (a *Agent) tunnelForward(ctx context.Context) (*forward, error) {
	a.tunnelMu.Lock()
	defer a.tunnelMu.Unlock()
	if a.tunnels != nil {
		return a.tunnels, nil
	}
	fw, err := a.forward(ctx)
	if err != nil {
		return nil, err
	}
	a.mu.Lock()
	a.forwards = append(a.forwards, fw)
	a.mu.Unlock()
	a.tunnels = fw
	return fw, nil
}

// withSession names the session in every call's metadata (sessionserver.SessionIDKey): the
// agent ties connections and leases to it. It is set here, on the one connection the core
// owns, so calls a plugin makes through the core carry it too and no plugin can name another
// session.
func (a *Agent) withSession(ctx context.Context) context.Context {
	if a.sessionID == "" {
		return ctx
	}
	md, _ := metadata.FromOutgoingContext(ctx)
	md = md.Copy()
	md.Set(sessionserver.SessionIDKey, a.sessionID)
	return metadata.NewOutgoingContext(ctx, md)
}

func (a *Agent) unarySession(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	return invoker(a.withSession(ctx), method, req, reply, cc, opts...)
}

func (a *Agent) streamSession(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	return streamer(a.withSession(ctx), desc, cc, method, opts...)
}

// forward connects to the pod's portforward subresource the way kubectl does: WebSockets
// first (the API server's current protocol, which also passes proxies that strip SPDY's
// upgrade), falling back to SPDY when the server does not speak it.
func (a *Agent) forward(ctx context.Context) (*forward, error) {
	u := a.client.RESTClient().Post().
		Resource("pods").Namespace(a.Namespace).Name(a.Pod).SubResource("portforward").URL()
	transport, upgrader, err := spdy.RoundTripperFor(a.config)
	if err != nil {
		return nil, fmt.Errorf("port-forward transport: %w", err)
	}
	dialer := spdy.NewDialer(upgrader, &http.Client{Transport: transport}, http.MethodPost, u)
	ws, err := portforward.NewSPDYOverWebsocketDialer(u, a.config)
	if err != nil {
		return nil, fmt.Errorf("port-forward websocket transport: %w", err)
	}
	fallback := portforward.NewFallbackDialer(ws, dialer, func(err error) bool {
		return httpstream.IsUpgradeFailure(err) || httpstream.IsHTTPSProxyError(err)
	})
	type dialed struct {
		conn httpstream.Connection
		err  error
	}
	done := make(chan dialed, 1)
	go func() {
		conn, _, err := fallback.Dial(portforward.PortForwardProtocolV1Name)
		done <- dialed{conn, err}
	}()
	select {
	case d := <-done:
		if d.err != nil {
			return nil, a.forwardError(d.err)
		}
		a.log.Debug().Int("remote", a.Port).Str("pod", a.Pod).Msg("port-forward ready")
		return &forward{conn: d.conn, port: a.Port}, nil
	case <-ctx.Done():
		go func() {
			if d := <-done; d.conn != nil {
				d.conn.Close()
			}
		}()
		return nil, fmt.Errorf("port-forward to %s: %w", a, ctx.Err())
	}
}

// forwardError words a port-forward that could not start. The dialers return the API
// server's refusal as text ("pods \"x\" is forbidden: User … cannot create resource
// \"pods/portforward\" …"), not as a StatusError, so RBAC is recognised by its words.
func (a *Agent) forwardError(err error) error {
	if err == nil {
		err = errors.New("the port-forward ended before it was ready")
	}
	msg := err.Error()
	if strings.Contains(msg, "forbidden") || strings.Contains(msg, "Forbidden") {
		return fmt.Errorf("forbidden: cannot create pods/portforward in namespace %q: %s; ask a cluster admin for a Role that allows \"create\" on \"pods/portforward\" (`kwarp doctor` lists every permission kwarp needs)",
			a.Namespace, msg)
	}
	return fmt.Errorf("port-forward to agent %s through %s: %w", a, a.config.Host, err)
}

// waitServing asks the agent's gRPC health service until it answers SERVING: the
// port-forward accepts local connections before the agent listens, and a connection the agent
// refuses shows up here as Unavailable, which is worth a retry.
func waitServing(ctx context.Context, conn *grpc.ClientConn) error {
	ctx, cancel := context.WithTimeout(ctx, healthTimeout)
	defer cancel()
	hc := healthpb.NewHealthClient(conn)
	var last error
	for {
		cctx, ccancel := context.WithTimeout(ctx, 2*time.Second)
		resp, err := hc.Check(cctx, &healthpb.HealthCheckRequest{})
		ccancel()
		if err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			return nil
		}
		if err == nil {
			err = fmt.Errorf("health status %s", resp.GetStatus())
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("no SERVING health answer within %s: %w", healthTimeout, last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}
