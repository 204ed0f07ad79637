// Package core is the broker of a kwarp session, one per `kwarp exec`: it owns the session, the
// agent connection, the plugin host and the routing of the layer's events. It evaluates the
// rule tables plugins publish without calling them and calls a plugin only for an operation
// with a remote effect; the bytes of files and connections are moved here, never through a
// plugin process.
package core

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"os/signal"
	"os/user"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	agentv1 "github.com/kwarp-dev/kwarp/agent/api/v1"
	"github.com/kwarp-dev/kwarp/agent/sessionserver"
	"github.com/kwarp-dev/kwarp/core/clusterdial"
	"github.com/kwarp-dev/kwarp/core/files"
	"github.com/kwarp-dev/kwarp/core/fsroute"
	"github.com/kwarp-dev/kwarp/core/pluginhost"
	"github.com/kwarp-dev/kwarp/core/podfiles"
	"github.com/kwarp-dev/kwarp/kube"
	"github.com/kwarp-dev/kwarp/kube/agentpod"
	"github.com/kwarp-dev/kwarp/kube/target"
	"github.com/kwarp-dev/kwarp/layer"
	"github.com/kwarp-dev/kwarp/layer/launcher"
	"github.com/kwarp-dev/kwarp/layer/seccomp"
	"github.com/kwarp-dev/kwarp/layer/supervisor"
	"github.com/kwarp-dev/kwarp/sdk"
	"github.com/kwarp-dev/kwarp/sdk/pluginv1"
	"github.com/kwarp-dev/kwarp/sdk/schema"
	"github.com/kwarp-dev/kwarp/version"
)

// Exit codes of kwarp's own failures (the command's status is passed through otherwise).
const (
	ExitUsage   = 2
	ExitCluster = 3
)

// Error is a session failure with the exit code it ends kwarp with.
type Error struct {
	Code int
	Err  error
}

