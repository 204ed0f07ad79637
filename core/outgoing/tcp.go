package outgoing

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kwarp-dev/kwarp/core/dnsroute"
	"github.com/kwarp-dev/kwarp/layer"
)

// tcpFlow is one carried TCP connection: the pod's side (or the DNS router, for a
// nameserver) and, once paired, the accepted end of the process's socket.
type tcpFlow struct {
	dst      netip.AddrPort // as the process gave it
	podLocal netip.AddrPort
	key      netip.AddrPort // the process socket's local address, normalized
	remote   Conn           // nil for DNS
	dns      bool

	// Set under Handler.mu.
	timer *time.Timer
	local *net.TCPConn

	closeOnce sync.Once
}

// close closes both ends.
func (f *tcpFlow) close() {
	f.closeOnce.Do(func() {
		if f.timer != nil {
			f.timer.Stop()
		}
		if f.remote != nil {
			_ = f.remote.Close()
		}
		if f.local != nil {
			_ = f.local.Close()
		}
	})
}

// abort closes both ends, the process's with a reset: the connection broke, and the process
// must see ECONNRESET rather than a clean end of data.
func (f *tcpFlow) abort() {
	if f.local != nil {
		_ = f.local.SetLinger(0)
	}
	f.close()
}

type parkedConn struct {
	conn  *net.TCPConn
	timer *time.Timer
}

func (h *Handler) connectTCP(ctx context.Context, sock *os.File, dst netip.AddrPort) error {
	si, err := inspect(sock)
	if err != nil {
		return errnoOf(err, "outgoing: connect to %s", dst)
	}
	if si.connected {
		// A connect the supervisor saw interrupted by a signal is restarted and trapped
		// again on a socket this Handler already connected: the first attempt's flow stands.
		if h.isListener(si.peer) && h.hasFlow(normalize(si.local)) {
			return nil
		}
		return unix.EISCONN
	}
	target, err := h.listenerFor(si.family, dst)
	if err != nil {
		return err
	}
	f := &tcpFlow{dst: dst, dns: h.dns != nil && h.table.IsNameserver(dst)}
	if !f.dns {
		dctx, cancel := context.WithCancel(ctx)
		defer cancel()
		stop := context.AfterFunc(h.ctx, cancel)
		defer stop()
		start := time.Now()
		// The pod has no use for the process's socket family: it gets IPv4 as IPv4.
		conn, podLocal, err := h.remote.Dial(dctx, layer.TCP, normalize(dst))
		if err != nil {
			h.log.Debug().Err(err).Str("dst", dst.String()).Dur("took", time.Since(start)).Msg("outgoing: the pod's connect failed")
			return errnoOf(err, "outgoing: connect to %s in the pod", dst)
		}
		f.remote, f.podLocal = conn, inForm(podLocal, dst.Addr().Is4In6())
		h.log.Debug().Str("dst", dst.String()).Str("pod_local", podLocal.String()).Dur("took", time.Since(start)).Msg("outgoing: connected in the pod")
	}
	cerr := connectSock(ctx, sock, target, si.nonblock)
	if cerr != nil && cerr != unix.EINPROGRESS {
		f.close()
		return errnoOf(cerr, "outgoing: connect the process's socket to the core")
	}
	local, err := localAddr(sock)
	if err != nil {
		f.close()
		return errnoOf(err, "outgoing: connect to %s", dst)
	}
	f.key = normalize(local)
	if err := h.register(f); err != nil {
		return err
	}
	return cerr
}

// listenerFor is the address of the listener a socket of family connects to, for dst.
func (h *Handler) listenerFor(family int, dst netip.AddrPort) (unix.Sockaddr, error) {
	if dst.Addr().Unmap().Is4() {
		return toSockaddr(h.l4addr, family)
	}
	if family != unix.AF_INET6 {
		return nil, unix.EAFNOSUPPORT
	}
	if h.l6 == nil {
		return nil, unix.ENETUNREACH // no IPv6 loopback: this machine has no IPv6 at all
	}
	return toSockaddr(h.l6addr, family)
}

func (h *Handler) isListener(ap netip.AddrPort) bool {
	ap = normalize(ap)
	return ap == h.l4addr || (h.l6 != nil && ap == h.l6addr)
}

func (h *Handler) hasFlow(key netip.AddrPort) bool {
	h.mu.RLock()
	defer h.mu.RUnlock()
	_, ok := h.flows[key]
	return ok
}

