package sdk

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"time"

	plugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/kwarp-dev/kwarp/sdk/pluginv1"
)

// Handshake keeps a plugin binary from being run by hand or by another host: go-plugin checks
// the cookie and the protocol version before anything else.
var Handshake = plugin.HandshakeConfig{
	ProtocolVersion:  1,
	MagicCookieKey:   "KWARP_PLUGIN",
	MagicCookieValue: "c0a6f1e2-kwarp-feature-plugin",
}

// PluginName is the one name under which a kwarp plugin serves itself.
const PluginName = "kwarp"

// GRPCPlugin adapts a Plugin to go-plugin's GRPC plugin interface; both the plugin side
// (Serve) and the host side use it.
type GRPCPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	Impl Plugin
	// Name, on the host side, is the plugin to talk to in a process that serves several
	// (ServeAll); every call carries it. Empty for a plugin served alone.
	Name string
}

// GRPCServer registers the plugin's services: Base always, each feature service when the
// implementation has the feature.
func (p *GRPCPlugin) GRPCServer(broker *plugin.GRPCBroker, s *grpc.Server) error {
	registerServices(s, p.Impl, broker)
	return nil
}

func registerServices(s grpc.ServiceRegistrar, impl Plugin, broker *plugin.GRPCBroker) {
	pluginv1.RegisterBaseServer(s, &server{impl: impl, broker: broker})
	if e, ok := impl.(EnvPlugin); ok {
		pluginv1.RegisterEnvServer(s, &envServer{impl: e})
	}
	if f, ok := impl.(FsPlugin); ok {
		pluginv1.RegisterFsServer(s, &fsServer{impl: f})
	}
	if n, ok := impl.(NetPlugin); ok {
		pluginv1.RegisterNetServer(s, &netServer{impl: n})
	}
	if d, ok := impl.(DnsPlugin); ok {
		pluginv1.RegisterDnsServer(s, &dnsServer{impl: d})
	}
	if st, ok := impl.(StealPlugin); ok {
		pluginv1.RegisterIncomingServer(s, &incomingServer{impl: st})
	}
}

// GRPCClient returns the host's view of the plugin.
func (p *GRPCPlugin) GRPCClient(_ context.Context, broker *plugin.GRPCBroker, c *grpc.ClientConn) (interface{}, error) {
	if p.Name != "" {
		return &Client{conn: namedConn{c, p.Name}, broker: broker}, nil
	}
	return &Client{conn: c, broker: broker}, nil
}

// Serve runs a plugin: call it from the plugin binary's main (or `kwarp plugin NAME`).
func Serve(impl Plugin) {
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: Handshake,
		Plugins:         plugin.PluginSet{PluginName: &GRPCPlugin{Impl: impl}},
		GRPCServer:      plugin.DefaultGRPCServer,
	})
}

type server struct {
	pluginv1.UnimplementedBaseServer
	impl   Plugin
	broker *plugin.GRPCBroker
	agent  *grpc.ClientConn
}

func (s *server) Info(context.Context, *pluginv1.InfoRequest) (*pluginv1.InfoResponse, error) {
	info := s.impl.Info()
	resp := &pluginv1.InfoResponse{Name: info.Name, Version: info.Version}
	for _, name := range slices.Sorted(maps.Keys(info.Blocks)) {
		b, err := json.Marshal(info.Blocks[name])
		if err != nil {
			return nil, fmt.Errorf("plugin %s: schema of block %q: %w", info.Name, name, err)
		}
		resp.Blocks = append(resp.Blocks, name)
		resp.Schemas = append(resp.Schemas, b)
	}
	if _, ok := s.impl.(EnvPlugin); ok {
		resp.Features = append(resp.Features, "env")
	}
	if _, ok := s.impl.(FsPlugin); ok {
		resp.Features = append(resp.Features, "fs")
	}
	if _, ok := s.impl.(NetPlugin); ok {
		resp.Features = append(resp.Features, "net")
	}
	if _, ok := s.impl.(DnsPlugin); ok {
		resp.Features = append(resp.Features, "dns")
	}
	if _, ok := s.impl.(StealPlugin); ok {
		resp.Features = append(resp.Features, FeatureIncoming)
	}
	return resp, nil
}

func (s *server) Configure(ctx context.Context, req *pluginv1.ConfigureRequest) (*pluginv1.ConfigureResponse, error) {
	cfg := Config{Blocks: req.Blocks}
	if ss := req.Session; ss != nil {
		cfg.Session = Session{ID: ss.Id, Targetless: ss.Targetless, Namespace: ss.Namespace, Pod: ss.Pod,
			Container: ss.Container, Home: ss.Home, Workdir: ss.Workdir}
	}
	if req.AgentBrokerId != 0 {
		if s.agent == nil {
			conn, err := s.broker.Dial(req.AgentBrokerId)
			if err != nil {
				return nil, fmt.Errorf("dial the agent through the core: %w", err)
			}
			s.agent = conn
		}
		cfg.Agent = s.agent
	}
	rules, err := s.impl.Configure(ctx, cfg)
	if err != nil {
		return nil, err
	}
	resp := &pluginv1.ConfigureResponse{Rules: map[string][]byte{}, Notes: rules.Notes}
	for k, v := range rules.Tables {
		b, err := json.Marshal(v)
		if err != nil {
			return nil, fmt.Errorf("rule table %q: %w", k, err)
		}
		resp.Rules[k] = b
	}
	return resp, nil
}