func (e *Error) Error() string { return e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

func clusterErr(format string, args ...any) error {
	return &Error{Code: ExitCluster, Err: fmt.Errorf(format, args...)}
}

// Options describe one `kwarp exec`.
type Options struct {
	Log  zerolog.Logger
	Kube kube.Flags
	// Target is KIND/NAME; "" runs targetless.
	Target    string
	Container string
	// Namespace is where the target is (already resolved from -n, the policy or the context).
	Namespace string
	// Blocks are the feature blocks of the policy as JSON by block type (see config.Policy).
	Blocks map[string][]byte
	// Agent settings from the policy and the flags.
	AgentMode      agentpod.Mode
	AgentNamespace string
	AgentImage     string
	AgentTTL       time.Duration
	AgentPort      int
	Privileged     bool
	// Argv is the user's command.
	Argv []string
	// Self is kwarp's own executable, re-executed as the launcher and the built-in plugins.
	Self string
	// Configure, when set, reads the policy's blocks with Schemas and completes these options
	// (flags win over the file). It runs at once, so the target is resolved and the agent
	// reached while the plugin process starts. Its error ends the session before the cluster
	// is asked for anything.
	Configure func(schemas map[string]*schema.Block, o *Options) error
	// Schemas are the schemas the built-in plugins send (this binary's own). The schemas the
	// plugins do send must be the same, or the session fails (a plugin binary of another
	// version).
	Schemas map[string]*schema.Block
	// Progress is where the one-line status messages go (stderr): never stdout.
	Progress io.Writer
	Stdin    io.Reader
	Stdout   io.Writer
	Stderr   io.Writer
}

// Run runs the user's command in the target's context and returns its exit status.
func Run(ctx context.Context, o Options) (int, error) {
	sessionID := newSessionID()
	log := o.Log.With().Str("session", sessionID).Logger()
	log.Debug().Msg("session starting")
	say := func(format string, args ...any) { fmt.Fprintf(o.Progress, "kwarp: "+format+"\n", args...) }

	features := layer.Probe()
	if err := features.Check(); err != nil {
		return 0, clusterErr("%w", err)
	}

	// the session's directory: the plugins' sockets, files written back to the pod
	scratch, staleRemoved, err := newScratch()
	if err != nil {
		return 0, err
	}
	defer staleRemoved()
	defer os.RemoveAll(scratch)

	// the plugin processes start while the cluster is asked and the agent starts
	type startedPlugins struct {
		plugins map[string]*runningPlugin
		err     error
	}
	pluginsReady := make(chan startedPlugins, 1)
	go func() {
		ps, err := startPlugins(ctx, o, scratch, log)
		log.Debug().Err(err).Msg("plugins up")
		pluginsReady <- startedPlugins{ps, err}
	}()
	var startedOnce sync.Once
	var started startedPlugins
	waitPlugins := func() startedPlugins {
		startedOnce.Do(func() { started = <-pluginsReady })
		return started
	}
	// whatever happens, no plugin process outlives the session
	defer func() {
		stopAll(waitPlugins().plugins)
		log.Debug().Msg("plugins stopped")
	}()

	// the API server is reached while the plugins start
	type connected struct {
		clients *kube.Clients
		err     error
	}
	connecting := make(chan connected, 1)
	go func() {
		c, err := o.Kube.Connect(ctx, log)
		connecting <- connected{c, err}
	}()
	// the launcher process starts now and waits for its command's environment: its start
	// overlaps the session's instead of following it
	early, err := startLauncher(o)
	if err != nil {
		return 0, err
	}
	defer early.abandon()
	if o.Configure != nil {
		if err := o.Configure(maps.Clone(o.Schemas), &o); err != nil {
			return 0, err
		}
	}
	conn0 := <-connecting
	if conn0.err != nil {
		return 0, clusterErr("%w", conn0.err)
	}
	log.Debug().Msg("API server answered")
	att, err := attach(ctx, o, conn0.clients, sessionID, say, log)
	if err != nil {
		return 0, err
	}
	defer func() {
		att.close()
		log.Debug().Msg("agent released")
	}()
	resolved, conn := att.resolved, att.conn

	if err := waitPlugins().err; err != nil {
		return 0, err
	}
	plugins := waitPlugins().plugins
	log.Debug().Msg("plugins started")
	if err := sameSchemas(plugins, o.Schemas); err != nil {
		return 0, err
	}
	if err := configurePlugins(ctx, o, plugins, BuiltinPlugins, conn, resolved, sessionID); err != nil {
		return 0, err
	}
	for _, p := range plugins {
		if n := p.notes; len(n) > 0 {
			for _, line := range n {
				say("%s", line)
			}
		}
	}

	log.Debug().Msg("plugins configured")
	env, imported, err := computeEnv(ctx, plugins["env"].Plugin)
	if err != nil {
		return 0, clusterErr("%w", err)
	}
	var fsRules sdk.FsRules
	if err := json.Unmarshal(plugins["fs"].rules["fs"], &fsRules); err != nil {
		return 0, fmt.Errorf("fs rule table: %w", err)
	}
	table, err := fsroute.Compile(fsRules)
	if err != nil {
		return 0, err
	}
	handler := files.New(table, decider{plugins["fs"].Plugin}, agentv1.NewFsClient(conn), scratch, log)
	dialer := &clusterdial.Dialer{Connector: netConnector{plugins["net"].Plugin}, Open: att.agent.Tunnel}
	netw, err := newNetwork(plugins, dialer, log)
	if err != nil {
		return 0, err
	}
	defer netw.close()
	var rules []seccomp.Rule
	inbound, err := newInbound(ctx, plugins, att.resolved == nil, att.agent.Tunnel, say, log)
	if err != nil {
		return 0, err
	}
	var ih layer.IncomingHandler
	if inbound != nil {
		defer inbound.Close()
		ih = inbound
		rules = append(rules, seccomp.IncomingRules...)
	}

	var trap []string
	// fs mode local with dns off traps no path call at all; otherwise the rule tables or the
	// resolver files need every path call
	if fsRules.Default != sdk.RouteLocal || len(fsRules.Rules) > 0 || netw.files["/etc/resolv.conf"] != nil {
		trap = append(trap, seccomp.FileSyscalls...)
	}
	var nh layer.NetHandler
	if netw.handler != nil {
		rules, nh = append(rules, seccomp.NetRules...), netw.handler
	}
	restore := restorer(env, imported)
	if restore != nil {
		trap = append(trap, seccomp.ExecSyscalls...)
	}
	code, err := launch(ctx, o, early, env, filterSpec{trap, rules}, features, podfiles.New(handler, netw.files), nh, ih, restore, att.hold, log)
	handler.Flush()
	return code, err
}

// earlyLauncher is the launcher process, started when the session starts: it waits for the
// command's environment and filter (launcher.Handoff), so its own start costs the session
// nothing.
type earlyLauncher struct {
	cmd      *exec.Cmd
	handoff  *launcher.Handoff
	launched bool
}

func startLauncher(o Options) (*earlyLauncher, error) {
	cmd := exec.Command(o.Self, append([]string{LaunchCommand, "--"}, o.Argv...)...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = o.Stdin, o.Stdout, o.Stderr
	// if kwarp is killed, its command must not live on with trapped calls nobody answers
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	handoff, err := launcher.Prepare(cmd)
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		handoff.Close()
		return nil, fmt.Errorf("start the launcher: %w", err)
	}
	return &earlyLauncher{cmd: cmd, handoff: handoff}, nil
}

// abandon ends a launcher whose command was never launched (the session failed first); it
// exits without a word.
func (l *earlyLauncher) abandon() {
	if l.launched {
		return
	}
	l.handoff.Close()
	l.cmd.Wait()
}

// filterSpec is what the seccomp filter traps: whole syscalls, and rules with conditions.
type filterSpec struct {
	trap  []string
	rules []seccomp.Rule
}

// launch starts the command under the filter and supervises it until it exits.
func launch(ctx context.Context, o Options, l *earlyLauncher, env []string, fs filterSpec, features layer.Features,
	h layer.Handler, nh layer.NetHandler, ih layer.IncomingHandler, restore func(int, string, []string) []string, hold *Hold, log zerolog.Logger) (int, error) {
	filter, err := seccomp.NewFilter(fs.trap, fs.rules...)
	if err != nil {
		return 0, err
	}
	cmd, handoff := l.cmd, l.handoff
	l.launched = true
	// the terminal's Ctrl-C reaches the command (same process group); kwarp waits for it.
	// Caught and dropped, not ignored: an ignored signal stays ignored across exec, and a
	// command that starts with SIGINT ignored (Python, shells) would not stop on Ctrl-C.
	terminal := make(chan os.Signal, 4)
	signal.Notify(terminal, syscall.SIGINT, syscall.SIGQUIT)
	defer func() { signal.Stop(terminal); close(terminal) }()
	go func() {
		for range terminal {
		}
	}()
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	err = handoff.SendEnv(env)
	var listener *os.File
	if err == nil {
		lctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		listener, err = handoff.Listener(lctx, filter, features.WaitKillableRecv)
		cancel()
	}
	if err != nil {
		handoff.Close()
		code := waitStatus(cmd.Wait())
		if errors.Is(err, launcher.ErrLauncherExited) {
			return code, nil // not found (127) or not executable (126): the launcher said so
		}
		return 0, err
	}
	sctx, stopSup := context.WithCancel(context.Background())
	sup := supervisor.New(listener, h, log)
	sup.ExecEnv, sup.WaitKillable, sup.Net, sup.Incoming = restore, features.WaitKillableRecv, nh, ih
	if restore != nil && !features.WaitKillableRecv {
		log.Warn().Msg("this kernel lacks WAIT_KILLABLE_RECV (Linux 5.19): children whose launcher drops the environment will not get the pod's variables back")
	}
	supDone := make(chan error, 1)
	go func() { supDone <- sup.Serve(sctx) }()
	if err := handoff.Release(); err != nil {
		stopSup()
		_ = cmd.Process.Kill()
		cmd.Wait()
		return 0, err
	}
	waitDone := make(chan error, 1)
	go func() { waitDone <- cmd.Wait() }()
	var werr error
	var lostErr error
	lost := hold.Lost()
	for done := false; !done; {
		select {
		case s := <-sigs:
			_ = cmd.Process.Signal(s)
		case <-lost:
			// the command cannot go on as if in the pod: its files, connections and DNS are
			// gone. It gets SIGTERM (the launcher passes it on), then SIGKILL.
			lost = nil
			lostErr = clusterErr("lost the agent: %v; stopped the command (run kwarp again once the cluster answers)", hold.Err())
			_ = cmd.Process.Signal(syscall.SIGTERM)
			time.AfterFunc(2*time.Second, func() { _ = cmd.Process.Kill() })
		case werr = <-waitDone:
			done = true
		}
	}
	// children the command left behind keep the filter: give them a moment to finish (Serve
	// ends by itself when the last process under the filter exits), then stop answering —
	// their trapped calls fail with ENOSYS from then on
	select {
	case <-supDone:
		stopSup()
	case <-time.After(2 * time.Second):
		stopSup()
		<-supDone
	}
	listener.Close()
	log.Debug().Interface("stats", sup.Stats()).Msg("layer statistics")
	if lostErr != nil {
		return 0, lostErr
	}
	return waitStatus(werr), nil
}

// waitStatus is the command's status as a shell reports it: the exit code, or 128+n for a
// death by signal n.
func waitStatus(err error) int {
	if err == nil {
		return 0
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal())
		}
		return ee.ExitCode()
	}
	return 1
}

