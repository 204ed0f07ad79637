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

// NetHandler answers the trapped socket calls of the process tree: connect, sendto and
// sendmsg with a destination, recvfrom and recvmsg on sockets that receive through the core,
// getpeername and getsockname. The core implements it; a session without outgoing traffic
// passes none and the layer traps no socket call.
//
// The layer only ever hands the handler a duplicate of the process's socket taken with
// pidfd_getfd: the same open file description, so socket options, the bound address and
// O_NONBLOCK are the process's own, and whatever the handler does to it (connect, send) the
// process's socket has done. Calls on sockets that are not AF_INET or AF_INET6 never reach
// the handler.
type NetHandler interface {
	// RouteOutgoing decides, without I/O, whether a connection or datagram to dst goes
	// through the cluster (Remote) or stays on this machine (Local). It runs for every
	// trapped connect and sendto: it must be fast and must not block.
	RouteOutgoing(p Proto, dst netip.AddrPort) Route

	// Connect takes the process's socket to dst through the cluster. TCP: it learns the
	// remote outcome first, then connects sock to the core. UDP: it connects sock to the
	// relay that stands for dst. The returned error is what the process's connect returns:
	// nil; unix.EINPROGRESS for a non-blocking socket whose local connect is under way; or
	// the unix.Errno the pod's connect gave (ECONNREFUSED, ETIMEDOUT, ENETUNREACH…). Any
	// other error becomes ECONNREFUSED and is logged. The layer closes sock afterwards.
	Connect(ctx context.Context, p Proto, sock *os.File, dst netip.AddrPort) error

	// Relay returns the local address that stands for dst for datagrams sent without a
	// connection (sendto, sendmsg with a name): the layer sends the process's datagram there,
	// from the process's socket, and answers with the byte count.
	Relay(ctx context.Context, dst netip.AddrPort) (netip.AddrPort, error)

	// Lookup finds the flow of a socket whose kernel addresses are local and peer (peer may
	// be a relay's or the core's address; for a datagram received, the datagram's source).
	// ok is false for what the core does not carry: the layer then lets the call through
	// (getpeername, getsockname) or leaves the source address as it is (recvfrom).
	Lookup(p Proto, local, peer netip.AddrPort) (f Flow, ok bool)

	// Relayed says whether a UDP socket bound to local may receive datagrams from a relay:
	// then the layer serves its recvfrom and recvmsg itself, to rewrite each datagram's
	// source with Lookup. Otherwise those calls run untouched.
	Relayed(local netip.AddrPort) bool
}
