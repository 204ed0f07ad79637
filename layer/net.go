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
// "ping" sockets), never reach the handler (MPTCP counts as TCP: it is TCP to a peer that does
// not speak it, and Go makes its listeners MPTCP by default), nor do IPv6 destinations with a scope id
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

// IncomingHandler is told of the process's TCP listeners, so that the core can take the same
// ports' traffic in the pod (steal or mirror), and names the clients of the connections the
// core delivers. A session without incoming traffic passes none and the layer traps nothing
// for it (seccomp.IncomingRules is the filter's part).
//
// # Delivering a connection
//
// The core delivers a pod connection by connecting to the process's listener from this
// machine (Listener.Dial says where); the process accepts it as any other, and its kernel peer
// is the core's socket (127.0.0.1:ephemeral). The layer serves accept and accept4 itself when
// the process asks for the peer's address (on a duplicate of the listener, with the caller's
// flags; the new socket is installed in the process with ADDFD) and answers with the pod
// client's address instead, as Delivered names it; getpeername and getsockname on the
// accepted socket ask Delivered too. A program that accepts without asking for the address
// (node: accept4(fd, NULL, NULL, …)) is not trapped and learns it from getpeername.
//
// For Delivered to know a connection by the time the process accepts it, the core binds its
// delivering socket first (127.0.0.1:0, or ::1 for an IPv6-only listener), records the
// mapping under that local address, and only then connects: the handshake completes in the
// kernel, and the process may accept before the core's connect has returned. It forgets the
// mapping when its socket closes.
//
// A connection taken from the listener that the process then cannot get is reset (SO_LINGER
// 0): its accept failed after the connection was taken (a full fd table: EMFILE; an address
// buffer it cannot write: EFAULT, which the kernel's own accept also answers by dropping the
// connection), or the caller went away (killed, or, without WAIT_KILLABLE_RECV, interrupted)
// between the last check and the hand-over. The core sees its delivering socket reset and
// resets the pod client. The kernel's accept leaves a connection queued on EMFILE; the layer
// cannot tell beforehand that the fd table is full.
//
// # The listener's end
//
// close is not trapped, and the layer keeps no duplicate of a listener once a call is served
// (that would keep the port listening after the process closed it). The core learns that a
// listener is gone in two ways: a delivery's connect fails with ECONNREFUSED (nobody
// listens on the port any more: unsubscribe, and refuse or reset the pod client), and, to
// unsubscribe without waiting for a connection, ListeningSockets every few seconds no longer
// lists its Inode. When the whole process tree has exited the session ends anyway.
//
// Methods may be called from many goroutines at once.
type IncomingHandler interface {
	// Listening says a TCP (or MPTCP) socket of the process now listens: its listen
	// succeeded (the process has its answer already). It is called once per socket, not for
	// a listen that only changes the backlog of a socket already listening (two threads
	// racing to listen on one socket may report it twice, with the same Inode); several
	// sockets may listen on one port (SO_REUSEPORT; an IPv4 and an IPv6 socket), each is
	// reported. A listener on a port the process did not choose (port 0, or no bind) is
	// reported with the kernel's port: the core decides which ports it subscribes to. ctx
	// ends when the supervisor stops. Listening may take a moment (it runs on a goroutine
	// of its own, holding up no other call), but subscribing in the pod belongs in the
	// background.
	Listening(ctx context.Context, l Listener)

	// Delivered names the connection of the process's socket whose kernel addresses are local
	// (the listener's side) and peer (the core's delivering socket), when the core delivered
	// it: f.Remote is the pod client's address (what accept and getpeername answer) and
	// f.PodLocal the address the client reached in the pod (what getsockname answers;
	// invalid: the local socket's address is left). ok is false for a connection the core did
	// not deliver (a local client): the kernel's addresses are left alone. It runs for every
	// accept served and every getpeername and getsockname that Lookup did not answer: it must
	// be fast and must not block.
	Delivered(local, peer netip.AddrPort) (f Flow, ok bool)
}

// Listener is a TCP socket of the process that listens.
type Listener struct {
	// Local is the address it listens on, as getsockname says after listen: the wildcard
	// (0.0.0.0, ::) or one address, and the port. Never IPv4-mapped (an AF_INET6 socket
	// bound to ::ffff:127.0.0.1 is reported as 127.0.0.1).
	Local netip.AddrPort
	// V6Only: an IPv6 socket that takes no IPv4 connections (IPV6_V6ONLY), which matters for
	// the wildcard: [::] then takes only IPv6.
	V6Only bool
	// Inode is the socket's inode number (fstat's st_ino; ino: in ss -e): unique among open
	// sockets, and not reused as fd numbers and ports are (the counter wraps after 2^32
	// sockets). ListeningSockets lists it while the socket listens.
	Inode uint64
	// Pid is the process (TGID) that called listen; the socket may be shared with others.
	Pid int
}

// Dial is the address the core connects to for a delivery: Local, with a wildcard replaced by
// the loopback address of its family (127.0.0.1 for 0.0.0.0 and for a dual-stack [::], ::1
// for an IPv6-only [::]).
func (l Listener) Dial() netip.AddrPort {
	a := l.Local.Addr()
	if a.IsUnspecified() {
		if a.Is6() && l.V6Only {
			a = netip.IPv6Loopback()
		} else {
			a = netip.AddrFrom4([4]byte{127, 0, 0, 1})
		}
	}
	return netip.AddrPortFrom(a, l.Local.Port())
}