// attachment is a session's hold on the cluster: the target, the agent, the connection to
// it and the lease.
type attachment struct {
	resolved *target.Resolved // nil: targetless
	agent    *agentpod.Agent
	conn     *grpc.ClientConn
	hold     *Hold
}

func (a *attachment) close() {
	a.hold.Stop()
	a.agent.Close()
}

// attach resolves the target, starts (or reuses) its agent, connects and opens the session.
func attach(ctx context.Context, o Options, clients *kube.Clients, sessionID string, say func(string, ...any), log zerolog.Logger) (*attachment, error) {
	var resolved *target.Resolved
	if o.Target != "" {
		kind, name, err := target.Parse(o.Target)
		if err != nil {
			return nil, &Error{Code: ExitUsage, Err: err}
		}
		if resolved, err = target.Resolve(ctx, clients, o.Namespace, kind, name, o.Container); err != nil {
			return nil, clusterErr("%w", err)
		}
		say("%s", resolved.Note)
		log.Debug().Str("pod", resolved.Pod).Msg("target resolved")
	} else {
		say("targetless session: the environment and remote files are empty by design")
	}
	agent, err := agentpod.Ensure(ctx, agentpod.Options{
		Client: clients.Kube, RESTConfig: clients.Config, Target: resolved,
		Namespace: firstNonEmpty(o.AgentNamespace, o.Namespace), Image: o.AgentImage, Mode: o.AgentMode,
		TTL: o.AgentTTL, Port: o.AgentPort, Privileged: o.Privileged, SessionID: sessionID,
		LogLevel: agentLogLevel(o.Log),
		Progress: func(s string) { say("%s", s) }, Log: log,
	})
	if err != nil {
		return nil, clusterErr("%w", err)
	}
	log.Debug().Str("agent", agent.Pod).Bool("reused", agent.Reused).Msg("agent found")
	conn, err := agent.Dial(ctx)
	if err != nil {
		agent.Close()
		return nil, clusterErr("connect to the agent: %w", err)
	}
	log.Debug().Msg("agent connected")
	hold, err := OpenSession(ctx, conn, sessionID)
	if err != nil {
		agent.Close()
		return nil, clusterErr("%w", err)
	}
	log.Debug().Msg("session open")
	return &attachment{resolved: resolved, agent: agent, conn: conn, hold: hold}, nil
}

