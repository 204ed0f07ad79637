// Package agentproxy forwards gRPC calls, any method and any streaming shape, to the agent
// connection the core owns. The core serves it to each plugin over the go-plugin broker, so a
// plugin does its control exchange with the agent without holding a port-forward of its own,
// and the core stays the one owner of the agent connection.
package agentproxy

import (
	"errors"
	"io"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// frame carries a message's bytes through unchanged: the proxy never decodes the agent's API.
type frame struct{ payload []byte }

// codec is a pass-through codec registered under the name gRPC negotiates for protobuf, so
// both the server side (from the plugin) and the client side (to the agent) move raw bytes.
type codec struct{}

func (codec) Marshal(v any) ([]byte, error) {
	f, ok := v.(*frame)
	if !ok {
		return nil, errors.New("agentproxy: unexpected message type")
	}
	return f.payload, nil
}

func (codec) Unmarshal(data []byte, v any) error {
	f, ok := v.(*frame)
	if !ok {
		return errors.New("agentproxy: unexpected message type")
	}
	f.payload = append(f.payload[:0], data...)
	return nil
}

func (codec) Name() string { return "proto" }

var _ encoding.Codec = codec{}

// ServerOptions makes a grpc.Server forward every call to agent. Use them when building the
// server the plugin reaches (no services need registering).
func ServerOptions(agent *grpc.ClientConn) []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.ForceServerCodec(codec{}),
		grpc.UnknownServiceHandler(handler(agent)),
	}
}

func handler(agent *grpc.ClientConn) grpc.StreamHandler {
	return func(_ any, in grpc.ServerStream) error {
		method, ok := grpc.MethodFromServerStream(in)
		if !ok {
			return status.Error(codes.Internal, "agentproxy: no method in stream")
		}
		md, _ := metadata.FromIncomingContext(in.Context())
		ctx := metadata.NewOutgoingContext(in.Context(), md.Copy())
		out, err := agent.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}, method,
			grpc.ForceCodec(codec{}))
		if err != nil {
			return err
		}
		// plugin → agent
		upErr := make(chan error, 1)
		go func() {
			for {
				f := &frame{}
				if err := in.RecvMsg(f); err != nil {
					if errors.Is(err, io.EOF) {
						upErr <- out.CloseSend()
						return
					}
					upErr <- err
					return
				}
				if err := out.SendMsg(f); err != nil {
					upErr <- err
					return
				}
			}
		}()
		// agent → plugin
		if hdr, err := out.Header(); err == nil {
			_ = in.SendHeader(hdr)
		}
		for {
			f := &frame{}
			if err := out.RecvMsg(f); err != nil {
				in.SetTrailer(out.Trailer())
				if errors.Is(err, io.EOF) {
					return nil
				}
				return err
			}
			if err := in.SendMsg(f); err != nil {
				return err
			}
		}
	}
}
