package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"testing"
	"time"

	"google.golang.org/grpc"

	agentv1 "github.com/kwarp-dev/kwarp/agent/api/v1"
	"github.com/kwarp-dev/kwarp/core"
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
	stop  func()
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
	hold, err := core.OpenSession(f.ctx, conn, o.SessionID)
	if err != nil {
		a.Close()
		b.Fatal(err)
	}
	return &rawAgent{agent: a, conn: conn, stop: hold.Stop}
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