// agentLogLevel is the level a new agent logs at: the CLI's when it asks for debug or trace
// (so one flag shows both sides of a session), else the agent's own default.
func agentLogLevel(l zerolog.Logger) string {
	if lv := l.GetLevel(); lv <= zerolog.DebugLevel {
		return lv.String()
	}
	return ""
}

// Hold is a session's lease on its agent.
type Hold struct {
	stop    context.CancelFunc
	stopped chan struct{}
	lost    chan struct{}
	mu      sync.Mutex
	err     error
}

// holdTimeout is how long a ping may wait for its answer before the agent counts as lost.
const holdTimeout = 10 * time.Second

// Stop ends the session (the agent's lease then runs its TTL).
func (h *Hold) Stop() {
	h.stop()
	<-h.stopped
}

// Lost is closed when the agent stops answering (the port-forward broke, the pod was
// deleted), not when Stop was called.
func (h *Hold) Lost() <-chan struct{} { return h.lost }

// Err says why the agent was lost.
func (h *Hold) Err() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.err
}

// OpenSession registers with the agent and holds the lease — a ping every 5 s, each
// answered within holdTimeout — until Stop.
func OpenSession(ctx context.Context, conn *grpc.ClientConn, id string) (*Hold, error) {
	host, _ := os.Hostname()
	u := ""
	if cu, err := user.Current(); err == nil {
		u = cu.Username
	}
	sc := agentv1.NewSessionClient(conn)
	octx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if _, err := sc.Open(octx, &agentv1.OpenRequest{SessionId: id, User: u, Host: host, Version: version.Version}); err != nil {
		return nil, fmt.Errorf("open a session with the agent: %w", err)
	}
	hctx, hcancel := context.WithCancel(metadata.AppendToOutgoingContext(context.Background(), sessionserver.SessionIDKey, id))
	stream, err := sc.Hold(hctx)
	if err != nil {
		hcancel()
		return nil, fmt.Errorf("hold the session with the agent: %w", err)
	}
	h := &Hold{stop: hcancel, stopped: make(chan struct{}), lost: make(chan struct{})}
	pongs := make(chan error, 1)
	go func() {
		for {
			_, err := stream.Recv()
			pongs <- err
			if err != nil {
				return
			}
		}
	}()
	go func() {
		defer close(h.stopped)
		defer func() { _ = stream.CloseSend() }()
		lose := func(err error) {
			if hctx.Err() != nil {
				return // Stop was called: not a loss
			}
			h.mu.Lock()
			h.err = err
			h.mu.Unlock()
			close(h.lost)
			hcancel()
		}
		for seq := int64(1); ; seq++ {
			if err := stream.Send(&agentv1.Ping{Seq: seq}); err != nil {
				lose(fmt.Errorf("the agent's connection broke: %w", err))
				return
			}
			select {
			case err := <-pongs:
				if err != nil {
					lose(fmt.Errorf("the agent's connection broke: %w", err))
					return
				}
			case <-time.After(holdTimeout):
				lose(fmt.Errorf("the agent did not answer for %s", holdTimeout))
				return
			case <-hctx.Done():
				return
			}
			select {
			case <-hctx.Done():
				return
			case err := <-pongs: // only an error comes unasked
				lose(fmt.Errorf("the agent's connection broke: %w", err))
				return
			case <-time.After(5 * time.Second):
			}
		}
	}()
	return h, nil
}

