package core

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"syscall"

	"github.com/kwarp-dev/kwarp/core/clusterdial"
	"github.com/kwarp-dev/kwarp/core/pluginhost"
	"github.com/kwarp-dev/kwarp/core/portforward"
	"github.com/kwarp-dev/kwarp/sdk"
	"github.com/kwarp-dev/kwarp/sdk/pluginv1"
)

// Forward runs `kwarp port-forward` on fw's listeners (bound by the caller first, so a port
// in use fails before anything is asked of the cluster): the agent opens each connection from
// the target pod (targetless: from an agent pod of its own) to its spec's HOST:PORT. It
// returns when ctx ends (nil) or the agent is lost (exit 3). fw is closed on return.
func Forward(ctx context.Context, o Options, fw *portforward.Forwarder) error {
	defer fw.Close()
	sessionID := newSessionID()
	log := o.Log.With().Str("session", sessionID).Logger()
	say := func(format string, args ...any) { fmt.Fprintf(o.Progress, "kwarp: "+format+"\n", args...) }

	type started struct {
		p   *pluginhost.Plugin
		err error
	}
	// the session's directory, for the plugin's sockets
	scratch, staleRemoved, err := newScratch()
	if err != nil {
		return err
	}
	defer staleRemoved()
	defer os.RemoveAll(scratch)
	netPlugin := make(chan started, 1)
	go func() {
		spec := builtinSpec(o, "net")
		spec.SocketDir = scratch
		p, err := pluginhost.Start(ctx, spec, nil, log)
		netPlugin <- started{p, err}
	}()
	// the plugin starts while the cluster is asked and the agent starts; whatever happens,
	// it does not outlive the command
	var np started
	waitPlugin := sync.OnceFunc(func() { np = <-netPlugin })
	defer func() {
		waitPlugin()
		if np.p != nil {
			np.p.Stop()
		}
	}()

	clients, err := o.Kube.Connect(ctx, log)
	if err != nil {
		return clusterErr("%w", err)
	}
	att, err := attach(ctx, o, clients, sessionID, say, log)
	if err != nil {
		return err
	}
	defer att.close()
	if waitPlugin(); np.err != nil {
		return np.err
	}
	plugins := map[string]*runningPlugin{"net": {Plugin: np.p}}
	if err := configurePlugins(ctx, o, plugins, []string{"net"}, att.conn, att.resolved, sessionID); err != nil {
		return err
	}
	dialer := &clusterdial.Dialer{Connector: netConnector{np.p}, Open: att.agent.Tunnel}
	for _, s := range fw.Specs() {
		say("forwarding %s", s)
	}
	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan struct{})
	go func() { fw.Serve(fctx, dialer); close(done) }()
	select {
	case <-ctx.Done():
		<-done
		return nil
	case <-att.hold.Lost():
		cancel()
		<-done
		return clusterErr("lost the agent: %v; the forwards are closed (run kwarp again once the cluster answers)", att.hold.Err())
	}
}

// builtinSpec is how a built-in plugin is started: kwarp itself, `kwarp plugin NAME`.
func builtinSpec(o Options, name string) pluginhost.Spec {
	return pluginhost.Spec{Name: name, Command: builtinCommand(o, name)}
}

// builtinCommand serves the named built-in plugins from one kwarp process.
func builtinCommand(o Options, names ...string) func() *exec.Cmd {
	return func() *exec.Cmd {
		cmd := exec.Command(o.Self, append([]string{"plugin"}, names...)...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		return cmd
	}
}

// netConnector is the net plugin as clusterdial sees it.
type netConnector struct{ p *pluginhost.Plugin }

func (n netConnector) Connect(ctx context.Context, network, address string, token []byte) (sdk.ConnectResult, error) {
	var out sdk.ConnectResult
	err := n.p.Call(ctx, func(ctx context.Context, c *sdk.Client) error {
		r, err := c.Net().Connect(ctx, &pluginv1.NetConnectRequest{Network: network, Address: address, Token: token})
		if err == nil {
			out = sdk.ConnectResult{Errno: int(r.Errno), Message: r.Message, LocalAddress: r.LocalAddress, RemoteAddress: r.RemoteAddress}
		}
		return err
	})
	return out, err
}
