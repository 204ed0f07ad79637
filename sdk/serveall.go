package sdk

import (
	"context"
	"sync"

	plugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// PluginMetadataKey is the gRPC metadata that names the plugin a call is for, in a process that
// serves several (ServeAll).
const PluginMetadataKey = "kwarp-plugin"

// ServeAll runs several plugins in one process, each dispensed by the host under its
// Info().Name. One process instead of one per plugin is what kwarp does with its built-ins:
// every Go process costs its start-up time and tens of MiB of resident memory. The plugins
// still only meet through the host: each gets its own Configure and its own agent connection.
func ServeAll(impls ...Plugin) {
	set := plugin.PluginSet{}
	mux := &muxPlugin{impls: map[string]Plugin{}}
	for _, impl := range impls {
		name := impl.Info().Name
		mux.impls[name] = impl
		set[name] = mux
	}
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: Handshake,
		Plugins:         set,
		GRPCServer:      plugin.DefaultGRPCServer,
	})
}

// muxPlugin registers each service once, with handlers that pick the implementation by the
// call's PluginMetadataKey. go-plugin calls GRPCServer once per name of the set.
type muxPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	impls map[string]Plugin
	once  sync.Once
}

func (m *muxPlugin) GRPCServer(broker *plugin.GRPCBroker, s *grpc.Server) error {
	m.once.Do(func() { registerMux(s, m.impls, broker) })
	return nil
}

func (m *muxPlugin) GRPCClient(context.Context, *plugin.GRPCBroker, *grpc.ClientConn) (interface{}, error) {
	return nil, status.Error(codes.Unimplemented, "the plugin side of ServeAll has no client")
}

// registration is one service as a plugin registered it.
type registration struct {
	desc *grpc.ServiceDesc
	impl any
}

// collector is a grpc.ServiceRegistrar that keeps what it is given.
type collector map[string]registration

func (c collector) RegisterService(desc *grpc.ServiceDesc, impl any) {
	c[desc.ServiceName] = registration{desc, impl}
}

func registerMux(s grpc.ServiceRegistrar, impls map[string]Plugin, broker *plugin.GRPCBroker) {
	byService := map[string]map[string]registration{}
	for name, impl := range impls {
		c := collector{}
		registerServices(c, impl, broker)
		for svc, r := range c {
			if byService[svc] == nil {
				byService[svc] = map[string]registration{}
			}
			byService[svc][name] = r
		}
	}
	for _, regs := range byService {
		desc, impl := muxDesc(regs)
		s.RegisterService(desc, impl)
	}
}

// muxDesc is the service of regs (one per plugin) with handlers that call the named plugin's
// implementation; it returns one of the implementations for grpc's type check.
func muxDesc(regs map[string]registration) (*grpc.ServiceDesc, any) {
	var any0 registration
	for _, r := range regs {
		any0 = r
		break
	}
	d := *any0.desc
	pick := func(ctx context.Context) (any, error) {
		var name string
		if md, ok := metadata.FromIncomingContext(ctx); ok {
			if v := md.Get(PluginMetadataKey); len(v) > 0 {
				name = v[0]
			}
		}
		r, ok := regs[name]
		if !ok {
			return nil, status.Errorf(codes.Unimplemented, "this process serves no plugin %q with %s", name, d.ServiceName)
		}
		return r.impl, nil
	}
	d.Methods = make([]grpc.MethodDesc, len(any0.desc.Methods))
	for i, m := range any0.desc.Methods {
		h := m.Handler
		d.Methods[i] = grpc.MethodDesc{MethodName: m.MethodName,
			Handler: func(_ any, ctx context.Context, dec func(any) error, ic grpc.UnaryServerInterceptor) (any, error) {
				impl, err := pick(ctx)
				if err != nil {
					return nil, err
				}
				return h(impl, ctx, dec, ic)
			}}
	}
	d.Streams = make([]grpc.StreamDesc, len(any0.desc.Streams))
	for i, sd := range any0.desc.Streams {
		h := sd.Handler
		sd.Handler = func(_ any, stream grpc.ServerStream) error {
			impl, err := pick(stream.Context())
			if err != nil {
				return err
			}
			return h(impl, stream)
		}
		d.Streams[i] = sd
	}
	return &d, any0.impl
}

// namedConn adds the plugin's name to every call, for a process that serves several.
type namedConn struct {
	cc   *grpc.ClientConn
	name string
}

func (n namedConn) Invoke(ctx context.Context, method string, args, reply any, opts ...grpc.CallOption) error {
	return n.cc.Invoke(metadata.AppendToOutgoingContext(ctx, PluginMetadataKey, n.name), method, args, reply, opts...)
}

func (n namedConn) NewStream(ctx context.Context, desc *grpc.StreamDesc, method string, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	return n.cc.NewStream(metadata.AppendToOutgoingContext(ctx, PluginMetadataKey, n.name), desc, method, opts...)
}
