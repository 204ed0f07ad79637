// Package incoming brings the pod's incoming traffic to the user's process: it is the layer's
// IncomingHandler. When the process listens on a port, the pod's port that maps to it is
// subscribed (mirror or steal, through the steal plugin and the agent's incoming
// capability); each connection the agent hands the session arrives as an event with a token,
// and the core connects to the process's listener, opens a tunnel to the agent with the
// token and splices the two. The bytes never pass through a plugin.
//
// Filtered steals (steal "http" blocks) are subscribed when the session starts, before the
// command runs: another session's overlapping filter is refused then, with a message naming
// who holds it, instead of surprising the developer at the first request.
//
// A connection the process cannot take (nothing listens on the local port any more) is
// answered "not delivered" on its tunnel, and the agent gives it to the deployed app at once;
// a whole-port or mirror subscription whose listener is gone is dropped, so the pod's
// traffic goes back to the deployed app without waiting for the session to end.
package incoming

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/kwarp-dev/kwarp/agent/api/tunnel"
	"github.com/kwarp-dev/kwarp/internal/splice"
	"github.com/kwarp-dev/kwarp/layer"
)

// Modes of a subscription, as the steal plugin takes them.
const (
	ModeMirror = "mirror"
	ModeSteal  = "steal"
	ModeOff    = "off"
)

// Rules say which ports are subscribed and how.
type Rules struct {
	// Mode is ModeMirror, ModeSteal or ModeOff for the ports the process listens on.
	Mode string
	// IgnorePorts are pod ports left alone.
	IgnorePorts []int
	// PortMapping maps a pod port to the local port the process listens on for it.
	PortMapping map[int]int
	// FilteredPorts are the pod ports of steal "http" blocks, subscribed at Start.
	FilteredPorts []int
}

// Event is one event of a subscription: Subscribed, or a connection.
type Event struct {
	// Subscribed: the pod's port is redirected; PodPorts are the ports the pod listens on.
	Subscribed bool
	PodPorts   []int
	// Conn is a connection (or a mirrored copy) for the session.
	Conn *Conn
}

// Conn is a connection the agent hands the session.
type Conn struct {
	Token []byte
	// Client is the pod client's address, PodLocal the address it reached in the pod.
	Client, PodLocal netip.AddrPort
}

// Subscriber holds subscriptions in the pod: the steal plugin. Subscribe calls events for each
// event until ctx ends or the subscription is refused or fails (the error says why, for the
// user).
type Subscriber interface {
	Subscribe(ctx context.Context, port int, mode string, events func(Event) error) error
}

// Options configure a Handler.
type Options struct {
	Rules      Rules
	Subscriber Subscriber
	// Open opens a tunnel to the agent.
	Open func(ctx context.Context) (net.Conn, error)
	// Say prints a line for the user (warnings about ports).
	Say func(format string, args ...any)
	Log zerolog.Logger
	// PollInterval is how often closed listeners are looked for (default 2 s).
	PollInterval time.Duration
}

// Handler is the layer's IncomingHandler for one session.
type Handler struct {
	opts   Options
	log    zerolog.Logger
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu        sync.Mutex
	listeners map[uint16][]layer.Listener // by local port
	subs      map[int]*sub                // by pod port
	flows     map[netip.AddrPort]layer.Flow
	conns     map[net.Conn]struct{}
	closed    bool
}

type sub struct {
	port     int
	mode     string
	filtered bool
	cancel   context.CancelFunc
}

// New returns a handler; Start subscribes the filtered steals.
func New(opts Options) (*Handler, error) {
	if opts.Subscriber == nil || opts.Open == nil {
		return nil, errors.New("incoming: Subscriber and Open are required")
	}
	switch opts.Rules.Mode {
	case ModeMirror, ModeSteal, ModeOff:
	case "":
		opts.Rules.Mode = ModeMirror
	default:
		return nil, fmt.Errorf("incoming: mode %q: want mirror, steal or off", opts.Rules.Mode)
	}
	if opts.Say == nil {
		opts.Say = func(string, ...any) {}
	}
	if opts.PollInterval <= 0 {
		opts.PollInterval = 2 * time.Second
	}
	ctx, cancel := context.WithCancel(context.Background())
	h := &Handler{
		opts: opts, log: opts.Log, ctx: ctx, cancel: cancel,
		listeners: map[uint16][]layer.Listener{}, subs: map[int]*sub{},
		flows: map[netip.AddrPort]layer.Flow{}, conns: map[net.Conn]struct{}{},
	}
	h.wg.Add(1)
	go h.poll()
	return h, nil
}

