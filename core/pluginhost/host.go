// Package pluginhost starts, supervises, restarts and stops kwarp's feature plugins. A plugin is
// served by a process with hashicorp/go-plugin: the built-in ones share one, the kwarp binary
// re-executed (`kwarp plugin env fs dns net steal`); a third-party one is any executable built on
// sdk/. A plugin whose process crashes is restarted once and configured again; a second crash
// fails the session with a message that names the plugin, and every call in flight returns an
// error instead of hanging.
package pluginhost

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	plugin "github.com/hashicorp/go-plugin"
	"github.com/hashicorp/go-plugin/runner"
	"github.com/rs/zerolog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/kwarp-dev/kwarp/core/agentproxy"
	"github.com/kwarp-dev/kwarp/sdk"
	"github.com/kwarp-dev/kwarp/sdk/pluginv1"
)

// CallTimeout bounds every call to a plugin: a plugin that stops answering must not hang the
// user's process.
const CallTimeout = 30 * time.Second

// Spec says how to start a plugin.
type Spec struct {
	Name string
	// Command builds the command that serves the plugin (called again on restart).
	Command func() *exec.Cmd
	// SocketDir, when set, is where the host's and the plugin's unix sockets go (in a
	// directory of their own that Stop removes), instead of $TMPDIR: a session's directory,
	// which a later session removes if this one was killed.
	SocketDir string
}

// Plugin is a running plugin with its configuration, restarted once if its process dies.
type Plugin struct {
	name string
	proc *process
	log  zerolog.Logger

	mu sync.Mutex
	// agent is what the plugin reaches through the broker, re-served after a restart.
	agent     *grpc.ClientConn
	sdk       *sdk.Client
	info      *pluginv1.InfoResponse
	configure *pluginv1.ConfigureRequest
}

// process is one plugin process and the plugins it serves: one, or several (sdk.ServeAll).
type process struct {
	command   func() *exec.Cmd
	shared    bool // served with sdk.ServeAll: each plugin is dispensed by its name
	names     []string
	socketDir string
	log       zerolog.Logger

	mu       sync.Mutex
	client   *plugin.Client
	members  map[string]*Plugin
	restarts int
	failed   error
	stopped  bool
}

// ErrPluginFailed is wrapped in every error of a plugin whose process died twice.
var ErrPluginFailed = errors.New("plugin failed")

// Start runs a plugin served alone by its process (sdk.Serve) and asks for its Info.
func Start(ctx context.Context, spec Spec, agent *grpc.ClientConn, log zerolog.Logger) (*Plugin, error) {
	ps, err := start(ctx, &process{command: spec.Command, names: []string{spec.Name}, socketDir: spec.SocketDir,
		log: log.With().Str("plugin", spec.Name).Logger()})
	if err != nil {
		return nil, err
	}
	p := ps[spec.Name]
	p.agent = agent
	return p, nil
}

// StartShared runs one process that serves several plugins (sdk.ServeAll), dispenses each by
// name and asks for its Info. A crash of the process restarts it once for all of them.
// spec.Name is not used: names are the plugins'.
func StartShared(ctx context.Context, spec Spec, names []string, log zerolog.Logger) (map[string]*Plugin, error) {
	return start(ctx, &process{command: spec.Command, shared: true, names: names, socketDir: spec.SocketDir,
		log: log.With().Strs("plugins", names).Logger()})
}

func start(ctx context.Context, proc *process) (map[string]*Plugin, error) {
	proc.members = map[string]*Plugin{}
	for _, name := range proc.names {
		proc.members[name] = &Plugin{name: name, proc: proc, log: proc.log.With().Str("plugin", name).Logger()}
	}
	client, clients, infos, err := proc.start(ctx)
	if err != nil {
		return nil, err
	}
	proc.client = client
	for name, p := range proc.members {
		p.sdk, p.info = clients[name], infos[name]
	}
	return proc.members, nil
}

// socketDirFits reports whether go-plugin's sockets under dir (dir/plugin-dirNNN/pluginNNN,
// each NNN up to 10 digits) stay within a unix socket path's 107 bytes; a longer dir is not
// used (the sockets go to $TMPDIR, as go-plugin does by default).
func socketDirFits(dir string) bool {
	return len(dir)+len("/plugin-dir")+10+len("/plugin")+10 <= 107
}

// label names the process's plugins in errors.
func (proc *process) label() string { return strings.Join(proc.names, ", ") }

// who names plugin name in an error about its process.
func (proc *process) who(name string) string {
	if len(proc.names) > 1 {
		return fmt.Sprintf("%s (in one process with %s)", name, proc.label())
	}
	return name
}

