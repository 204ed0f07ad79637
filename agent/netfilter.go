package agent

import (
	"context"
	"errors"
	"sync"

	"github.com/kwarp-dev/kwarp/agent/netfilter"
	"github.com/kwarp-dev/kwarp/agent/netns"
)

// netfilterState is the agent's netfilter.Redirector, made in the background when serving
// starts (listing the target's tables takes a few iptables runs; no session waits for it),
// after which the rules of agents that are gone are removed. The incoming service takes its
// redirects from it (incomingRedirects). It has its own netns.Dialer: iptables runs hold the worker's thread, and
// outgoing connections must not wait behind them.
type netfilterState struct {
	done chan struct{}
	once sync.Once
	r    *netfilter.Redirector // nil when unavailable (err says why)
	err  error
	ns   *netns.Dialer
}

var errTargetless = errors.New("targetless agent: no target network namespace")

func (s *Server) startNetfilter(ctx context.Context) *netfilterState {
	st := &netfilterState{done: make(chan struct{})}
	if s.tracker == nil {
		st.err = errTargetless
		close(st.done)
		return st
	}
	st.ns = netns.New(s.tracker)
	go func() {
		defer close(st.done)
		id := netfilter.NewID()
		r, err := netfilter.New(ctx, st.ns, id, netfilter.Options{Log: s.log, GuardExe: s.opts.GuardExe})
		if err != nil {
			st.err = err
			s.log.Warn().Err(err).Msg("netfilter unavailable: incoming traffic cannot be stolen")
			return
		}
		st.r = r
		s.log.Debug().Str("netfilter_id", id).Str("backend", string(r.Backend())).Msg("netfilter ready")
		if _, err := r.RemoveStale(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn().Err(err).Msg("removing the rules of agents that are gone")
		}
	}()
	return st
}

// redirector waits for the Redirector (or ctx).
func (st *netfilterState) redirector(ctx context.Context) (*netfilter.Redirector, error) {
	select {
	case <-st.done:
		return st.r, st.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// close removes every rule the agent added (the guard would, too, once the agent exits).
// Calls after the first do nothing.
func (st *netfilterState) close(s *Server) {
	st.once.Do(func() {
		<-st.done
		if st.r != nil {
			if err := st.r.Close(); err != nil {
				s.log.Warn().Err(err).Msg("netfilter cleanup")
			}
		}
		if st.ns != nil {
			st.ns.Close()
		}
	})
}

// incomingRedirects gives the incoming service the agent's Redirector.
type incomingRedirects struct{ s *Server }

var errNotServing = errors.New("the agent is not serving yet")

func (r incomingRedirects) Ready(ctx context.Context) error {
	if r.s.nf == nil {
		return errNotServing
	}
	_, err := r.s.nf.redirector(ctx)
	return err
}

func (r incomingRedirects) Hold() func() {
	if r.s.nf == nil {
		return func() {}
	}
	rd, err := r.s.nf.redirector(context.Background())
	if err != nil || rd == nil {
		return func() {}
	}
	return rd.Hold()
}

func (r incomingRedirects) Redirect(port, toPort int, session string, flush bool) (func() error, error) {
	if r.s.nf == nil {
		return nil, errNotServing
	}
	rd, err := r.s.nf.redirector(context.Background())
	if err != nil {
		return nil, err
	}
	// A mirror must not reset the connections the app is serving: it only copies them.
	return rd.AddWith(port, toPort, session, netfilter.AddOptions{KeepEstablished: !flush})
}
