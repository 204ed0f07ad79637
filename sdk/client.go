package sdk

import (
	"context"

	plugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/kwarp-dev/kwarp/sdk/pluginv1"
)

// Client is the host's handle on a running plugin, over go-plugin's gRPC connection.
type Client struct {
	conn   grpc.ClientConnInterface
	broker *plugin.GRPCBroker
}

// Info asks the plugin who it is; schemas stay JSON for the host to decode.
func (c *Client) Info(ctx context.Context) (*pluginv1.InfoResponse, error) {
	return pluginv1.NewBaseClient(c.conn).Info(ctx, &pluginv1.InfoRequest{})
}

// ServeAgent makes the agent's API reachable for the plugin through the go-plugin broker and
// returns the broker id to put in Configure. opts build the server that answers there (the
// core passes a forwarding proxy's options).
func (c *Client) ServeAgent(opts ...grpc.ServerOption) uint32 {
	id := c.broker.NextId()
	go c.broker.AcceptAndServe(id, func(brokerOpts []grpc.ServerOption) *grpc.Server {
		return grpc.NewServer(append(brokerOpts, opts...)...)
	})
	return id
}

// Configure sends the decoded blocks and the session; the answer holds the rule tables.
func (c *Client) Configure(ctx context.Context, req *pluginv1.ConfigureRequest) (*pluginv1.ConfigureResponse, error) {
	return pluginv1.NewBaseClient(c.conn).Configure(ctx, req)
}

// Env is the plugin's env service (call only when Info listed the "env" feature).
func (c *Client) Env() pluginv1.EnvClient { return pluginv1.NewEnvClient(c.conn) }

// Fs is the plugin's fs service (call only when Info listed the "fs" feature).
func (c *Client) Fs() pluginv1.FsClient { return pluginv1.NewFsClient(c.conn) }

// Net is the plugin's net service (call only when Info listed the "net" feature).
func (c *Client) Net() pluginv1.NetClient { return pluginv1.NewNetClient(c.conn) }

// Dns is the plugin's dns service (call only when Info listed the "dns" feature).
func (c *Client) Dns() pluginv1.DnsClient { return pluginv1.NewDnsClient(c.conn) }

// Incoming is the plugin's incoming-traffic service (call only when Info listed the
// FeatureIncoming feature); SubscribeIncoming wraps it.
func (c *Client) Incoming() pluginv1.IncomingClient { return pluginv1.NewIncomingClient(c.conn) }