// register makes f known by its socket's address and pairs it with its accepted connection
// if that came first, or waits for it.
func (h *Handler) register(f *tcpFlow) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		f.close()
		return errClosed
	}
	if old, ok := h.waiting[f.key]; ok {
		// The address was reused while the old flow still waited: it can never pair now.
		delete(h.waiting, f.key)
		old.close()
	}
	h.flows[f.key] = f
	h.all[f] = struct{}{}
	if pc, ok := h.parked[f.key]; ok {
		delete(h.parked, f.key)
		pc.timer.Stop()
		h.startLocked(f, pc.conn)
		return nil
	}
	h.waiting[f.key] = f
	f.timer = time.AfterFunc(h.pairTimeout, func() {
		h.mu.Lock()
		if h.waiting[f.key] != f {
			h.mu.Unlock() // paired (or closed) while the timer fired
			return
		}
		delete(h.waiting, f.key)
		if h.flows[f.key] == f {
			delete(h.flows, f.key)
		}
		delete(h.all, f)
		h.mu.Unlock()
		h.log.Debug().Str("dst", f.dst.String()).Str("local", f.key.String()).Msg("outgoing: the process's socket never reached the core; connection dropped")
		f.close()
	})
	return nil
}

// accept takes the loopback connections of the process's sockets and pairs them with their
// flows.
func (h *Handler) accept(l *net.TCPListener) {
	defer h.wg.Done()
	backoff := 5 * time.Millisecond
	for {
		c, err := l.AcceptTCP()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// EMFILE and the like: the pending connection waits in the backlog.
			h.log.Warn().Err(err).Msg("outgoing: accept failed")
			select {
			case <-h.ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = 5 * time.Millisecond
		key := normalize(c.RemoteAddr().(*net.TCPAddr).AddrPort())
		h.mu.Lock()
		switch {
		case h.closed:
			_ = c.Close()
		case h.waiting[key] != nil:
			f := h.waiting[key]
			delete(h.waiting, key)
			f.timer.Stop()
			h.startLocked(f, c)
		default:
			if old, ok := h.parked[key]; ok {
				old.timer.Stop()
				_ = old.conn.Close()
			}
			pc := &parkedConn{conn: c}
			pc.timer = time.AfterFunc(h.pairTimeout, func() {
				h.mu.Lock()
				if h.parked[key] != pc {
					h.mu.Unlock() // claimed while the timer fired
					return
				}
				delete(h.parked, key)
				h.mu.Unlock()
				_ = c.Close()
			})
			h.parked[key] = pc
		}
		h.mu.Unlock()
	}
}

// startLocked runs a paired flow. h.mu is held and h is not closed, so the goroutines it adds
// are waited for by Close.
func (h *Handler) startLocked(f *tcpFlow, c *net.TCPConn) {
	f.local = c
	if f.dns {
		h.wg.Add(1)
		go h.serveDNS(f)
		return
	}
	h.wg.Add(2)
	var left atomic.Int32
	left.Store(2)
	end := func(err error) {
		if err != nil {
			f.abort()
		}
		if left.Add(-1) == 0 {
			f.close()
			h.forget(f)
		}
	}
	// The process's end of data becomes the pod side's, and the other way round: each
	// direction ends on its own (half-close), the connection when both have.
	go func() {
		defer h.wg.Done()
		_, err := io.Copy(f.remote, c)
		if err == nil {
			err = f.remote.CloseWrite()
		}
		end(err)
	}()
	go func() {
		defer h.wg.Done()
		_, err := io.Copy(c, f.remote)
		if err == nil {
			err = c.CloseWrite()
		}
		end(err)
	}()
}

func (h *Handler) forget(f *tcpFlow) {
	h.mu.Lock()
	if h.flows[f.key] == f {
		delete(h.flows, f.key)
	}
	delete(h.all, f)
	h.mu.Unlock()
}

// dnsTCPIdle closes a DNS connection the process keeps open without asking anything, as
// servers do (RFC 7766 suggests seconds).
const dnsTCPIdle = 30 * time.Second

// serveDNS answers DNS over TCP to a pod nameserver, one length-prefixed query at a time
// (pipelined queries are read in turn and answered in order).
func (h *Handler) serveDNS(f *tcpFlow) {
	defer h.wg.Done()
	defer h.forget(f)
	defer f.close()
	for {
		if err := f.local.SetReadDeadline(time.Now().Add(dnsTCPIdle)); err != nil {
			return
		}
		q, err := dnsroute.ReadTCPMessage(f.local)
		if err != nil {
			return
		}
		ans, err := h.dns.Answer(h.ctx, f.dst, q, true)
		if err != nil {
			h.log.Debug().Err(err).Str("server", f.dst.String()).Msg("outgoing: DNS over TCP: query dropped, connection closed")
			return
		}
		if err := dnsroute.WriteTCPMessage(f.local, ans); err != nil {
			return
		}
	}
}

func (h *Handler) lookupTCP(local, peer netip.AddrPort) (layer.Flow, bool) {
	if peer.IsValid() && !h.isListener(peer) {
		return layer.Flow{}, false
	}
	h.mu.RLock()
	f, ok := h.flows[normalize(local)]
	h.mu.RUnlock()
	if !ok {
		return layer.Flow{}, false
	}
	return layer.Flow{Remote: f.dst, PodLocal: f.podLocal}, true
}
