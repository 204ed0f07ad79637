package portforward

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/kwarp-dev/kwarp/agent/api/tunnel"
	"github.com/kwarp-dev/kwarp/core/clusterdial"
	"github.com/kwarp-dev/kwarp/internal/splice"
)

// Dialer opens a connection from the pod (clusterdial.Dialer in a session).
type Dialer interface {
	Dial(ctx context.Context, network, address string) (*clusterdial.Conn, error)
}

// UDPIdle is how long a UDP client's flow lives without a datagram either way.
const UDPIdle = 2 * time.Minute

// Forwarder holds the local listeners of a port-forward.
type Forwarder struct {
	specs []Spec
	tcp   map[int]net.Listener   // by spec index
	udp   map[int]net.PacketConn // by spec index
	log   zerolog.Logger
}

// Listen binds every spec before anything is asked of the cluster, so a port already in use
// fails at once, naming the port.
func Listen(specs []Spec, log zerolog.Logger) (*Forwarder, error) {
	f := &Forwarder{specs: specs, tcp: map[int]net.Listener{}, udp: map[int]net.PacketConn{}, log: log}
	for i, s := range specs {
		addr := netip.AddrPortFrom(s.Bind, uint16(s.LocalPort)).String()
		var err error
		if s.UDP {
			var pc net.PacketConn
			if pc, err = net.ListenPacket("udp", addr); err == nil {
				f.udp[i] = pc
				f.specs[i].LocalPort = pc.LocalAddr().(*net.UDPAddr).Port
			}
		} else {
			var ln net.Listener
			if ln, err = net.Listen("tcp", addr); err == nil {
				f.tcp[i] = ln
				f.specs[i].LocalPort = ln.Addr().(*net.TCPAddr).Port
			}
		}
		if err != nil {
			f.Close()
			if errors.Is(err, syscall.EADDRINUSE) {
				return nil, fmt.Errorf("local port %d (%s) is already in use: pick another with -L LOCAL:%s", s.LocalPort, s.Network(), s.Remote())
			}
			return nil, fmt.Errorf("listen on %s for -L %s: %w", addr, s.Remote(), err)
		}
	}
	return f, nil
}

// Specs are the specs with the local ports actually bound.
func (f *Forwarder) Specs() []Spec { return f.specs }

// Close closes the listeners; connections being served end with Serve's context.
func (f *Forwarder) Close() {
	for _, ln := range f.tcp {
		ln.Close()
	}
	for _, pc := range f.udp {
		pc.Close()
	}
}

// Serve forwards until ctx ends, then closes the listeners and every connection.
func (f *Forwarder) Serve(ctx context.Context, d Dialer) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	for i, ln := range f.tcp {
		wg.Add(1)
		go func() { defer wg.Done(); f.serveTCP(ctx, f.specs[i], ln, d) }()
	}
	for i, pc := range f.udp {
		wg.Add(1)
		go func() { defer wg.Done(); f.serveUDP(ctx, f.specs[i], pc, d) }()
	}
	<-ctx.Done()
	f.Close()
	wg.Wait()
}

func (f *Forwarder) serveTCP(ctx context.Context, s Spec, ln net.Listener, d Dialer) {
	var conns sync.WaitGroup
	defer conns.Wait()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() == nil && !errors.Is(err, net.ErrClosed) {
				f.log.Warn().Err(err).Str("forward", s.String()).Msg("accept")
			}
			return
		}
		conns.Add(1)
		go func() {
			defer conns.Done()
			remote, err := d.Dial(ctx, "tcp", s.Remote())
			if err != nil {
				// the client sees its connection closed, as with kubectl when the pod refuses
				f.log.Warn().Err(err).Str("forward", s.String()).Msg("connection through the pod failed")
				c.Close()
				return
			}
			stop := context.AfterFunc(ctx, func() { c.Close(); remote.Close() })
			defer stop()
			splice.Conns(c, remote, 0)
		}()
	}
}

// serveUDP gives each client address its own flow through the pod, as a connected UDP
// socket in the pod would be.
func (f *Forwarder) serveUDP(ctx context.Context, s Spec, pc net.PacketConn, d Dialer) {
	type flow struct {
		conn *clusterdial.Conn
		idle *time.Timer // closes the flow after UDPIdle without a datagram either way
	}
	var mu sync.Mutex
	flows := map[string]*flow{}
	var wg sync.WaitGroup
	defer func() {
		mu.Lock()
		for _, fl := range flows {
			fl.idle.Stop()
			fl.conn.Close()
		}
		mu.Unlock()
		wg.Wait()
	}()
	buf := make([]byte, tunnel.MaxDatagram)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			return
		}
		key := from.String()
		mu.Lock()
		fl := flows[key]
		mu.Unlock()
		if fl == nil {
			c, err := d.Dial(ctx, "udp", s.Remote())
			if err != nil {
				f.log.Warn().Err(err).Str("forward", s.String()).Msg("udp flow through the pod failed")
				continue
			}
			fl = &flow{conn: c, idle: time.AfterFunc(UDPIdle, func() { c.Close() })}
			mu.Lock()
			flows[key] = fl
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() {
					mu.Lock()
					delete(flows, key)
					mu.Unlock()
					c.Close()
				}()
				back := make([]byte, tunnel.MaxDatagram)
				for {
					m, err := tunnel.ReadDatagram(c, back)
					if err != nil {
						return
					}
					fl.idle.Reset(UDPIdle)
					if _, err := pc.WriteTo(back[:m], from); err != nil {
						return
					}
				}
			}()
		}
		fl.idle.Reset(UDPIdle)
		if err := tunnel.WriteDatagram(fl.conn, buf[:n]); err != nil {
			fl.conn.Close()
		}
	}
}