// start runs the process, dispenses its plugins and asks each for its Info; the caller
// installs the result.
func (proc *process) start(ctx context.Context) (*plugin.Client, map[string]*sdk.Client, map[string]*pluginv1.InfoResponse, error) {
	set := plugin.PluginSet{}
	if proc.shared {
		for _, name := range proc.names {
			set[name] = &sdk.GRPCPlugin{Name: name}
		}
	} else {
		set[sdk.PluginName] = &sdk.GRPCPlugin{}
	}
	cfg := &plugin.ClientConfig{
		HandshakeConfig:  sdk.Handshake,
		Plugins:          set,
		Cmd:              proc.command(),
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		Logger:           hclog.New(&hclog.LoggerOptions{Name: proc.label(), Output: zerologWriter{proc.log}, Level: hclog.Warn}),
		StartTimeout:     20 * time.Second,
	}
	if proc.socketDir != "" && socketDirFits(proc.socketDir) {
		// go-plugin then hands the runner a blank command carrying the environment it wants
		// the plugin to have (its socket directory among it): the real one gets that too
		cmd := cfg.Cmd
		cfg.Cmd = nil
		cfg.UnixSocketConfig = &plugin.UnixSocketConfig{TempDir: proc.socketDir}
		cfg.RunnerFunc = func(_ hclog.Logger, blank *exec.Cmd, _ string) (runner.Runner, error) {
			cmd.Env = append(blank.Env, cmd.Env...)
			cmd.Stdin = blank.Stdin
			return newCmdRunner(cmd)
		}
	}
	client := plugin.NewClient(cfg)
	fail := func(err error) (*plugin.Client, map[string]*sdk.Client, map[string]*pluginv1.InfoResponse, error) {
		client.Kill()
		return nil, nil, nil, fmt.Errorf("start plugin %s: %w", proc.label(), err)
	}
	rpc, err := client.Client()
	if err != nil {
		return fail(err)
	}
	clients := map[string]*sdk.Client{}
	infos := map[string]*pluginv1.InfoResponse{}
	cctx, cancel := context.WithTimeout(ctx, CallTimeout)
	defer cancel()
	for _, name := range proc.names {
		key := sdk.PluginName
		if proc.shared {
			key = name
		}
		raw, err := rpc.Dispense(key)
		if err != nil {
			return fail(err)
		}
		c, ok := raw.(*sdk.Client)
		if !ok {
			return fail(fmt.Errorf("unexpected client type %T", raw))
		}
		info, err := c.Info(cctx)
		if err != nil {
			return fail(fmt.Errorf("info of %s: %w", name, err))
		}
		if proc.shared && info.Name != name {
			return fail(fmt.Errorf("asked for plugin %s, the process answered as %s", name, info.Name))
		}
		clients[name], infos[name] = c, info
	}
	return client, clients, infos, nil
}

// SetAgent gives the plugin the agent to reach through the broker, for a plugin started before
// the agent was up (the session starts plugins and the agent at the same time).
func (p *Plugin) SetAgent(agent *grpc.ClientConn) {
	p.mu.Lock()
	p.agent = agent
	p.mu.Unlock()
}

// Info is what the plugin said about itself.
func (p *Plugin) Info() *pluginv1.InfoResponse {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.info
}

// Name is the plugin's name as the session knows it.
func (p *Plugin) Name() string { return p.name }

// Configure sends the configuration; it is kept and sent again after a restart.
func (p *Plugin) Configure(ctx context.Context, req *pluginv1.ConfigureRequest) (*pluginv1.ConfigureResponse, error) {
	p.mu.Lock()
	p.configure = req
	p.mu.Unlock()
	var resp *pluginv1.ConfigureResponse
	err := p.Call(ctx, func(ctx context.Context, c *sdk.Client) error {
		var err error
		resp, err = c.Configure(ctx, p.configureRequest(c))
		return err
	})
	return resp, err
}

// configureRequest is the stored request with a broker id of the current process.
func (p *Plugin) configureRequest(c *sdk.Client) *pluginv1.ConfigureRequest {
	p.mu.Lock()
	req, agent := p.configure, p.agent
	p.mu.Unlock()
	if req == nil {
		return &pluginv1.ConfigureRequest{}
	}
	out := proto.Clone(req).(*pluginv1.ConfigureRequest)
	if agent != nil {
		out.AgentBrokerId = c.ServeAgent(agentproxy.ServerOptions(agent)...)
	}
	return out
}