// Start subscribes every filtered steal and waits until each is in place; a refusal (another
// session holds an overlapping filter) or failure is returned and nothing stays subscribed.
func (h *Handler) Start(ctx context.Context) error {
	if h.opts.Rules.Mode == ModeOff {
		if len(h.opts.Rules.FilteredPorts) > 0 {
			h.opts.Say("network.incoming.mode is \"off\": the steal blocks are not applied")
		}
		return nil
	}
	ports := slices.Clone(h.opts.Rules.FilteredPorts)
	slices.Sort(ports)
	ports = slices.Compact(ports)
	type result struct {
		port     int
		podPorts []int
		err      error
	}
	results := make(chan result, len(ports))
	for _, port := range ports {
		// the first of subscribed and failed answers Start; a failure after that is told
		// to the user
		var once sync.Once
		h.startSub(port, ModeSteal, true, func(podPorts []int) {
			once.Do(func() { results <- result{port: port, podPorts: podPorts} })
		}, func(err error) {
			first := false
			once.Do(func() { first = true; results <- result{port: port, err: err} })
			if !first {
				h.opts.Say("steal on port %d ended: %v", port, err)
			}
		})
	}
	var errs []error
	for range ports {
		var r result
		select {
		case r = <-results:
		case <-ctx.Done():
			h.Close()
			return ctx.Err()
		}
		if r.err != nil {
			errs = append(errs, r.err)
			continue
		}
		if !slices.Contains(r.podPorts, r.port) {
			h.opts.Say("steal on port %d: the pod does not listen on it (it listens on %s)", r.port, portList(r.podPorts))
		}
	}
	if len(errs) > 0 {
		h.Close()
		return errors.Join(errs...)
	}
	return nil
}

func portList(ports []int) string {
	if len(ports) == 0 {
		return "no port"
	}
	s := make([]string, len(ports))
	for i, p := range ports {
		s[i] = fmt.Sprint(p)
	}
	return strings.Join(s, ", ")
}

// podPort is the pod port a local port stands for, 0 for none: the one mapped to it, else
// the same number unless that pod port is mapped elsewhere.
func (h *Handler) podPort(local int) int {
	var mapped []int
	for remote, l := range h.opts.Rules.PortMapping {
		if l == local {
			mapped = append(mapped, remote)
		}
	}
	if len(mapped) > 0 {
		sort.Ints(mapped)
		return mapped[0]
	}
	if _, elsewhere := h.opts.Rules.PortMapping[local]; elsewhere {
		return 0
	}
	return local
}

// localPort is the local port a pod port's connections are delivered to.
func (h *Handler) localPort(pod int) int {
	if l, ok := h.opts.Rules.PortMapping[pod]; ok {
		return l
	}
	return pod
}

// Listening records the listener and subscribes its pod port.
func (h *Handler) Listening(_ context.Context, l layer.Listener) {
	port := h.podPort(int(l.Local.Port()))
	log := h.log.With().Str("listen", l.Local.String()).Int("pod_port", port).Logger()
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return
	}
	lp := l.Local.Port()
	if !slices.ContainsFunc(h.listeners[lp], func(o layer.Listener) bool { return o.Inode == l.Inode }) {
		h.listeners[lp] = append(h.listeners[lp], l)
	}
	_, subscribed := h.subs[port]
	h.mu.Unlock()
	switch {
	case port == 0:
		log.Debug().Msg("listening on a local port whose pod port is mapped elsewhere: local only")
		return
	case h.opts.Rules.Mode == ModeOff:
		return
	case slices.Contains(h.opts.Rules.IgnorePorts, port):
		log.Debug().Msg("pod port ignored: local only")
		return
	case subscribed:
		return
	}
	log.Debug().Str("mode", h.opts.Rules.Mode).Msg("subscribing the pod's port")
	h.startSub(port, h.opts.Rules.Mode, false, func(podPorts []int) {
		if slices.Contains(podPorts, port) {
			log.Debug().Msg("subscribed")
			return
		}
		// a port the pod does not serve is the process's own business
		if h.opts.Rules.Mode == ModeSteal {
			h.opts.Say("port %d: the pod does not listen on it (it listens on %s); it stays local", port, portList(podPorts))
		}
		log.Debug().Ints("pod_ports", podPorts).Msg("the pod does not listen on the port: unsubscribed")
		h.dropSub(port, false)
	}, func(err error) {
		h.opts.Say("port %d: %v", port, err)
	})
}

