// Package pluginhost starts, supervises, restarts and stops kwarp's feature plugins. A plugin is
// a process served with hashicorp/go-plugin: the built-in ones are the kwarp binary re-executed
// (`kwarp plugin env`), a third-party one is any executable built on sdk/. A plugin that crashes
// is restarted once and configured again; a second crash fails the session with a message that
// names the plugin, and every call in flight returns an error instead of hanging.
package pluginhost

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	plugin "github.com/hashicorp/go-plugin"
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
}

// Plugin is a running plugin with its configuration, restarted once if it dies.
type Plugin struct {
	spec Spec
	log  zerolog.Logger
	// agent is what the plugin reaches through the broker, re-served after a restart.
	agent *grpc.ClientConn

	mu        sync.Mutex
	client    *plugin.Client
	sdk       *sdk.Client
	info      *pluginv1.InfoResponse
	configure *pluginv1.ConfigureRequest
	restarts  int
	failed    error
}

// ErrPluginFailed is wrapped in every error of a plugin that died twice.
var ErrPluginFailed = errors.New("plugin failed")

// Start runs the plugin and asks for its Info.
func Start(ctx context.Context, spec Spec, agent *grpc.ClientConn, log zerolog.Logger) (*Plugin, error) {
	p := &Plugin{spec: spec, agent: agent, log: log.With().Str("plugin", spec.Name).Logger()}
	client, c, info, err := p.start(ctx)
	if err != nil {
		return nil, err
	}
	p.client, p.sdk, p.info = client, c, info
	return p, nil
}

// start runs the plugin process and asks for its Info; the caller installs the result.
func (p *Plugin) start(ctx context.Context) (*plugin.Client, *sdk.Client, *pluginv1.InfoResponse, error) {
	client := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  sdk.Handshake,
		Plugins:          plugin.PluginSet{sdk.PluginName: &sdk.GRPCPlugin{}},
		Cmd:              p.spec.Command(),
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		Logger:           hclog.New(&hclog.LoggerOptions{Name: p.spec.Name, Output: zerologWriter{p.log}, Level: hclog.Warn}),
		StartTimeout:     20 * time.Second,
	})
	fail := func(err error) (*plugin.Client, *sdk.Client, *pluginv1.InfoResponse, error) {
		client.Kill()
		return nil, nil, nil, fmt.Errorf("start plugin %s: %w", p.spec.Name, err)
	}
	rpc, err := client.Client()
	if err != nil {
		return fail(err)
	}
	raw, err := rpc.Dispense(sdk.PluginName)
	if err != nil {
		return fail(err)
	}
	c, ok := raw.(*sdk.Client)
	if !ok {
		return fail(fmt.Errorf("unexpected client type %T", raw))
	}
	cctx, cancel := context.WithTimeout(ctx, CallTimeout)
	defer cancel()
	info, err := c.Info(cctx)
	if err != nil {
		return fail(fmt.Errorf("info: %w", err))
	}
	return client, c, info, nil
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
func (p *Plugin) Name() string { return p.spec.Name }

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
	req := p.configure
	p.mu.Unlock()
	if req == nil {
		return &pluginv1.ConfigureRequest{}
	}
	out := proto.Clone(req).(*pluginv1.ConfigureRequest)
	p.mu.Lock()
	agent := p.agent
	p.mu.Unlock()
	if agent != nil {
		out.AgentBrokerId = c.ServeAgent(agentproxy.ServerOptions(agent)...)
	}
	return out
}

// Call runs fn against the plugin with a timeout. If the plugin process died, it is restarted
// and configured again once, and fn is retried; after a second death every call fails.
func (p *Plugin) Call(ctx context.Context, fn func(context.Context, *sdk.Client) error) error {
	for attempt := 0; ; attempt++ {
		p.mu.Lock()
		if p.failed != nil {
			p.mu.Unlock()
			return p.failed
		}
		c, client := p.sdk, p.client
		p.mu.Unlock()

		cctx, cancel := context.WithTimeout(ctx, CallTimeout)
		err := fn(cctx, c)
		cancel()
		if err == nil || !p.died(err, client) || attempt > 0 {
			if err != nil && p.died(err, client) {
				p.fail(fmt.Errorf("%w: %s crashed again after a restart: %v", ErrPluginFailed, p.spec.Name, err))
				return p.failedErr()
			}
			return err
		}
		if rerr := p.restart(ctx); rerr != nil {
			return rerr
		}
	}
}

// Stream runs fn against the plugin without Call's timeout, for a call that lasts as long as
// ctx (a subscription). A plugin that died before fn started is restarted once, as for Call;
// one that dies during fn ends it with the error.
func (p *Plugin) Stream(ctx context.Context, fn func(context.Context, *sdk.Client) error) error {
	p.mu.Lock()
	failed, client := p.failed, p.client
	p.mu.Unlock()
	if failed != nil {
		return failed
	}
	if client != nil && client.Exited() {
		if err := p.restart(ctx); err != nil {
			return err
		}
	}
	p.mu.Lock()
	c := p.sdk
	p.mu.Unlock()
	return fn(ctx, c)
}

// died tells a dead plugin process apart from an error the plugin returned.
func (p *Plugin) died(err error, client *plugin.Client) bool {
	if client != nil && client.Exited() {
		return true
	}
	return status.Code(err) == codes.Unavailable
}

func (p *Plugin) restart(ctx context.Context) error {
	p.mu.Lock()
	if p.restarts > 0 {
		p.mu.Unlock()
		p.fail(fmt.Errorf("%w: %s crashed and was already restarted once", ErrPluginFailed, p.spec.Name))
		return p.failedErr()
	}
	p.restarts++
	old := p.client
	p.mu.Unlock()
	p.log.Warn().Msg("plugin crashed; restarting it once")
	if old != nil {
		old.Kill()
	}
	client, c, info, err := p.start(ctx)
	if err != nil {
		p.fail(fmt.Errorf("%w: %s crashed and could not be restarted: %v", ErrPluginFailed, p.spec.Name, err))
		return p.failedErr()
	}
	p.mu.Lock()
	p.client, p.sdk, p.info = client, c, info
	configured := p.configure != nil
	p.mu.Unlock()
	if configured {
		cctx, cancel := context.WithTimeout(ctx, CallTimeout)
		defer cancel()
		if _, err := c.Configure(cctx, p.configureRequest(c)); err != nil {
			p.fail(fmt.Errorf("%w: %s restarted but its configuration failed: %v", ErrPluginFailed, p.spec.Name, err))
			return p.failedErr()
		}
	}
	return nil
}

func (p *Plugin) fail(err error) {
	p.mu.Lock()
	if p.failed == nil {
		p.failed = err
	}
	p.mu.Unlock()
}

func (p *Plugin) failedErr() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.failed
}

// Failed reports the plugin's permanent failure, if any.
func (p *Plugin) Failed() error { return p.failedErr() }

// Stop ends the plugin process.
func (p *Plugin) Stop() {
	p.mu.Lock()
	c := p.client
	p.mu.Unlock()
	if c != nil {
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