type runningPlugin struct {
	*pluginhost.Plugin
	rules map[string][]byte
	notes []string
}

// BuiltinPlugins are served by kwarp itself, all in one process: `kwarp plugin env fs dns net steal`.
var BuiltinPlugins = []string{"env", "fs", "dns", "net", "steal"}

// startPlugins runs the built-in plugins, one process for all (each Go process costs its start
// and tens of MiB); they need no agent until Configure, so the session starts them while the
// agent starts.
func startPlugins(ctx context.Context, o Options, scratch string, log zerolog.Logger) (map[string]*runningPlugin, error) {
	ps, err := pluginhost.StartShared(ctx, pluginhost.Spec{Command: builtinCommand(o, BuiltinPlugins...), SocketDir: scratch},
		BuiltinPlugins, log)
	if err != nil {
		return nil, err
	}
	out := map[string]*runningPlugin{}
	for name, p := range ps {
		out[name] = &runningPlugin{Plugin: p}
	}
	return out, nil
}

// pluginSchemas collects the schema each plugin sent for each block it owns (sdk/schema.Block
// as JSON); two plugins owning one block type is an error naming both.
func pluginSchemas(plugins map[string]*runningPlugin) (map[string]*schema.Block, error) {
	out := map[string]*schema.Block{}
	owner := map[string]string{}
	for _, name := range BuiltinPlugins {
		info := plugins[name].Info()
		if len(info.Schemas) != len(info.Blocks) {
			return nil, fmt.Errorf("plugin %s sent %d schemas for %d blocks", name, len(info.Schemas), len(info.Blocks))
		}
		for i, block := range info.Blocks {
			if prev, dup := owner[block]; dup {
				return nil, fmt.Errorf("plugins %s and %s both own the policy block %q", prev, name, block)
			}
			var b schema.Block
			if err := json.Unmarshal(info.Schemas[i], &b); err != nil {
				return nil, fmt.Errorf("plugin %s: the schema of block %q: %w", name, block, err)
			}
			if err := b.Validate(); err != nil {
				return nil, fmt.Errorf("plugin %s: the schema of block %q: %w", name, block, err)
			}
			out[block], owner[block] = &b, name
		}
	}
	return out, nil
}