// current is the plugin's client in the process that runs now.
func (p *Plugin) current() (*sdk.Client, *plugin.Client, error) {
	p.proc.mu.Lock()
	client, failed := p.proc.client, p.proc.failed
	p.proc.mu.Unlock()
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.sdk, client, failed
}

// Call runs fn against the plugin with a timeout. If the plugin's process died, it is
// restarted and its plugins configured again once, and fn is retried; after a second death
// every call fails.
func (p *Plugin) Call(ctx context.Context, fn func(context.Context, *sdk.Client) error) error {
	for attempt := 0; ; attempt++ {
		c, client, failed := p.current()
		if failed != nil {
			return failed
		}
		cctx, cancel := context.WithTimeout(ctx, CallTimeout)
		err := fn(cctx, c)
		cancel()
		if err == nil || !died(err, client) {
			return err
		}
		if attempt > 0 {
			p.proc.fail(fmt.Errorf("%w: %s crashed again after a restart: %v", ErrPluginFailed, p.proc.who(p.name), err))
			return p.proc.failedErr()
		}
		if rerr := p.proc.restart(ctx, client, p.name); rerr != nil {
			return rerr
		}
	}
}

// Stream runs fn against the plugin without Call's timeout, for a call that lasts as long as
// ctx (a subscription). A plugin whose process died before fn started is restarted once, as
// for Call; one that dies during fn ends it with the error.
func (p *Plugin) Stream(ctx context.Context, fn func(context.Context, *sdk.Client) error) error {
	_, client, failed := p.current()
	if failed != nil {
		return failed
	}
	if client != nil && client.Exited() {
		if err := p.proc.restart(ctx, client, p.name); err != nil {
			return err
		}
	}
	c, _, _ := p.current()
	return fn(ctx, c)
}

// died tells a dead plugin process apart from an error the plugin returned.
func died(err error, client *plugin.Client) bool {
	if client != nil && client.Exited() {
		return true
	}
	return status.Code(err) == codes.Unavailable
}

// restart replaces the process that dead was, once; the plugin who found it dead is by.
// Another caller that found the same death meanwhile finds it replaced and just retries.
func (proc *process) restart(ctx context.Context, dead *plugin.Client, by string) error {
	proc.mu.Lock()
	defer proc.mu.Unlock()
	if proc.failed != nil {
		return proc.failed
	}
	if proc.client != dead {
		return nil // already restarted
	}
	who := proc.who(by)
	if proc.restarts > 0 || proc.stopped {
		proc.failed = fmt.Errorf("%w: %s crashed and was already restarted once", ErrPluginFailed, who)
		return proc.failed
	}
	proc.restarts++
	proc.log.Warn().Str("found_by", by).Msg("plugin process crashed; restarting it once")
	if dead != nil {
		dead.Kill()
	}
	client, clients, infos, err := proc.start(ctx)
	if err != nil {
		proc.failed = fmt.Errorf("%w: %s crashed and could not be restarted: %v", ErrPluginFailed, who, err)
		return proc.failed
	}
	proc.client = client
	for name, p := range proc.members {
		p.mu.Lock()
		p.sdk, p.info = clients[name], infos[name]
		configured := p.configure != nil
		p.mu.Unlock()
		if !configured {
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, CallTimeout)
		_, err := clients[name].Configure(cctx, p.configureRequest(clients[name]))
		cancel()
		if err != nil {
			proc.failed = fmt.Errorf("%w: %s restarted but the configuration of %s failed: %v", ErrPluginFailed, who, name, err)
			return proc.failed
		}
	}
	return nil
}

func (proc *process) fail(err error) {
	proc.mu.Lock()
	if proc.failed == nil {
		proc.failed = err
	}
	proc.mu.Unlock()
}

func (proc *process) failedErr() error {
	proc.mu.Lock()
	defer proc.mu.Unlock()
	return proc.failed
}

// Failed reports the plugin's permanent failure, if any.
func (p *Plugin) Failed() error { return p.proc.failedErr() }

// Stop ends the plugin's process, for every plugin it serves; stopping it again is a no-op.
func (p *Plugin) Stop() {
	p.proc.mu.Lock()
	c, stopped := p.proc.client, p.proc.stopped
	p.proc.stopped = true
	p.proc.mu.Unlock()
	if c != nil && !stopped {
		c.Kill()
	}
}

// zerologWriter routes go-plugin's hclog lines (the plugin's stderr) into the session's log.
type zerologWriter struct{ log zerolog.Logger }

func (w zerologWriter) Write(b []byte) (int, error) {
	w.log.Debug().Msg(string(trimNewline(b)))
	return len(b), nil
}

func trimNewline(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}

var _ io.Writer = zerologWriter{}
