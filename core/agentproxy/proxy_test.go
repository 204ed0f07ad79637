package agentproxy

import (
	"context"
	"io"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	agentv1 "github.com/kwarp-dev/kwarp/agent/api/v1"
)

// fakeAgent serves a unary and a server-streaming method, enough to prove both shapes pass.
type fakeAgent struct {
	agentv1.UnimplementedEnvServer
	agentv1.UnimplementedFsServer
}

func (fakeAgent) Get(context.Context, *agentv1.GetEnvRequest) (*agentv1.GetEnvResponse, error) {
	return &agentv1.GetEnvResponse{Vars: []*agentv1.EnvVar{{Name: "FROM", Value: "agent"}}}, nil
}

func (fakeAgent) Read(req *agentv1.ReadRequest, s agentv1.Fs_ReadServer) error {
	for i := 0; i < 3; i++ {
		if err := s.Send(&agentv1.ReadChunk{Data: []byte(req.Path)}); err != nil {
			return err
		}
	}
	return nil
}

func serve(t *testing.T, s *grpc.Server) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(l)
	t.Cleanup(s.Stop)
	return l.Addr().String()
}

func dial(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	c, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestForwardsUnaryAndStreams(t *testing.T) {
	agentSrv := grpc.NewServer()
	agentv1.RegisterEnvServer(agentSrv, fakeAgent{})
	agentv1.RegisterFsServer(agentSrv, fakeAgent{})
	agentConn := dial(t, serve(t, agentSrv))

	proxyConn := dial(t, serve(t, grpc.NewServer(ServerOptions(agentConn)...)))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	env, err := agentv1.NewEnvClient(proxyConn).Get(ctx, &agentv1.GetEnvRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(env.Vars) != 1 || env.Vars[0].Value != "agent" {
		t.Fatalf("unary through the proxy = %v", env.Vars)
	}

	stream, err := agentv1.NewFsClient(proxyConn).Read(ctx, &agentv1.ReadRequest{Path: "/x"})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for {
		c, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if string(c.Data) != "/x" {
			t.Fatalf("chunk %q", c.Data)
		}
		n++
	}
	if n != 3 {
		t.Fatalf("got %d chunks through the proxy, want 3", n)
	}

	// a method the agent does not have: the agent's Unimplemented comes back
	if _, err := agentv1.NewFsClient(proxyConn).Stat(ctx, &agentv1.StatRequest{Path: "/"}); err == nil {
		t.Fatal("Stat on an agent without it succeeded through the proxy")
	}
}