// sameSchemas checks that the plugins sent the schemas the policy was read with.
func sameSchemas(plugins map[string]*runningPlugin, used map[string]*schema.Block) error {
	sent, err := pluginSchemas(plugins)
	if err != nil {
		return err
	}
	for block, s := range sent {
		u, ok := used[block]
		if !ok {
			continue // a block the policy language did not know: the policy had none of it
		}
		a, errA := json.Marshal(s)
		b, errB := json.Marshal(u)
		if errA != nil || errB != nil || !bytes.Equal(a, b) {
			return fmt.Errorf("the plugin that owns the %q block sent a schema that differs from this kwarp's: "+
				"it is a binary of another version (reinstall kwarp)", block)
		}
	}
	return nil
}

// configurePlugins hands each plugin its blocks, the session and the agent.
func configurePlugins(ctx context.Context, o Options, plugins map[string]*runningPlugin, names []string, conn *grpc.ClientConn,
	t *target.Resolved, sessionID string) error {
	home, _ := os.UserHomeDir()
	wd, _ := os.Getwd()
	sess := &pluginv1.Session{Id: sessionID, Targetless: t == nil, Home: home, Workdir: wd}
	if t != nil {
		sess.Namespace, sess.Pod, sess.Container = t.Namespace, t.Pod, t.Container
	}
	// in parallel: some ask the agent (dns reads the pod's resolv.conf), and each call is a
	// round trip the session's start waits for
	errs := make([]error, len(names))
	var wg sync.WaitGroup
	for i, name := range names {
		p := plugins[name]
		p.SetAgent(conn)
		blocks := map[string][]byte{}
		for _, b := range p.Info().Blocks {
			if v, ok := o.Blocks[b]; ok {
				blocks[b] = v
			}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := p.Configure(ctx, &pluginv1.ConfigureRequest{Blocks: blocks, Session: sess})
			if err != nil {
				errs[i] = fmt.Errorf("configure plugin %s: %w", name, err)
				return
			}
			p.rules, p.notes = resp.Rules, resp.Notes
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// stopAll stops the plugins at once: each stop waits for its process to exit.
func stopAll(m map[string]*runningPlugin) {
	var wg sync.WaitGroup
	for _, p := range m {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.Stop()
		}()
	}
	wg.Wait()
}

// restorer returns the layer's ExecEnv hook: an exec whose environment lacks variables that
// came from the pod gets them back; variables the launcher set itself win. nil when nothing
// came from the pod.
func restorer(env, imported []string) func(int, string, []string) []string {
	if len(imported) == 0 {
		return nil
	}
	values := map[string]string{}
	for _, kv := range env {
		if i := strings.IndexByte(kv, '='); i > 0 {
			values[kv[:i]] = kv
		}
	}
	var want []string
	for _, name := range imported {
		if kv, ok := values[name]; ok {
			want = append(want, kv)
		}
	}
	return func(_ int, _ string, envp []string) []string {
		have := make(map[string]bool, len(envp))
		for _, kv := range envp {
			if i := strings.IndexByte(kv, '='); i > 0 {
				have[kv[:i]] = true
			}
		}
		var missing []string
		for _, kv := range want {
			if !have[kv[:strings.IndexByte(kv, '=')]] {
				missing = append(missing, kv)
			}
		}
		if len(missing) == 0 {
			return nil
		}
		return append(append([]string{}, envp...), missing...)
	}
}

// computeEnv asks the env plugin for the command's environment and the names it imported.
func computeEnv(ctx context.Context, p *pluginhost.Plugin) ([]string, []string, error) {
	var local []*pluginv1.EnvVar
	for _, kv := range os.Environ() {
		for i := 0; i < len(kv); i++ {
			if kv[i] == '=' {
				local = append(local, &pluginv1.EnvVar{Name: kv[:i], Value: kv[i+1:]})
				break
			}
		}
	}
	var env, imported []string
	err := p.Call(ctx, func(ctx context.Context, c *sdk.Client) error {
		resp, err := c.Env().Compute(ctx, &pluginv1.ComputeRequest{Local: local})
		if err != nil {
			return err
		}
		env = env[:0]
		for _, v := range resp.Vars {
			env = append(env, v.Name+"="+v.Value)
		}
		imported = resp.Imported
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("the target's environment: %w", err)
	}
	return env, imported, nil
}

// decider adapts the fs plugin's gRPC client to files.Decider.
type decider struct{ p *pluginhost.Plugin }

func (d decider) Open(ctx context.Context, path string, flags int, mode uint32) (sdk.OpenDecision, error) {
	var out sdk.OpenDecision
	err := d.p.Call(ctx, func(ctx context.Context, c *sdk.Client) error {
		r, err := c.Fs().Open(ctx, &pluginv1.OpenRequest{Path: path, Flags: int32(flags), Mode: mode})
		if err == nil {
			out = sdk.OpenDecision{Errno: int(r.Errno), Action: sdk.OpenAction(r.Action), Info: sdk.InfoFromPB(r.Info)}
		}
		return err
	})
	return out, err
}

func (d decider) Stat(ctx context.Context, path string, noFollow bool) (sdk.FileInfo, int, error) {
	var fi sdk.FileInfo
	var errno int
	err := d.p.Call(ctx, func(ctx context.Context, c *sdk.Client) error {
		r, err := c.Fs().Stat(ctx, &pluginv1.StatRequest{Path: path, NoFollow: noFollow})
		if err == nil {
			fi, errno = sdk.InfoFromPB(r.Info), int(r.Errno)
		}
		return err
	})
	return fi, errno, err
}

func (d decider) Readlink(ctx context.Context, path string) (string, int, error) {
	var t string
	var errno int
	err := d.p.Call(ctx, func(ctx context.Context, c *sdk.Client) error {
		r, err := c.Fs().Readlink(ctx, &pluginv1.PathRequest{Path: path})
		if err == nil {
			t, errno = r.Target, int(r.Errno)
		}
		return err
	})
	return t, errno, err
}

func (d decider) Access(ctx context.Context, path string, mode uint32) (int, error) {
	var errno int
	err := d.p.Call(ctx, func(ctx context.Context, c *sdk.Client) error {
		r, err := c.Fs().Access(ctx, &pluginv1.AccessRequest{Path: path, Mode: mode})
		if err == nil {
			errno = int(r.Errno)
		}
		return err
	})
	return errno, err
}

// scratchPrefix names a session's private directory; the owner's pid follows it, so a later
// session can tell the directory of a kwarp that was killed (SIGKILL runs no cleanup) and
// remove it.
const scratchPrefix = "kwarp-session-"

// newScratch makes the session's directory, and removes killed sessions' meanwhile; the
// returned wait is for that removal.
func newScratch() (string, func(), error) {
	removed := make(chan struct{})
	go func() {
		defer close(removed)
		removeStaleScratch(os.TempDir())
	}()
	wait := func() { <-removed }
	dir, err := os.MkdirTemp("", fmt.Sprintf("%s%d-", scratchPrefix, os.Getpid()))
	if err != nil {
		wait()
		return "", nil, fmt.Errorf("the session's directory: %w", err)
	}
	return dir, wait, nil
}

// removeStaleScratch removes session directories whose kwarp is gone.
func removeStaleScratch(dir string) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range ents {
		var pid int
		if !e.IsDir() || !strings.HasPrefix(e.Name(), scratchPrefix) {
			continue
		}
		if _, err := fmt.Sscanf(strings.TrimPrefix(e.Name(), scratchPrefix), "%d-", &pid); err != nil || pid <= 0 {
			continue
		}
		if syscall.Kill(pid, 0) == syscall.ESRCH {
			os.RemoveAll(filepath.Join(dir, e.Name()))
		}
	}
}

// LaunchCommand is the hidden subcommand kwarp re-executes itself with to become the launcher.
const LaunchCommand = "__launch"

func newSessionID() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}
