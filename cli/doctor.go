package cli

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	agentv1 "github.com/kwarp-dev/kwarp/agent/api/v1"
	"github.com/kwarp-dev/kwarp/agent/sessionserver"
	"github.com/kwarp-dev/kwarp/kube"
	"github.com/kwarp-dev/kwarp/kube/agentpod"
	"github.com/kwarp-dev/kwarp/kube/target"
	"github.com/kwarp-dev/kwarp/version"
)

// CheckStatus is the verdict of one doctor line.
type CheckStatus string

const (
	CheckOK   CheckStatus = "OK"
	CheckFail CheckStatus = "FAIL"
	CheckInfo CheckStatus = "INFO" // a fact worth knowing, never a failure
)

// Check is one line of `kwarp doctor`: "OK what", or "FAIL what — what to do".
type Check struct {
	Status CheckStatus
	What   string
	Fix    string // for FAIL: what to do
}

func (c Check) String() string {
	s := fmt.Sprintf("%-4s %s", c.Status, c.What)
	if c.Status == CheckFail && c.Fix != "" {
		s += " — " + c.Fix
	}
	return s
}

// kernelCheck reports on the kernel features kwarp exec needs (seccomp user notification,
// pidfd_getfd, …). The layer provides it when it lands; until then doctor says so.
var kernelCheck func() []Check

// permission is one RBAC rule kwarp needs, and what for.
type permission struct {
	verb, group, resource, subresource string
	why                                string
}

func (p permission) String() string {
	r := p.resource
	if p.subresource != "" {
		r += "/" + p.subresource
	}
	if p.group != "" {
		r += "." + p.group
	}
	return p.verb + " " + r
}

// permissions are every call kwarp makes in the target's namespace.
var permissions = []permission{
	{"get", "", "pods", "", "resolve pod/ targets"},
	{"list", "", "pods", "", "find a workload's running pod"},
	{"get", "apps", "deployments", "", "resolve deploy/ targets"},
	{"get", "apps", "statefulsets", "", "resolve sts/ targets"},
	{"get", "batch", "jobs", "", "resolve job/ targets and watch the agent Job"},
	{"create", "batch", "jobs", "", "start the agent Job"},
	{"delete", "batch", "jobs", "", "remove an agent Job that failed to start"},
	{"create", "", "pods", "portforward", "reach the agent through the API server"},
	{"update", "", "pods", "ephemeralcontainers", "start the agent as an ephemeral container (--agent-ephemeral)"},
	{"get", "", "pods", "log", "quote a failed agent's last log lines"},
	{"list", "", "events", "", "say why an agent does not start"},
}

func newDoctorCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "doctor",
		Short: "Check what works and what is missing: kernel, API server, RBAC, agent image",
		Long: `Check what kwarp needs and print one line per check: "OK …", or "FAIL … — what to do".
RBAC is checked in the namespace kwarp would use (-n, else the context's namespace) with
SelfSubjectAccessReviews, which every authenticated user may create. Exits 0 when every check
passes, 3 otherwise.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			checks := runDoctor(cmd.Context(), g)
			failed := 0
			for _, c := range checks {
				fmt.Fprintln(cmd.OutOrStdout(), c)
				if c.Status == CheckFail {
					failed++
				}
			}
			if failed > 0 {
				return &ExitError{Code: ExitCluster, Err: fmt.Errorf("doctor: %d check(s) failed", failed)}
			}
			return nil
		},
	}
}

func runDoctor(ctx context.Context, g *globals) []Check {
	var checks []Check
	if kernelCheck != nil {
		checks = append(checks, kernelCheck()...)
	} else {
		checks = append(checks, Check{Status: CheckInfo, What: "kernel: checked when `kwarp exec` lands"})
	}
	image := version.AgentImage()
	source := "this release's default"
	if os.Getenv(version.AgentImageEnv) != "" {
		source = "from " + version.AgentImageEnv
	}
	checks = append(checks, Check{Status: CheckOK, What: fmt.Sprintf("agent image %s (%s)", image, source)})

	ns, err := g.kube.ResolveNamespace()
	if err != nil {
		return append(checks, Check{Status: CheckFail, What: "kubeconfig: " + err.Error(),
			Fix: "pass --kubeconfig or set KUBECONFIG"})
	}
	c, err := g.kube.Connect(ctx, g.log)
	if err != nil {
		server := g.kube.Server()
		if server == "" {
			server = "(no server)"
		}
		return append(checks, Check{Status: CheckFail, What: "API server " + server + ": " + err.Error(),
			Fix: "fix the connection first; RBAC was not checked"})
	}
	checks = append(checks, Check{Status: CheckOK, What: fmt.Sprintf("API server %s reachable (%s)", c.Server, serverVersion(ctx, c))})
	if who := whoAmI(ctx, c); who != "" {
		checks = append(checks, Check{Status: CheckInfo, What: "authenticated as " + who})
	}
	checks = append(checks, Check{Status: CheckInfo, What: fmt.Sprintf("RBAC checked in namespace %q", ns)})
	return append(checks, rbacChecks(ctx, c, ns)...)
}

func serverVersion(ctx context.Context, c *kube.Clients) string {
	ctx, cancel := context.WithTimeout(ctx, kube.FirstContactTimeout)
	defer cancel()
	raw, err := c.Kube.RESTClient().Get().AbsPath("/version").DoRaw(ctx)
	var v struct{ GitVersion string }
	if err != nil || json.Unmarshal(raw, &v) != nil || v.GitVersion == "" {
		return "version unknown"
	}
	return "Kubernetes " + v.GitVersion
}

// whoAmI is the user the API server sees (SelfSubjectReview, GA in 1.28); "" when unknown.
func whoAmI(ctx context.Context, c *kube.Clients) string {
	r, err := c.Kube.SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		return ""
	}
	return r.Status.UserInfo.Username
}

func rbacChecks(ctx context.Context, c *kube.Clients, ns string) []Check {
	var out []Check
	for _, p := range permissions {
		review := &authorizationv1.SelfSubjectAccessReview{Spec: authorizationv1.SelfSubjectAccessReviewSpec{
			ResourceAttributes: &authorizationv1.ResourceAttributes{
				Namespace: ns, Verb: p.verb, Group: p.group, Resource: p.resource, Subresource: p.subresource,
			},
		}}
		r, err := c.Kube.SelfSubjectAccessReviews().Create(ctx, review, metav1.CreateOptions{})
		switch {
		case err != nil:
			out = append(out, Check{Status: CheckFail, What: fmt.Sprintf("RBAC %s: cannot check: %v", p, c.Explain(err, "create", "selfsubjectaccessreviews.authorization.k8s.io", "")),
				Fix: "ask a cluster admin"})
		case r.Status.Allowed:
			out = append(out, Check{Status: CheckOK, What: fmt.Sprintf("RBAC %s (%s)", p, p.why)})
		default:
			why := "denied"
			if r.Status.Reason != "" {
				why += ": " + r.Status.Reason
			}
			out = append(out, Check{Status: CheckFail, What: fmt.Sprintf("RBAC %s in namespace %q %s", p, ns, why),
				Fix: fmt.Sprintf("needed to %s; ask a cluster admin for a Role that allows %q on %q", p.why, p.verb, strings.TrimPrefix(p.String(), p.verb+" "))})
		}
	}
	return out
}

// newAgentPingCmd is a hidden diagnostic (and the end-to-end tests' handle on the agent's
// lifecycle before `kwarp exec` exists): resolve a target, ensure its agent, reach it through
// the port-forward and ask its health service. It prints JSON on stdout, progress on stderr.
func newAgentPingCmd(g *globals) *cobra.Command {
	var (
		ref, container, agentNS string
		ephemeral, privileged   bool
		resolveOnly             bool
		ttl, idleStart          time.Duration
		hold                    time.Duration
		port                    int
	)
	cmd := &cobra.Command{
		Use:    "agent-ping [-t TARGET]",
		Short:  "Start (or reuse) the agent for a target and check it answers",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			stderr := cmd.ErrOrStderr()
			progress := func(s string) { fmt.Fprintln(stderr, "kwarp: "+s) }
			var kind target.Kind
			var name string
			if ref != "" {
				var err error
				if kind, name, err = target.Parse(ref); err != nil {
					return targetError(err)
				}
			} else if ephemeral || resolveOnly {
				return UsageError(fmt.Errorf("--agent-ephemeral and --resolve-only need a target (-t)"))
			}
			ns, err := g.kube.ResolveNamespace()
			if err != nil {
				return clusterError(err)
			}
			c, err := g.connect(ctx)
			if err != nil {
				return err
			}
			out := struct {
				Target  *target.Resolved      `json:"target,omitempty"`
				Agent   *agentpod.Agent       `json:"agent,omitempty"`
				Serving bool                  `json:"serving"`
				Session *agentv1.OpenResponse `json:"session,omitempty"`
			}{}
			if ref != "" {
				r, err := target.Resolve(ctx, c, ns, kind, name, container)
				if err != nil {
					return targetError(err)
				}
				progress(r.Note)
				out.Target = r
			}
			if resolveOnly {
				return writeJSON(cmd.OutOrStdout(), out)
			}
			if agentNS == "" {
				agentNS = ns
			}
			mode := agentpod.ModeJob
			if ephemeral {
				mode = agentpod.ModeEphemeral
			}
			a, err := agentpod.Ensure(ctx, agentpod.Options{
				Client: c.Kube, RESTConfig: c.Config, Target: out.Target, Namespace: agentNS,
				Mode: mode, TTL: ttl, IdleStart: idleStart, Port: port, Privileged: privileged, Progress: progress, Log: g.log,
			})
			if err != nil {
				return clusterError(err)
			}
			defer a.Close()
			out.Agent = a
			conn, err := a.Dial(ctx)
			if err != nil {
				return clusterError(err)
			}
			out.Serving = true
			if out.Session, err = pingSession(ctx, conn, hold); err != nil {
				return clusterError(fmt.Errorf("agent %s: %w", a, err))
			}
			return writeJSON(cmd.OutOrStdout(), out)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&ref, "target", "t", "", "KIND/NAME; none = a targetless agent")
	f.StringVarP(&container, "container", "c", "", "the target container (default: first that is not a mesh sidecar)")
	f.StringVar(&agentNS, "agent-namespace", "", "where a Job agent runs (default: the target's namespace)")
	f.BoolVar(&ephemeral, "agent-ephemeral", false, "run the agent as an ephemeral container in the target pod")
	f.BoolVar(&privileged, "agent-privileged", false, "run the agent privileged")
	f.DurationVar(&ttl, "agent-ttl", 0, "the agent's lease after the last session (default 30s)")
	f.IntVar(&port, "agent-port", 0, "the agent's port (default 7700 for a Job, random for an ephemeral agent)")
	f.DurationVar(&idleStart, "agent-idle-start", 0, "how long a new agent waits for its first session (default: the agent's, 2m)")
	f.DurationVar(&hold, "hold", 0, "hold the session this long before ending it")
	f.BoolVar(&resolveOnly, "resolve-only", false, "resolve the target, print it, start nothing")
	return cmd
}

// pingSession opens a session (the agent then describes the target it entered), holds it for
// hold with one ping, and ends it, so the agent's lease runs its TTL from now. An agent without
// the Session service (an older build) answers nil.
func pingSession(ctx context.Context, conn grpc.ClientConnInterface, hold time.Duration) (*agentv1.OpenResponse, error) {
	id := make([]byte, 8)
	_, _ = rand.Read(id)
	sessionID := "ping-" + hex.EncodeToString(id)
	host, _ := os.Hostname()
	sc := agentv1.NewSessionClient(conn)
	resp, err := sc.Open(ctx, &agentv1.OpenRequest{SessionId: sessionID, User: os.Getenv("USER"), Host: host, Version: version.Version})
	if status.Code(err) == codes.Unimplemented {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("open a session: %w", err)
	}
	hctx, cancel := context.WithCancel(metadata.AppendToOutgoingContext(ctx, sessionserver.SessionIDKey, sessionID))
	defer cancel()
	stream, err := sc.Hold(hctx)
	if err != nil {
		return nil, fmt.Errorf("hold the session: %w", err)
	}
	if err := stream.Send(&agentv1.Ping{Seq: 1}); err != nil {
		return nil, fmt.Errorf("ping: %w", err)
	}
	if _, err := stream.Recv(); err != nil {
		return nil, fmt.Errorf("pong: %w", err)
	}
	select {
	case <-time.After(hold):
	case <-ctx.Done():
	}
	_ = stream.CloseSend()
	return resp, nil
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
