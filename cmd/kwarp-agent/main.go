// Command kwarp-agent is the agent a kwarp session runs in the cluster. It is built statically
// (CGO_ENABLED=0), so it needs nothing else in its image.
//
// It finds the target container's main process (by --container-id with hostPID in a Job on the
// target's node, or --ephemeral as an ephemeral container in the target pod; neither: a
// targetless agent), serves the sessions' gRPC calls and the data tunnels of their outgoing
// connections on --listen (one port: a port-forward reaches one), and exits 0 when its lease
// ends (no session for --ttl, or none at all within --idle-start) or on SIGTERM.
//
// Exit status: 0 lease expired or signalled, 1 the agent could not start (target not found,
// port taken; the reason is the last log line), 2 usage.
//
// Once serving it writes one JSON line to stderr that the CLI can look for in the pod's log:
//
//	{"msg":"agent ready","level":"info","time":"…","component":"agent","version":"…","pid":1,"port":7700,"target_pid":4242}
//
// pid is the agent's own, target_pid the target's in the agent's PID namespace (0: targetless).
//
// The container's first process is a small supervisor, cmd/kwarp-agent-init next to this binary
// in the image (agent/supervise), that runs the agent as its child and waits for it and for the
// netfilter guard: a crashed or killed agent still has its rules removed. The guard is that
// small program too (agent/netfilter starts it the first time it adds a rule): it waits for the
// agent to end and removes whatever rules the agent left. Without kwarp-agent-init beside it,
// this binary plays both parts itself: started without the worker mark it supervises itself,
// and with netfilter.GuardArg first it is the guard.
//
// The image also holds Debian's iptables (xtables-legacy-multi, xtables-nft-multi, their
// extensions and shared libraries) for agent/netfilter; the agent itself stays static.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"syscall"
	"time"

	"github.com/kwarp-dev/kwarp/agent"
	agentv1 "github.com/kwarp-dev/kwarp/agent/api/v1"
	"github.com/kwarp-dev/kwarp/agent/netfilter"
	"github.com/kwarp-dev/kwarp/agent/supervise"
	"github.com/kwarp-dev/kwarp/logging"
	"github.com/kwarp-dev/kwarp/version"
	"github.com/rs/zerolog"
)

// InitName is the small first process and guard, looked for next to the agent's executable.
const InitName = "kwarp-agent-init"

func main() {
	if os.Getenv(supervise.WorkerEnv) == "" && (len(os.Args) < 2 || os.Args[1] != netfilter.GuardArg) {
		self, err := os.Executable()
		if err != nil {
			fmt.Fprintln(os.Stderr, "kwarp-agent: find its own executable:", err)
			os.Exit(1)
		}
		os.Exit(supervise.Run(self, os.Args[1:]))
	}
	os.Exit(run(os.Args[1:], os.Stderr))
}

// initBinary is kwarp-agent-init beside the agent, or "" when there is none.
func initBinary() string {
	self, err := os.Executable()
	if err != nil {
		return ""
	}
	p := filepath.Join(filepath.Dir(self), InitName)
	if fi, err := os.Stat(p); err != nil || !fi.Mode().IsRegular() {
		return ""
	}
	return p
}

// config is what the flags say.
type config struct {
	listen      string
	logLevel    string
	showVersion bool
	opts        agent.Options
}

