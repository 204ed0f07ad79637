package layer

import (
	"context"
	"net/netip"
	"os"
)

// Proto is the transport of a trapped socket call, as the outgoing rules tell them apart.
type Proto uint8

const (
	TCP Proto = iota + 1
	UDP
)

func (p Proto) String() string {
	switch p {
	case TCP:
		return "tcp"
	case UDP:
		return "udp"
	}
	return "unknown"
}

// Flow is what the core knows of a socket it carries through the cluster.
type Flow struct {
	// Remote is the address the process asked for (connect's or sendto's destination).
	Remote netip.AddrPort
	// PodLocal is the socket's address on the pod's side (what getsockname would say in the
	// pod); invalid when unknown, and then getsockname reports the local socket's address.
	PodLocal netip.AddrPort
}

// NetHandler answers the trapped socket calls of the process tree: connect; sendto, sendmsg
// and sendmmsg with a destination; recvfrom, recvmsg and recvmmsg on sockets that receive
// through the core; getpeername and getsockname. The core implements it; a session without
// outgoing traffic passes none and the layer traps no socket call (seccomp.NetRules is the
// filter's part for it).
//
// The layer only ever hands the handler a duplicate of the process's socket taken with
// pidfd_getfd: the same open file description, so socket options, the bound address and
// O_NONBLOCK are the process's own, and whatever the handler does to it (connect, send) the
// process's socket has done. For the same reason the handler must not change the file's
// flags: net.FileConn sets O_NONBLOCK on it (the process's socket would turn non-blocking
// under it). Use unix calls on the descriptor through sock.SyscallConn, and expect
// EINPROGRESS and EAGAIN when the process's socket is non-blocking.
//
// Calls on sockets that are not AF_INET or AF_INET6, or not TCP or UDP (SCTP, UDP-Lite, ICMP
// "ping" sockets), never reach the handler, nor do IPv6 destinations with a scope id
// (link-local addresses name one of this machine's interfaces). Addresses the layer passes
// are never IPv4-mapped: a dual-stack AF_INET6 socket's ::ffff:a.b.c.d is passed as
// a.b.c.d, so the socket's family may differ from dst's (connect such a socket to the
// IPv4-mapped form of an IPv4 address). The layer answers in the socket's own family too.
//
// Methods may be called from many goroutines at once.
type NetHandler interface {
	// RouteOutgoing decides, without I/O, whether a connection or datagram to dst goes
	// through the cluster (Remote) or stays on this machine (Local). It runs for every
	// trapped connect and every send with a destination: it must be fast and must not block.
	RouteOutgoing(p Proto, dst netip.AddrPort) Route

	// Connect takes the process's socket to dst through the cluster. TCP: it learns the
	// remote outcome first, then connects sock to the core. UDP: it connects sock to the
	// relay that stands for dst. The returned error is what the process's connect returns:
	// nil; unix.EINPROGRESS for a non-blocking socket whose local connect is under way; or
	// the unix.Errno the pod's connect gave (ECONNREFUSED, ETIMEDOUT, ENETUNREACH…). Any
	// other error becomes ECONNREFUSED and is logged. The layer closes sock afterwards.
	//
	// ctx ends when the supervisor stops. A signal the calling thread handles while Connect
	// runs ends the thread's wait as it ends the kernel's connect (EINTR, or the call
	// restarts), and Connect goes on in the background, as the kernel's connect does; a
	// connect on the same socket meanwhile (the restarted one) waits for it and gets its
	// result. Once the socket is no longer closed (connecting, connected) the kernel answers a
	// repeated TCP connect itself (EALREADY, EISCONN): Connect runs at most once per attempt.
	Connect(ctx context.Context, p Proto, sock *os.File, dst netip.AddrPort) error

	// Relay returns the local address that stands for dst for datagrams sent without a
	// connection (sendto, sendmsg with a name): the layer sends the process's datagram there,
	// from the process's socket, and answers with the byte count. An error is what the
	// process's send returns: a unix.Errno as it is, anything else ENETUNREACH, logged. It is
	// called for every such datagram: after the first, it should answer from memory.
	Relay(ctx context.Context, dst netip.AddrPort) (netip.AddrPort, error)

	// Lookup finds the flow of a socket whose kernel addresses are local and peer (peer may
	// be a relay's or the core's address; for a datagram received, the datagram's source).
	// ok is false for what the core does not carry: the layer then lets the call through
	// (getpeername, getsockname) or leaves the source address as it is (recvfrom). A socket
	// without a peer (unconnected UDP) is never looked up for getsockname or getpeername. It
	// must be fast and must not block.
	Lookup(p Proto, local, peer netip.AddrPort) (f Flow, ok bool)

	// Relayed says whether a UDP socket bound to local (as getsockname says it: often the
	// wildcard address with the port) may receive datagrams from a relay: then the layer
	// serves its recvfrom, recvmsg and recvmmsg itself, to rewrite each datagram's source
	// with Lookup. Otherwise those calls run untouched. The layer also remembers each socket
	// it sent a datagram from to a relay and serves its receives without asking, so a
	// receive right after the first send does not depend on the relay having read that
	// datagram yet; Relayed is what tells the sockets Connect connected to a relay. It runs
	// for every trapped receive that asks for the source: it must be fast and must not block.
	Relayed(local netip.AddrPort) bool
}