// startSub runs a subscription in the background: subscribed is called with the pod's ports
// once it is in place, failed if it ends with an error before ctx ends.
func (h *Handler) startSub(port int, mode string, filtered bool, subscribed func([]int), failed func(error)) {
	ctx, cancel := context.WithCancel(h.ctx)
	s := &sub{port: port, mode: mode, filtered: filtered, cancel: cancel}
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		cancel()
		return
	}
	h.subs[port] = s
	h.mu.Unlock()
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		defer cancel()
		err := h.opts.Subscriber.Subscribe(ctx, port, mode, func(ev Event) error {
			switch {
			case ev.Subscribed:
				subscribed(ev.PodPorts)
			case ev.Conn != nil:
				h.wg.Add(1)
				go func() {
					defer h.wg.Done()
					h.deliver(ctx, s, *ev.Conn)
				}()
			}
			return nil
		})
		h.mu.Lock()
		if h.subs[port] == s {
			delete(h.subs, port)
		}
		h.mu.Unlock()
		if ctx.Err() == nil {
			if err == nil {
				err = errors.New("the agent ended the subscription")
			}
			h.log.Debug().Err(err).Int("pod_port", port).Msg("subscription ended")
			failed(err)
		}
	}()
}

// dropSub ends the subscription of a pod port (only a filtered one when filtered).
func (h *Handler) dropSub(port int, filtered bool) {
	h.mu.Lock()
	s := h.subs[port]
	if s != nil && s.filtered == filtered {
		delete(h.subs, port)
	} else {
		s = nil
	}
	h.mu.Unlock()
	if s != nil {
		s.cancel()
	}
}

// deliver connects to the process's listener and splices the connection's tunnel into it.
func (h *Handler) deliver(ctx context.Context, s *sub, c Conn) {
	tok, err := tunnel.ParseToken(c.Token)
	if err != nil {
		h.log.Warn().Err(err).Msg("incoming connection with a bad token")
		return
	}
	log := h.log.With().Int("pod_port", s.port).Str("client", c.Client.String()).Str("conn", tok.String()).Logger()
	local, lerr := h.dialListener(ctx, uint16(h.localPort(s.port)), c)
	tun, err := h.opts.Open(ctx)
	if err != nil {
		log.Warn().Err(err).Msg("open the tunnel of an incoming connection")
		if local != nil {
			h.closeLocal(local, true)
		}
		return
	}
	var head [tunnel.HeaderSize + 1]byte
	copy(head[:], tunnel.Magic[:])
	copy(head[len(tunnel.Magic):], tok[:])
	if local == nil {
		head[tunnel.HeaderSize] = tunnel.NotDelivered
		_, _ = tun.Write(head[:])
		tun.Close()
		log.Debug().Err(lerr).Msg("not delivered: nothing listens locally; the deployed app takes it")
		if !s.filtered {
			// the listener is gone: the port goes back to the deployed app until the
			// process listens again
			h.dropSub(s.port, false)
		}
		return
	}
	head[tunnel.HeaderSize] = tunnel.Delivered
	if _, err := tun.Write(head[:]); err != nil {
		log.Debug().Err(err).Msg("write the tunnel header")
		tun.Close()
		h.closeLocal(local, true)
		return
	}
	if err := tunnel.ReadStatus(tun); err != nil {
		log.Debug().Err(err).Msg("the agent dropped the connection")
		tun.Close()
		h.closeLocal(local, true)
		return
	}
	log.Debug().Msg("delivered")
	h.track(local, true)
	h.track(tun, true)
	splice.Conns(local, tun, halfCloseGrace)
	h.track(tun, false)
	h.closeLocal(local, false)
}

// halfCloseGrace is how long a delivered connection stays half open after the process ended
// its side. The tunnel's half-close does not reliably reach the agent (the container runtime's
// port-forward closes the whole stream a moment after one direction ends, or never passes the
// end on), so a process that closed its socket — or died with a request in flight — would
// otherwise leave the pod's client waiting for an answer that cannot come. Servers that
// half-close and go on reading are rare; a second covers the lingering close of Go's and
// others' HTTP servers.
const halfCloseGrace = time.Second