type envServer struct {
	pluginv1.UnimplementedEnvServer
	impl EnvPlugin
}

func (s *envServer) Compute(ctx context.Context, req *pluginv1.ComputeRequest) (*pluginv1.ComputeResponse, error) {
	local := make([]EnvVar, len(req.Local))
	for i, v := range req.Local {
		local[i] = EnvVar{Name: v.Name, Value: v.Value}
	}
	res, err := s.impl.Compute(ctx, local)
	if err != nil {
		return nil, err
	}
	resp := &pluginv1.ComputeResponse{Imported: res.Imported}
	for _, v := range res.Vars {
		resp.Vars = append(resp.Vars, &pluginv1.EnvVar{Name: v.Name, Value: v.Value})
	}
	return resp, nil
}

type fsServer struct {
	pluginv1.UnimplementedFsServer
	impl FsPlugin
}

func (s *fsServer) Open(ctx context.Context, req *pluginv1.OpenRequest) (*pluginv1.OpenResponse, error) {
	d, err := s.impl.Open(ctx, req.Path, int(req.Flags), req.Mode)
	if err != nil {
		return nil, err
	}
	return &pluginv1.OpenResponse{Errno: int32(d.Errno), Action: pluginv1.OpenResponse_Action(d.Action), Info: infoToPB(d.Info)}, nil
}

func (s *fsServer) Stat(ctx context.Context, req *pluginv1.StatRequest) (*pluginv1.StatResponse, error) {
	fi, errno, err := s.impl.Stat(ctx, req.Path, req.NoFollow)
	if err != nil {
		return nil, err
	}
	return &pluginv1.StatResponse{Errno: int32(errno), Info: infoToPB(fi)}, nil
}

func (s *fsServer) Readlink(ctx context.Context, req *pluginv1.PathRequest) (*pluginv1.ReadlinkResponse, error) {
	t, errno, err := s.impl.Readlink(ctx, req.Path)
	if err != nil {
		return nil, err
	}
	return &pluginv1.ReadlinkResponse{Errno: int32(errno), Target: t}, nil
}

func (s *fsServer) Access(ctx context.Context, req *pluginv1.AccessRequest) (*pluginv1.ErrnoResponse, error) {
	errno, err := s.impl.Access(ctx, req.Path, req.Mode)
	if err != nil {
		return nil, err
	}
	return &pluginv1.ErrnoResponse{Errno: int32(errno)}, nil
}

type netServer struct {
	pluginv1.UnimplementedNetServer
	impl NetPlugin
}

func (s *netServer) Connect(ctx context.Context, req *pluginv1.NetConnectRequest) (*pluginv1.NetConnectResponse, error) {
	r, err := s.impl.Connect(ctx, req.Network, req.Address, req.Token)
	if err != nil {
		return nil, err
	}
	return &pluginv1.NetConnectResponse{Errno: int32(r.Errno), Message: r.Message,
		LocalAddress: r.LocalAddress, RemoteAddress: r.RemoteAddress}, nil
}

type dnsServer struct {
	pluginv1.UnimplementedDnsServer
	impl DnsPlugin
}

func (s *dnsServer) Query(ctx context.Context, req *pluginv1.DnsQueryRequest) (*pluginv1.DnsQueryResponse, error) {
	a, err := s.impl.Query(ctx, req.Server, req.Packet, req.Tcp)
	if err != nil {
		return nil, err
	}
	return &pluginv1.DnsQueryResponse{Packet: a.Packet, Errno: int32(a.Errno), Message: a.Message}, nil
}

func infoToPB(fi FileInfo) *pluginv1.FileInfo {
	return &pluginv1.FileInfo{Mode: fi.Mode, Size: fi.Size, Uid: fi.UID, Gid: fi.GID, Nlink: fi.Nlink, Ino: fi.Ino,
		Dev: fi.Dev, Rdev: fi.Rdev, Blksize: fi.Blksize, Blocks: fi.Blocks,
		AtimeNs: fi.Atime.UnixNano(), MtimeNs: fi.Mtime.UnixNano(), CtimeNs: fi.Ctime.UnixNano()}
}

// InfoFromPB converts the wire form of a file's info.
func InfoFromPB(p *pluginv1.FileInfo) FileInfo {
	if p == nil {
		return FileInfo{}
	}
	return FileInfo{Mode: p.Mode, Size: p.Size, UID: p.Uid, GID: p.Gid, Nlink: p.Nlink, Ino: p.Ino, Dev: p.Dev,
		Rdev: p.Rdev, Blksize: p.Blksize, Blocks: p.Blocks, Atime: time.Unix(0, p.AtimeNs),
		Mtime: time.Unix(0, p.MtimeNs), Ctime: time.Unix(0, p.CtimeNs)}
}