func parseFlags(args []string, stderr io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("kwarp-agent", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.listen, "listen", ":7700", "address the agent listens on (gRPC and outgoing tunnels share it)")
	fs.StringVar(&c.opts.ContainerID, "container-id", "", "target container's ID from the pod status (containerd://…); empty: targetless")
	fs.StringVar(&c.opts.Namespace, "namespace", "", "target's namespace, reported to the CLI")
	fs.StringVar(&c.opts.Pod, "pod", "", "target's pod, reported to the CLI")
	fs.StringVar(&c.opts.Container, "container", "", "target's container name, reported to the CLI")
	fs.BoolVar(&c.opts.Ephemeral, "ephemeral", false, "the agent is an ephemeral container sharing the target's PID namespace")
	fs.IntVar(&c.opts.TargetPID, "target-pid", 0, "serve this process instead of finding the target (debugging on a node)")
	fs.DurationVar(&c.opts.TTL, "ttl", 30*time.Second, "exit this long after the last session ends (0: at once)")
	fs.DurationVar(&c.opts.IdleStart, "idle-start", 2*time.Minute, "exit if no session arrives this long after start (0: wait forever)")
	fs.StringVar(&c.logLevel, "log-level", "", "log level (default warn; env "+logging.LevelEnv+")")
	fs.BoolVar(&c.showVersion, "version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	if c.opts.TTL < 0 || c.opts.IdleStart < 0 {
		return c, fmt.Errorf("--ttl and --idle-start cannot be negative")
	}
	return c, nil
}

func run(args []string, stderr io.Writer) int {
	if len(args) > 0 && args[0] == netfilter.GuardArg {
		return netfilter.RunGuard(args[1:], stderr)
	}
	c, err := parseFlags(args, stderr)
	if err != nil {
		if err != flag.ErrHelp {
			fmt.Fprintln(stderr, "kwarp-agent:", err)
		}
		return 2
	}
	if c.showVersion {
		fmt.Print(version.String("kwarp-agent"))
		return 0
	}
	level, err := logging.Resolve(c.logLevel)
	if err != nil {
		fmt.Fprintln(stderr, "kwarp-agent:", err)
		return 2
	}
	log := logging.New(stderr, level, "agent")
	if v := os.Getenv(agentv1.NodeIPEnv); v != "" {
		if ip, err := netip.ParseAddr(v); err == nil {
			c.opts.NodeIPs = append(c.opts.NodeIPs, ip)
		} else {
			log.Warn().Str(agentv1.NodeIPEnv, v).Msg("not an IP address; ignored")
		}
	}

	c.opts.GuardExe = initBinary()
	if os.Getenv("GOMAXPROCS") == "" {
		// One P: the agent's work is moving bytes between sockets, and with more Ps the
		// runtime wakes idle threads for every goroutine the network makes ready. On a
		// two-core node that cost more than a third of the agent's CPU time in context
		// switches; the kernel's share (splice, TCP) still runs on any CPU.
		runtime.GOMAXPROCS(1)
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	srv, err := agent.New(log, c.opts)
	if err != nil {
		log.Error().Err(err).Msg("agent cannot start")
		return 1
	}
	lis, err := net.Listen("tcp", c.listen)
	if err != nil {
		log.Error().Err(err).Str("listen", c.listen).Msg("agent cannot listen")
		return 1
	}
	port := 0
	if a, ok := lis.Addr().(*net.TCPAddr); ok {
		port = a.Port
	}
	writeReady(stderr, port, srv.TargetPID())
	if err := srv.Serve(ctx, lis); err != nil {
		log.Error().Err(err).Msg("agent failed")
		return 1
	}
	return 0
}

// writeReady writes the ready line whatever the log level: it is a contract with the CLI (and
// with a person reading `kubectl logs`), not a log message, so it is always JSON with "msg".
func writeReady(w io.Writer, port, targetPID int) {
	line, _ := json.Marshal(struct {
		Msg       string `json:"msg"`
		Level     string `json:"level"`
		Time      string `json:"time"`
		Component string `json:"component"`
		Version   string `json:"version"`
		PID       int    `json:"pid"`
		Port      int    `json:"port"`
		TargetPID int    `json:"target_pid"`
	}{"agent ready", zerolog.LevelInfoValue, time.Now().UTC().Format(time.RFC3339), "agent", version.Version, os.Getpid(), port, targetPID})
	fmt.Fprintf(w, "%s\n", line)
}
