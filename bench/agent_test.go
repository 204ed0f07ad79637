package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	agentv1 "github.com/kwarp-dev/kwarp/agent/api/v1"
	"github.com/kwarp-dev/kwarp/agent/sessionserver"
	"github.com/kwarp-dev/kwarp/kube"
	"github.com/kwarp-dev/kwarp/kube/agentpod"
	"github.com/kwarp-dev/kwarp/kube/target"
	"github.com/kwarp-dev/kwarp/test/testenv"
)

// The baselines that talk to the agent use kwarp's own packages the way core.Run does
// (target.Resolve, agentpod.Ensure, Agent.Dial), with the cluster-admin kubeconfig, from the
// node rather than the laptop namespace: client-go cannot be confined to a network namespace
// (its port-forward dials from goroutines on any thread). The node reaches the pod directly,
// but these baselines do not use that: they too go through the API server's port-forward,
// exactly the path kwarp takes from the laptop. Only kwarp's side must run on the laptop to be
// honest, and it does.

// agentOptions are the Options core.Run fills for `kwarp exec -n NS -t deploy/bench` with no
// policy. Image is the e2e agent image the kwarp binary under test starts, so that both find
// the same agent Job (its name hashes the target container, image, port and privilege).
func (f *fixture) agentOptions(b *testing.B) agentpod.Options {
	b.Helper()
	c, err := kube.NewClients(testenv.Env.Config, "")
	if err != nil {
		b.Fatal(err)
	}
	resolved, err := target.Resolve(f.ctx, c, f.ns, target.KindDeployment, deployName, "")
	if err != nil {
		b.Fatal(err)
	}
	return agentpod.Options{
		Client: c.Kube, RESTConfig: c.Config, Target: resolved, Namespace: f.ns,
		Image: testenv.AgentImage(b), Mode: agentpod.ModeJob, SessionID: newID(),
	}
}

// rawAgent is a gRPC connection to the bench target's agent, holding a session (and so the
// agent's lease) while it is open.
type rawAgent struct {
	agent *agentpod.Agent
	conn  *grpc.ClientConn
	stop  context.CancelFunc
}

// dialAgent ensures the agent (reusing the one kwarp started, or starting it as kwarp would),
// dials it and opens a session with it.
func (f *fixture) dialAgent(b *testing.B) *rawAgent {
	b.Helper()
	o := f.agentOptions(b)
	a, err := agentpod.Ensure(f.ctx, o)
	if err != nil {
		b.Fatalf("ensure the agent: %v", err)
	}
	conn, err := a.Dial(f.ctx)
	if err != nil {
		a.Close()
		b.Fatalf("dial the agent: %v", err)
	}
	host, _ := os.Hostname()
	sc := agentv1.NewSessionClient(conn)
	if _, err := sc.Open(f.ctx, &agentv1.OpenRequest{SessionId: o.SessionID, User: "bench", Host: host, Version: testenv.KwarpVersion}); err != nil {
		a.Close()
		b.Fatalf("open a session with the agent: %v", err)
	}
	hctx, cancel := context.WithCancel(metadata.AppendToOutgoingContext(context.Background(), sessionserver.SessionIDKey, o.SessionID))
	stream, err := sc.Hold(hctx)
	if err != nil {
		cancel()
		a.Close()
		b.Fatalf("hold the session: %v", err)
	}
	go func() { // the same keep-alive as core's session: a ping every 5s
		for seq := int64(1); ; seq++ {
			if stream.Send(&agentv1.Ping{Seq: seq}) != nil {
				return
			}
			if _, err := stream.Recv(); err != nil {
				return
			}
			select {
			case <-hctx.Done():
				return
			case <-time.After(5 * time.Second):
			}
		}
	}()
	return &rawAgent{agent: a, conn: conn, stop: cancel}
}

func (r *rawAgent) Close() {
	r.stop()
	r.agent.Close()
}

// statLoop times n Stat calls of path, one gRPC round trip each, after one untimed call, and
// returns the mean ns per call.
func (r *rawAgent) statLoop(b *testing.B, ctx context.Context, path string, n int) float64 {
	b.Helper()
	fs := agentv1.NewFsClient(r.conn)
	one := func() {
		resp, err := fs.Stat(ctx, &agentv1.StatRequest{Path: path})
		if err != nil || resp.Errno != 0 || resp.Info.GetSize() != fileSize {
			b.Fatalf("Stat %s: %v, errno %d, size %d; want a %d-byte file", path, err, resp.GetErrno(), resp.GetInfo().GetSize(), fileSize)
		}
	}
	one()
	start := time.Now()
	for range n {
		one()
	}
	return float64(time.Since(start).Nanoseconds()) / float64(n)
}

// statReadLoop times n Stat-then-Read pairs of path (the two agent round trips a remote open
// under kwarp makes today: the fs plugin's Stat, then the core's Read into a memfd) and returns
// the mean ns per pair.
func (r *rawAgent) statReadLoop(b *testing.B, ctx context.Context, path string, n int) float64 {
	b.Helper()
	fs := agentv1.NewFsClient(r.conn)
	one := func() {
		resp, err := fs.Stat(ctx, &agentv1.StatRequest{Path: path})
		if err != nil || resp.Errno != 0 {
			b.Fatalf("Stat %s: %v, errno %d", path, err, resp.GetErrno())
		}
		stream, err := fs.Read(ctx, &agentv1.ReadRequest{Path: path, MaxBytes: 1 << 30})
		if err != nil {
			b.Fatalf("Read %s: %v", path, err)
		}
		got := 0
		for {
			chunk, err := stream.Recv()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil || chunk.Errno != 0 {
				b.Fatalf("Read %s: %v, errno %d", path, err, chunk.GetErrno())
			}
			got += len(chunk.Data)
		}
		if got != fileSize {
			b.Fatalf("Read %s: %d bytes, want %d", path, got, fileSize)
		}
	}
	one()
	start := time.Now()
	for range n {
		one()
	}
	return float64(time.Since(start).Nanoseconds()) / float64(n)
}

func newID() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