// dialListener connects to a listener of the process on port, with the delivering socket's
// address recorded for Delivered before the connect, so the process's accept finds it.
func (h *Handler) dialListener(ctx context.Context, port uint16, c Conn) (net.Conn, error) {
	h.mu.Lock()
	ls := slices.Clone(h.listeners[port])
	h.mu.Unlock()
	if len(ls) == 0 {
		return nil, fmt.Errorf("no listener on local port %d", port)
	}
	var lastErr error
	for _, l := range ls {
		dst := l.Dial()
		flow := layer.Flow{Remote: c.Client, PodLocal: c.PodLocal}
		var bound netip.AddrPort
		d := net.Dialer{Timeout: 5 * time.Second, Control: func(_, _ string, rc syscall.RawConn) error {
			var berr error
			err := rc.Control(func(fd uintptr) {
				var sa unix.Sockaddr = &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}
				if dst.Addr().Is6() {
					sa = &unix.SockaddrInet6{Addr: netip.IPv6Loopback().As16()}
				}
				if berr = unix.Bind(int(fd), sa); berr != nil {
					return
				}
				got, gerr := unix.Getsockname(int(fd))
				if gerr != nil {
					berr = gerr
					return
				}
				switch a := got.(type) {
				case *unix.SockaddrInet4:
					bound = netip.AddrPortFrom(netip.AddrFrom4(a.Addr), uint16(a.Port))
				case *unix.SockaddrInet6:
					bound = netip.AddrPortFrom(netip.AddrFrom16(a.Addr), uint16(a.Port))
				}
				if flow.Remote.IsValid() {
					h.mu.Lock()
					h.flows[bound] = flow
					h.mu.Unlock()
				}
			})
			if err != nil {
				return err
			}
			return berr
		}}
		conn, err := d.DialContext(ctx, "tcp", dst.String())
		if err == nil {
			return conn, nil
		}
		if bound.IsValid() {
			h.mu.Lock()
			delete(h.flows, bound)
			h.mu.Unlock()
		}
		lastErr = err
		if errors.Is(err, unix.ECONNREFUSED) {
			h.forgetListener(l)
		}
	}
	return nil, lastErr
}

func (h *Handler) forgetListener(l layer.Listener) {
	h.mu.Lock()
	defer h.mu.Unlock()
	p := l.Local.Port()
	h.listeners[p] = slices.DeleteFunc(h.listeners[p], func(o layer.Listener) bool { return o.Inode == l.Inode })
	if len(h.listeners[p]) == 0 {
		delete(h.listeners, p)
	}
}

func (h *Handler) track(c net.Conn, on bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if on {
		h.conns[c] = struct{}{}
	} else {
		delete(h.conns, c)
	}
}

// closeLocal closes a delivering socket and forgets its flow; reset makes the process see a
// reset rather than an orderly end (the pod client is gone).
func (h *Handler) closeLocal(c net.Conn, reset bool) {
	if tc, ok := c.(*net.TCPConn); ok && reset {
		_ = tc.SetLinger(0)
	}
	if a, ok := c.LocalAddr().(*net.TCPAddr); ok {
		h.mu.Lock()
		delete(h.flows, a.AddrPort())
		h.mu.Unlock()
	}
	h.track(c, false)
	c.Close()
}

// Delivered names the pod client of a connection the core delivered.
func (h *Handler) Delivered(_, peer netip.AddrPort) (layer.Flow, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	f, ok := h.flows[unmap(peer)]
	return f, ok
}

func unmap(a netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
}

// poll drops the whole-port and mirror subscriptions whose listeners all closed.
func (h *Handler) poll() {
	defer h.wg.Done()
	t := time.NewTicker(h.opts.PollInterval)
	defer t.Stop()
	for {
		select {
		case <-h.ctx.Done():
			return
		case <-t.C:
		}
		h.mu.Lock()
		n := len(h.listeners)
		h.mu.Unlock()
		if n == 0 {
			continue
		}
		open, err := layer.ListeningSockets()
		if err != nil {
			h.log.Debug().Err(err).Msg("list listening sockets")
			continue
		}
		var drop []int
		h.mu.Lock()
		for p, ls := range h.listeners {
			ls = slices.DeleteFunc(ls, func(l layer.Listener) bool { _, ok := open[l.Inode]; return !ok })
			if len(ls) > 0 {
				h.listeners[p] = ls
				continue
			}
			delete(h.listeners, p)
			if pp := h.podPort(int(p)); pp != 0 {
				if s := h.subs[pp]; s != nil && !s.filtered {
					drop = append(drop, pp)
				}
			}
		}
		h.mu.Unlock()
		for _, p := range drop {
			h.log.Debug().Int("pod_port", p).Msg("the process stopped listening: the port goes back to the deployed app")
			h.dropSub(p, false)
		}
	}
}

// Close ends every subscription and connection.
func (h *Handler) Close() {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return
	}
	h.closed = true
	conns := make([]net.Conn, 0, len(h.conns))
	for c := range h.conns {
		conns = append(conns, c)
	}
	h.mu.Unlock()
	h.cancel()
	for _, c := range conns {
		c.Close()
	}
	h.wg.Wait()
}

var _ layer.IncomingHandler = (*Handler)(nil)
