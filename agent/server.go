// Package agent is the in-cluster side of a kwarp session: one gRPC server with one service
// per capability (env, fs, dns, outgoing, incoming), running in the target's namespaces. The CLI
// reaches it through the API server with a port-forward, so a session needs only a kubeconfig.
//
// Today it serves the standard gRPC health service, which the CLI uses to know the agent is up;
// the capability services register on the same server as they are built.
package agent

import (
	"context"
	"errors"
	"fmt"
	"net"

	"github.com/rs/zerolog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// Server is the agent's gRPC server.
type Server struct {
	grpc   *grpc.Server
	health *health.Server
	log    zerolog.Logger
}

// New builds a server with the health service registered and reporting SERVING.
func New(log zerolog.Logger) *Server {
	s := &Server{grpc: grpc.NewServer(), health: health.NewServer(), log: log}
	healthpb.RegisterHealthServer(s.grpc, s.health)
	s.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	return s
}

// Serve answers on lis until ctx ends, then stops gracefully: sessions' calls in flight finish.
func (s *Server) Serve(ctx context.Context, lis net.Listener) error {
	s.log.Info().Str("addr", lis.Addr().String()).Msg("agent serving")
	errc := make(chan error, 1)
	go func() { errc <- s.grpc.Serve(lis) }()
	select {
	case err := <-errc:
		if err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			return fmt.Errorf("agent grpc server: %w", err)
		}
		return nil
	case <-ctx.Done():
		s.health.Shutdown()
		s.grpc.GracefulStop()
		<-errc
		return nil
	}
}
