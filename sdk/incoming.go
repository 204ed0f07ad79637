package sdk

import (
	"context"
	"errors"
	"fmt"
	"io"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kwarp-dev/kwarp/sdk/pluginv1"
)

// Modes of incoming traffic.
const (
	IncomingMirror = "mirror"
	IncomingSteal  = "steal"
	IncomingOff    = "off"
)

// IncomingRules is the "incoming" table, published by the net plugin from network.incoming.
type IncomingRules struct {
	Mode        string      `json:"mode"` // IncomingMirror (default), IncomingSteal, IncomingOff
	IgnorePorts []int       `json:"ignore_ports"`
	PortMapping map[int]int `json:"port_mapping"` // remote (pod) port → local port
}

// StealRules is the "steal" table, published by the steal plugin: its steal "http" blocks, which
// the core subscribes when the session starts (so an overlap is refused before the command runs).
type StealRules struct {
	Filtered []StealFilter `json:"filtered"`
}

// StealFilter names one steal "http" block and its pod port.
type StealFilter struct {
	Name string `json:"name"`
	Port int    `json:"port"`
}

// IncomingEvent is one event of a subscription: exactly one field is set.
type IncomingEvent struct {
	Subscribed *IncomingSubscribed
	Connection *IncomingConnection
}

// IncomingSubscribed: the redirection is in place. PodPorts are the TCP ports the pod listens on.
type IncomingSubscribed struct{ PodPorts []int }

// IncomingConnection: a connection (or a mirrored copy) for the session; the core opens a tunnel
// with Token. Client is the pod client's ip:port, PodLocal the ip:port it reached in the pod.
type IncomingConnection struct {
	Token            []byte
	Client, PodLocal string
}

// StealPlugin does the control exchange for incoming traffic.
type StealPlugin interface {
	Plugin
	// Subscribe asks the agent for the pod's port in mode (IncomingMirror or IncomingSteal; with
	// IncomingSteal the plugin sends its steal "http" blocks on that port as filters, none = the
	// whole port) and calls events for each event, in order, until ctx ends (then it returns
	// ctx.Err()) or the agent refuses (a *RefusedError) or fails (an error). An error from
	// events ends the subscription with that error.
	Subscribe(ctx context.Context, port int, mode string, events func(IncomingEvent) error) error
}

// RefusedError is the agent's refusal of a subscription: Message is a sentence for the user
// (port, filters, holder); Holder* name the session that holds what was asked.
type RefusedError struct {
	Message                               string
	HolderSession, HolderUser, HolderHost string
}

func (e *RefusedError) Error() string { return e.Message }

// FeatureIncoming is the feature a StealPlugin lists in its Info (pluginv1.InfoResponse.Features):
// the plugin serves the Incoming service (Client.Incoming, SubscribeIncoming).
const FeatureIncoming = "incoming"

// errSubscriptionEnded: the plugin's Subscribe returned nil, which the contract does not allow
// (it returns only when ctx ends, on a refusal or on a failure).
var errSubscriptionEnded = errors.New("the plugin ended the incoming subscription without a reason")

// SubscribeIncoming runs StealPlugin.Subscribe on a plugin through its Client: the same
// semantics as StealPlugin.Subscribe, the refusal arriving as *RefusedError (errors.As works)
// across the process boundary, and ctx's end ending the stream on both sides. Call it only
// when Info listed the FeatureIncoming feature.
func SubscribeIncoming(ctx context.Context, c *Client, port int, mode string, events func(IncomingEvent) error) error {
	if port <= 0 || port > 65535 {
		return fmt.Errorf("incoming subscription: port %d is not a TCP port", port)
	}
	// the stream's own context, so that an error from events ends the call on the plugin too
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.Incoming().Subscribe(sctx, &pluginv1.IncomingSubscribeRequest{Port: uint32(port), Mode: mode})
	if err != nil {
		return incomingErr(ctx, err)
	}
	for {
		msg, err := stream.Recv()
		if err == io.EOF {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return errSubscriptionEnded
		}
		if err != nil {
			return incomingErr(ctx, err)
		}
		ev, refused := incomingEventFromPB(msg)
		if refused != nil {
			return refused
		}
		if ev.Subscribed == nil && ev.Connection == nil {
			continue // an event this side does not know (a newer plugin): skip it
		}
		if err := events(ev); err != nil {
			return err
		}
	}
}

// incomingErr turns the stream's error into the contract's: ctx's own error when ctx ended,
// the plugin's message when its Subscribe failed.
func incomingErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if s, ok := status.FromError(err); ok && s.Code() == codes.Unknown {
		return errors.New(s.Message())
	}
	return fmt.Errorf("incoming subscription: %w", err)
}

func incomingEventFromPB(m *pluginv1.IncomingEventMessage) (IncomingEvent, *RefusedError) {
	switch e := m.Event.(type) {
	case *pluginv1.IncomingEventMessage_Subscribed:
		s := &IncomingSubscribed{}
		for _, p := range e.Subscribed.GetPodPorts() {
			s.PodPorts = append(s.PodPorts, int(p))
		}
		return IncomingEvent{Subscribed: s}, nil
	case *pluginv1.IncomingEventMessage_Connection:
		c := e.Connection
		return IncomingEvent{Connection: &IncomingConnection{Token: c.GetToken(), Client: c.GetClient(), PodLocal: c.GetPodLocal()}}, nil
	case *pluginv1.IncomingEventMessage_Refused:
		r := e.Refused
		return IncomingEvent{}, &RefusedError{Message: r.GetMessage(), HolderSession: r.GetHolderSession(),
			HolderUser: r.GetHolderUser(), HolderHost: r.GetHolderHost()}
	}
	return IncomingEvent{}, nil
}

type incomingServer struct {
	pluginv1.UnimplementedIncomingServer
	impl StealPlugin
}

func (s *incomingServer) Subscribe(req *pluginv1.IncomingSubscribeRequest, stream grpc.ServerStreamingServer[pluginv1.IncomingEventMessage]) error {
	ctx := stream.Context()
	err := s.impl.Subscribe(ctx, int(req.Port), req.Mode, func(ev IncomingEvent) error {
		m := &pluginv1.IncomingEventMessage{}
		switch {
		case ev.Subscribed != nil:
			sub := &pluginv1.IncomingSubscribedEvent{}
			for _, p := range ev.Subscribed.PodPorts {
				sub.PodPorts = append(sub.PodPorts, uint32(p))
			}
			m.Event = &pluginv1.IncomingEventMessage_Subscribed{Subscribed: sub}
		case ev.Connection != nil:
			c := ev.Connection
			m.Event = &pluginv1.IncomingEventMessage_Connection{Connection: &pluginv1.IncomingConnectionEvent{
				Token: c.Token, Client: c.Client, PodLocal: c.PodLocal}}
		default:
			return errors.New("incoming event with no field set")
		}
		return stream.Send(m)
	})
	var refused *RefusedError
	switch {
	case errors.As(err, &refused):
		return stream.Send(&pluginv1.IncomingEventMessage{Event: &pluginv1.IncomingEventMessage_Refused{Refused: &pluginv1.IncomingRefusedEvent{
			Message: refused.Message, HolderSession: refused.HolderSession, HolderUser: refused.HolderUser, HolderHost: refused.HolderHost}}})
	case err != nil && ctx.Err() != nil:
		return status.FromContextError(ctx.Err()).Err()
	}
	return err
}
