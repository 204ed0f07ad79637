// Package envserver is the agent's env capability (agentv1.Env): the target container's
// environment as its main process has it, read from /proc/PID/environ.
//
// environ is the block the process was exec'd with (later setenv calls in the process do not
// show there), which is the environment Kubernetes gave the container: the pod spec's env and
// envFrom plus the service links and whatever the image's entrypoint exported before exec.
package envserver

import (
	"bytes"
	"context"
	"unicode/utf8"

	agentv1 "github.com/kwarp-dev/kwarp/agent/api/v1"
	"github.com/kwarp-dev/kwarp/agent/target"
	"github.com/rs/zerolog"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Server answers Env.Get for the target loc finds; a nil loc is a targetless agent.
type Server struct {
	agentv1.UnimplementedEnvServer
	loc target.Locator
	log zerolog.Logger
}

// New returns the env service of the target loc gives.
func New(log zerolog.Logger, loc target.Locator) *Server {
	return &Server{loc: loc, log: log}
}

// Get reads the target's environ.
func (s *Server) Get(ctx context.Context, _ *agentv1.GetEnvRequest) (*agentv1.GetEnvResponse, error) {
	p, err := target.Current(s.loc)
	if err != nil {
		return nil, err
	}
	b, err := p.ReadFile("environ")
	if err != nil {
		// Unreadable environ is the agent's problem (no CAP_SYS_PTRACE, target gone), not the
		// user's process's: nothing in the pod would ever see an errno for it.
		return nil, status.Errorf(codes.FailedPrecondition, "read the target's environment: %v", err)
	}
	vars := ParseEnviron(b)
	s.log.Debug().Int("pid", p.PID).Int("vars", len(vars)).Msg("env served")
	return &agentv1.GetEnvResponse{Vars: vars}, nil
}

// ParseEnviron splits a NUL-separated environ block into variables in the process's order.
// Entries without '=' or with an empty name are skipped (execve accepts any string; getenv
// never finds such entries). A name that repeats keeps its last value at its last position, the
// way os/exec and shells resolve duplicates. (glibc's getenv returns the first of duplicates;
// a process exec'd with duplicates by a C launcher is rare enough that the shell's view wins.)
// Entries that are not valid UTF-8 are skipped too: the wire type is a protobuf string, which
// cannot carry them, and a mangled value would be worse than a missing one.
func ParseEnviron(b []byte) []*agentv1.EnvVar {
	type entry struct{ name, value string }
	var all []entry
	last := map[string]int{}
	for _, raw := range bytes.Split(b, []byte{0}) {
		i := bytes.IndexByte(raw, '=')
		if i <= 0 || !utf8.Valid(raw) {
			continue
		}
		e := entry{string(raw[:i]), string(raw[i+1:])}
		last[e.name] = len(all)
		all = append(all, e)
	}
	vars := make([]*agentv1.EnvVar, 0, len(last))
	for i, e := range all {
		if last[e.name] != i {
			continue
		}
		vars = append(vars, &agentv1.EnvVar{Name: e.name, Value: e.value})
	}
	return vars
}
