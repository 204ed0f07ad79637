package agentpod

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"k8s.io/apimachinery/pkg/util/httpstream"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/transport/spdy"
)

// healthTimeout bounds the wait for the agent to answer SERVING through a new port-forward.
// The port-forward is ready when the API server accepted it, which can be before the agent
// listens (an ephemeral agent that has just started), so Dial retries within this time.
const healthTimeout = 20 * time.Second

// forward is one client-go port-forward from 127.0.0.1:<random> to the agent's port.
type forward struct {
	local int
	stop  chan struct{}
	done  chan error
}

func (f *forward) close() {
	select {
	case <-f.stop:
	default:
		close(f.stop)
	}
	select {
	case <-f.done:
	case <-time.After(2 * time.Second):
	}
}

// Dial opens a port-forward through the API server to the agent's port, on a random local port
// of 127.0.0.1, and a gRPC client connection over it, and waits until the agent's health
// service answers SERVING. The connection carries the agent's services (agentv1.Session, Env,
// Fs, …). It is plaintext inside the API server's TLS tunnel: mutual TLS with a key made for
// the session comes later. Close (on the Agent) closes it and stops the port-forward.
//
// A port-forward that breaks (the API server restarts, the laptop sleeps) is not
// re-established yet: calls then fail with Unavailable and the caller dials again.
func (a *Agent) Dial(ctx context.Context) (*grpc.ClientConn, error) {
	fw, err := a.forward(ctx)
	if err != nil {
		return nil, err
	}
	conn, err := grpc.NewClient("passthrough:///127.0.0.1:"+strconv.Itoa(fw.local),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
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

// forward starts the port-forward the way kubectl does: WebSockets first (the API server's
// current protocol, which also passes proxies that strip SPDY's upgrade), falling back to SPDY
// when the server does not speak it.
func (a *Agent) forward(ctx context.Context) (*forward, error) {
	u := a.client.CoreV1().RESTClient().Post().
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

	fw := &forward{stop: make(chan struct{}), done: make(chan error, 1)}
	ready := make(chan struct{})
	out := logWriter{a.log, zerolog.DebugLevel}
	pf, err := portforward.NewOnAddresses(fallback, []string{"127.0.0.1"},
		[]string{"0:" + strconv.Itoa(a.Port)}, fw.stop, ready, out, out)
	if err != nil {
		return nil, fmt.Errorf("port-forward to %s: %w", a, err)
	}
	go func() { fw.done <- pf.ForwardPorts() }()
	select {
	case <-ready:
	case err := <-fw.done:
		return nil, a.forwardError(err)
	case <-ctx.Done():
		fw.close()
		return nil, fmt.Errorf("port-forward to %s: %w", a, ctx.Err())
	}
	ports, err := pf.GetPorts()
	if err != nil || len(ports) == 0 {
		fw.close()
		return nil, fmt.Errorf("port-forward to %s: no local port: %v", a, err)
	}
	fw.local = int(ports[0].Local)
	a.log.Debug().Int("local", fw.local).Int("remote", a.Port).Str("pod", a.Pod).Msg("port-forward ready")
	return fw, nil
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

// logWriter turns the port-forward's progress lines ("Forwarding from 127.0.0.1:…") into
// debug log lines: the user's terminal belongs to the user's command.
type logWriter struct {
	log   zerolog.Logger
	level zerolog.Level
}

var _ io.Writer = logWriter{}

func (w logWriter) Write(p []byte) (int, error) {
	w.log.WithLevel(w.level).Msg(strings.TrimSpace(string(p)))
	return len(p), nil
}
