package supervisor

import (
	"bytes"
	"context"
	"errors"
	"net/netip"
	"os"
	"runtime/debug"
	"strconv"
	"time"
	"unsafe"

	"github.com/kwarp-dev/kwarp/layer"
	"github.com/kwarp-dev/kwarp/layer/seccomp"
	"golang.org/x/sys/unix"
)

// Socket calls, served through the NetHandler.
//
// Every call works on a duplicate of the process's socket taken with pidfd_getfd: the same
// open file description, so what the supervisor does with it (connect, send, receive) the
// process's socket has done, with its options, its bound address and its O_NONBLOCK.
//
//	connect      AF_INET/AF_INET6 address, TCP or UDP socket (SO_DOMAIN, SO_TYPE, SO_PROTOCOL)
//	             → RouteOutgoing: Local CONTINUE; Remote NetHandler.Connect on the duplicate,
//	             its errno is the answer (one Connect per socket at a time: a connect
//	             restarted after a signal waits for the one under way). A TCP socket that is
//	             not closed (connected, connecting) is the kernel's to answer (EISCONN,
//	             EALREADY).
//	sendto       with an address (the filter traps no other), sendmsg with a msg_name,
//	sendmsg      sendmmsg with any: UDP to a Remote destination → Relay, then the payload
//	sendmmsg     (read from the process, 64 KiB at most, as a datagram can hold) is sent from
//	             the duplicate to the relay, with the caller's flags and control messages;
//	             the answer is the byte count (sendmmsg: each msg_len, and the count). TCP
//	             with MSG_FASTOPEN to a Remote destination: Connect, then the data is sent on
//	             the connection (a non-blocking connect under way is waited for, since the
//	             data must not be lost). Anything else runs untouched.
//	recvfrom     with a source address (the filter traps no other), recvmsg and recvmmsg with
//	recvmsg      a msg_name, on a UDP socket that is relayed (the supervisor sent from it to a
//	recvmmsg     relay, or NetHandler.Relayed says so for its local address): the receive
//	             is served on the duplicate, and the datagram's source is rewritten with
//	             Lookup (the relay's address becomes the remote one). Blocking is emulated:
//	             poll, re-checking that the caller still waits, then a non-blocking receive,
//	             so a datagram is never consumed for a caller that has gone. O_NONBLOCK,
//	             MSG_DONTWAIT and SO_RCVTIMEO answer EAGAIN as the kernel would; MSG_PEEK and
//	             MSG_TRUNC are passed on. MSG_ERRQUEUE runs untouched. recvmmsg answers the
//	             first datagram when it comes and whatever else is already queued (up to 64),
//	             as MSG_WAITFORONE would; its timeout is ignored, as the kernel checks it only
//	             after a datagram anyway.
//	getpeername  on a TCP or UDP socket with a peer whose flow Lookup knows (or, for TCP,
//	getsockname  IncomingHandler.Delivered: an accepted connection the core delivered): the
//	             flow's Remote (getpeername) or PodLocal (getsockname, when known), in the
//	             socket's family, truncated to the caller's addrlen with the full length
//	             written back, as the kernel does. Otherwise CONTINUE.
//	listen       see incoming.go: served with an IncomingHandler.
//	accept
//	accept4
//
// Everything read from the process is checked with ID_VALID before the supervisor acts on
// it. Calls that may block (Connect, Relay, sends, receives) hand the receiver role on first.
// A connect or receive that waits also watches the caller for signals, which
// WAIT_KILLABLE_RECV would otherwise hold back until the answer (see waitFor): Ctrl-C
// reaches a Python program blocked in recvfrom as it would without kwarp.

// Limits of what the supervisor copies for one socket call.
const (
	// maxPayload is more than any UDP datagram carries (65507 bytes over IPv4, 65527 over
	// IPv6): a larger send gets EMSGSIZE, as from the kernel. A TCP Fast Open send is cut to
	// it (a short write, which stream senders handle).
	maxPayload = 1 << 16
	// maxControl bounds control messages; the kernel's own bound (optmem_max) is about as
	// large, and UDP's messages (IP_PKTINFO, timestamps, UDP_SEGMENT) take a few dozen bytes.
	maxControl = 16 << 10
	// maxIov is UIO_MAXIOV: the kernel refuses more iovecs with EMSGSIZE.
	maxIov = 1024
	// maxBatch is how many messages of one sendmmsg or recvmmsg are served at once; both
	// calls answer how many they did, and callers loop for the rest.
	maxBatch = 64
	// sockaddrMax is sizeof(struct sockaddr_storage).
	sockaddrMax = 128
	// pollEvery is how often a waiting call checks that its caller still waits and has no
	// signal to handle: the kernel tells neither.
	pollEvery = 100 * time.Millisecond
)

const (
	sizeofSockaddrIn  = 16
	sizeofSockaddrIn6 = 28
	sin6LenRFC2133    = 24 // the shortest sockaddr_in6 the kernel takes: no scope id
	// pidfdThread is PIDFD_THREAD (6.9): a pidfd for a thread rather than a thread group.
	pidfdThread = unix.O_EXCL
	// tcpClose is TCP_CLOSE, the tcpi_state of a socket neither connected nor connecting.
	tcpClose = 7
	// Offsets in struct msghdr and struct mmsghdr of what the kernel writes back.
	offMsgNamelen    = 8
	offMsgControllen = 40
	offMsgFlags      = 48
	offMmsgLen       = 56
)

// msghdr is struct msghdr of the 64-bit ABIs (amd64, arm64) as the process lays it out.
type msghdr struct {
	Name       uint64
	Namelen    uint32
	_          uint32
	Iov        uint64
	Iovlen     uint64
	Control    uint64
	Controllen uint64
	Flags      int32
	_          int32
}

// mmsghdr is struct mmsghdr: a msghdr and the byte count the kernel writes back.
type mmsghdr struct {
	Hdr msghdr
	Len uint32
	_   uint32
}

// iovec is struct iovec in the process.
type iovec struct {
	Base uint64
	Len  uint64
}

var (
	_ [unsafe.Sizeof(msghdr{}) - 56]struct{}
	_ [56 - unsafe.Sizeof(msghdr{})]struct{}
	_ [unsafe.Sizeof(mmsghdr{}) - 64]struct{}
	_ [64 - unsafe.Sizeof(mmsghdr{})]struct{}
)

// netBufs are a worker's buffers for socket calls, made on its first one.
type netBufs struct {
	payload [maxPayload]byte
	ctrl    [maxControl]byte
	iov     [maxIov]iovec
	mmsg    [maxBatch]mmsghdr
	remote  [maxBatch]bool // sendmmsg: message i goes to a relay
	dst     [maxBatch]netip.AddrPort
	name    [sockaddrMax]byte // an address as read from the process or the kernel
	out     [sockaddrMax]byte // an address as written to the process or the kernel
	word    [8]byte
}

// errGone: the caller stopped waiting (or the supervisor is stopping); nobody reads an answer.
var errGone = errors.New("the caller has gone")

// netCall serves a trapped socket call.
func (s *Supervisor) netCall(ctx context.Context, w *worker, st *serving, k kind) {
	var served bool
	switch k {
	case kListen, kAccept, kAccept4:
		served = s.Incoming != nil
	case kGetpeername, kGetsockname:
		served = s.Net != nil || s.Incoming != nil
	default:
		served = s.Net != nil
	}
	if !served {
		s.netPass(w.n.ID)
		return
	}
	if w.net == nil {
		w.net = new(netBufs)
	}
	switch k {
	case kConnect:
		s.connect(ctx, w, st)
	case kSendto, kSendmsg:
		s.send(ctx, w, st, k)
	case kSendmmsg:
		s.sendmmsg(ctx, w, st)
	case kRecvfrom, kRecvmsg:
		s.recv(ctx, w, st, k)
	case kRecvmmsg:
		s.recvmmsg(ctx, w, st)
	case kGetpeername, kGetsockname:
		s.sockName(w, k)
	case kListen:
		s.listen(ctx, w, st)
	case kAccept, kAccept4:
		s.accept(ctx, w, st, k)
	default:
		s.netPass(w.n.ID)
	}
}

// i32 is an int argument: the kernel ignores the register's upper half.
func i32(v uint64) int32 { return int32(uint32(v)) }

// connect serves connect(fd, addr, addrlen).
func (s *Supervisor) connect(ctx context.Context, w *worker, st *serving) {
	id, tid, a := w.n.ID, int(w.n.Pid), &w.n.Data.Args
	dst, fam, ok := w.readSockaddr(tid, a[1], int64(i32(a[2])))
	if !ok {
		s.netPass(id)
		return
	}
	so, ok := s.openSock(tid, i32(a[0]))
	if !ok {
		s.netPass(id)
		return
	}
	defer so.close()
	// A family the socket does not have (EAFNOSUPPORT, EINVAL) and a TCP socket already
	// connected or connecting (EISCONN, EALREADY) are the kernel's to answer.
	if so.family != fam || (so.proto == layer.TCP && !tcpClosed(so.fd)) {
		s.netPass(id)
		return
	}
	if !s.routedRemote(w, id, so.proto, dst) {
		return
	}
	s.handOver(ctx, w, st)
	errno := s.netConnect(ctx, w, st, &so, dst)
	if errno == errnoGone {
		s.stats.gone.Add(1)
		return
	}
	if failure(errno) && errno != unix.EINPROGRESS {
		s.stats.netFailed.Add(1)
	}
	s.log.Debug().Str("call", "connect").Int("tid", tid).Stringer("proto", so.proto).Stringer("dst", dst).
		Str("result", errnoString(errno)).Msg("remote connect")
	s.replyErrno(id, errno)
}

// netConnect takes so to dst through NetHandler.Connect and returns the errno the process
// gets, or errnoGone.
//
// Connect waits for the pod, which may take long, and the caller may have a signal to handle
// meanwhile (Ctrl-C in a program that catches SIGINT; a program's interval timer): the wait
// then ends as a signal ends the kernel's connect (EINTR, or a restart after a SA_RESTART
// handler; see waitFor), while Connect goes on in the background, as the kernel's connect
// does. A connect on the same socket while one is under way (the restarted call) waits for
// that one rather than start another: cancelling and starting over would never finish for a
// program whose timer fires faster than the pod answers.
func (s *Supervisor) netConnect(ctx context.Context, w *worker, st *serving, so *sock, dst netip.AddrPort) unix.Errno {
	var stat unix.Stat_t
	if err := unix.Fstat(so.fd, &stat); err != nil {
		return errnoOf(err)
	}
	ino := stat.Ino
	s.connMu.Lock()
	c := s.connecting[ino]
	if c == nil {
		// Connect gets its own duplicate: so is closed when this call is answered, which may
		// be before Connect returns.
		fd, err := unix.FcntlInt(uintptr(so.fd), unix.F_DUPFD_CLOEXEC, 0)
		if err != nil {
			s.connMu.Unlock()
			s.log.Warn().Err(err).Msg("supervisor: duplicating a socket for Connect; the process sees ECONNREFUSED")
			return unix.ECONNREFUSED
		}
		c = &inflight{done: make(chan struct{})}
		if s.connecting == nil {
			s.connecting = map[uint64]*inflight{}
		}
		s.connecting[ino] = c
		st.wg.Add(1) // Serve waits for it: its ctx ends with Serve's
		go func() {
			defer st.wg.Done()
			defer func() {
				if r := recover(); r != nil {
					s.log.Error().Interface("panic", r).Str("stack", string(debug.Stack())).Msg("supervisor: NetHandler.Connect panicked; the process sees ECONNREFUSED")
					c.errno = unix.ECONNREFUSED
				}
				s.connMu.Lock()
				delete(s.connecting, ino)
				s.connMu.Unlock()
				close(c.done)
			}()
			f := os.NewFile(uintptr(fd), "kwarp-socket")
			defer f.Close()
			c.errno = s.connectErrno(s.Net.Connect(ctx, so.proto, f, dst), dst)
		}()
	}
	s.connMu.Unlock()

	t := time.NewTicker(pollEvery)
	defer t.Stop()
	var sig signalCheck
	for {
		select {
		case <-c.done:
			return c.errno
		case <-t.C:
		}
		if err := seccomp.IDValid(s.fd, w.n.ID); err != nil {
			return errnoGone
		}
		if errno := sig.check(int(w.n.Pid), false); errno != 0 {
			return errno
		}
	}
}

// inflight is a Connect under way; errno is set when done is closed.
type inflight struct {
	done  chan struct{}
	errno unix.Errno
}

// connectErrno is the errno Connect's result stands for.
func (s *Supervisor) connectErrno(err error, dst netip.AddrPort) unix.Errno {
	if err == nil {
		return 0
	}
	var errno unix.Errno
	if errors.As(err, &errno) && errno != 0 {
		return errno
	}
	s.logHandlerErr(err, "connect", dst)
	return unix.ECONNREFUSED
}

// send serves sendto(fd, buf, len, flags, dest, addrlen) and sendmsg(fd, msg, flags).
func (s *Supervisor) send(ctx context.Context, w *worker, st *serving, k kind) {
	id, tid, a := w.n.ID, int(w.n.Pid), &w.n.Data.Args
	nb := w.net
	var h msghdr
	var flags int
	var single *iovec
	if k == kSendto {
		h.Name, h.Namelen = a[4], uint32(a[5])
		nb.iov[0] = iovec{Base: a[1], Len: a[2]}
		single = &nb.iov[0]
		flags = int(i32(a[3]))
	} else {
		if w.mem.read(tid, a[1], bytesOf(&h)) != nil {
			s.netPass(id) // EFAULT, from the kernel
			return
		}
		flags = int(i32(a[2]))
	}
	if h.Name == 0 || h.Namelen == 0 || (single == nil && h.Iovlen > maxIov) {
		// no address: the socket's connection decides (already routed by connect)
		s.netPass(id)
		return
	}
	dst, fam, ok := w.readSockaddr(tid, h.Name, int64(min(h.Namelen, sockaddrMax)))
	if !ok {
		s.netPass(id)
		return
	}
	so, ok := s.openSock(tid, i32(a[0]))
	if !ok {
		s.netPass(id)
		return
	}
	defer so.close()
	// TCP takes an address only to open a connection (Fast Open); otherwise it ignores it
	// or refuses the send, which the kernel does as well as anyone.
	if so.family != fam || (so.proto == layer.TCP && (flags&unix.MSG_FASTOPEN == 0 || !tcpClosed(so.fd))) {
		s.netPass(id)
		return
	}
	if !s.routedRemote(w, id, so.proto, dst) {
		return
	}
	s.handOver(ctx, w, st)
	if so.proto == layer.TCP {
		s.fastOpen(ctx, w, st, &so, dst, &h, single, flags)
		return
	}
	name, errno := s.relayName(ctx, w, dst, so.family)
	var n int
	if errno == 0 {
		n, errno = s.sendFrom(w, &so, &h, single, name, flags, false)
	}
	if errno == errnoGone {
		s.stats.gone.Add(1)
		return
	}
	if errno != 0 {
		s.stats.netFailed.Add(1)
	} else {
		s.relayed.add(so.fd)
	}
	s.log.Debug().Str("call", seccomp.Name(int(w.n.Data.Nr))).Int("tid", tid).Stringer("dst", dst).
		Int("bytes", n).Str("result", errnoString(errno)).Msg("relayed send")
	s.answer(id, n, errno)
}

// errnoGone says the caller has gone (or the supervisor is stopping): nothing to answer.
const errnoGone = unix.Errno(0xffff)

// sendFrom reads the payload (the iovecs of h, or single) and control data of a message from
// the caller, checks that it still waits, and sends them from so to name.
func (s *Supervisor) sendFrom(w *worker, so *sock, h *msghdr, single *iovec, name []byte, flags int, stream bool) (int, unix.Errno) {
	tid := int(w.n.Pid)
	payload, errno := w.gather(tid, h, single, stream)
	if errno != 0 {
		return 0, errno
	}
	var oob []byte
	if single == nil && h.Control != 0 && h.Controllen > 0 {
		if h.Controllen > maxControl {
			return 0, unix.ENOBUFS // as the kernel says when it cannot allocate that much
		}
		oob = w.net.ctrl[:h.Controllen]
		if w.mem.read(tid, h.Control, oob) != nil {
			return 0, unix.EFAULT
		}
	}
	if err := seccomp.IDValid(s.fd, w.n.ID); err != nil {
		return 0, errnoGone
	}
	return sendmsgRaw(so.fd, payload, oob, name, flags)
}

// gather copies the payload of a message from the caller into w.net.payload. A datagram
// larger than any UDP can carry gets EMSGSIZE; a stream's payload is cut to maxPayload.
func (w *worker) gather(tid int, h *msghdr, single *iovec, stream bool) ([]byte, unix.Errno) {
	nb := w.net
	iovs, errno := w.readIovecs(tid, h, single)
	if errno != 0 {
		return nil, errno
	}
	total := 0
	for _, v := range iovs {
		if v.Len == 0 {
			continue
		}
		if v.Len > maxPayload || total+int(v.Len) > maxPayload {
			if !stream {
				return nil, unix.EMSGSIZE
			}
			v.Len = uint64(maxPayload - total)
		}
		if w.mem.read(tid, v.Base, nb.payload[total:total+int(v.Len)]) != nil {
			return nil, unix.EFAULT
		}
		total += int(v.Len)
		if total == maxPayload {
			break
		}
	}
	return nb.payload[:total], 0
}

// readIovecs reads the iovec array of h into w.net.iov, or returns single.
func (w *worker) readIovecs(tid int, h *msghdr, single *iovec) ([]iovec, unix.Errno) {
	if single != nil {
		return unsafe.Slice(single, 1), 0
	}
	if h.Iovlen > maxIov {
		return nil, unix.EMSGSIZE
	}
	iovs := w.net.iov[:h.Iovlen]
	if len(iovs) == 0 {
		return iovs, 0
	}
	if w.mem.read(tid, h.Iov, unsafe.Slice((*byte)(unsafe.Pointer(&iovs[0])), len(iovs)*int(unsafe.Sizeof(iovec{})))) != nil {
		return nil, unix.EFAULT
	}
	return iovs, 0
}

// fastOpen serves a TCP send with MSG_FASTOPEN to a Remote destination: the connection goes
// through Connect, then the data is sent on it. A non-blocking socket whose local connect is
// under way is waited for (the loopback connect to the core completes at once): the kernel
// would have queued the data, and answering EINPROGRESS without sending it would lose it.
func (s *Supervisor) fastOpen(ctx context.Context, w *worker, st *serving, so *sock, dst netip.AddrPort, h *msghdr, single *iovec, flags int) {
	id, tid := w.n.ID, int(w.n.Pid)
	errno := s.netConnect(ctx, w, st, so, dst)
	if errno == unix.EINPROGRESS {
		switch err := s.waitFor(w, st, so.fd, unix.POLLOUT, time.Time{}); {
		case errors.Is(err, errGone):
			s.stats.gone.Add(1)
			return
		case err != nil:
			errno = errnoOf(err)
		default:
			v, err := unix.GetsockoptInt(so.fd, unix.SOL_SOCKET, unix.SO_ERROR)
			errno = unix.Errno(v)
			if err != nil {
				errno = errnoOf(err)
			}
		}
	}
	var n int
	if errno == 0 {
		n, errno = s.sendFrom(w, so, h, single, nil, flags&^unix.MSG_FASTOPEN, true)
	}
	if errno == errnoGone {
		s.stats.gone.Add(1)
		return
	}
	if errno != 0 {
		s.stats.netFailed.Add(1)
	}
	s.log.Debug().Str("call", seccomp.Name(int(w.n.Data.Nr))).Int("tid", tid).Stringer("dst", dst).
		Int("bytes", n).Str("result", errnoString(errno)).Msg("remote fast open")
	s.answer(id, n, errno)
}

// relayName asks for the relay of dst and encodes it for a socket of family.
func (s *Supervisor) relayName(ctx context.Context, w *worker, dst netip.AddrPort, family int) ([]byte, unix.Errno) {
	r, err := s.Net.Relay(ctx, dst)
	if err != nil {
		var errno unix.Errno
		if errors.As(err, &errno) && errno != 0 {
			return nil, errno
		}
		s.logHandlerErr(err, "relay", dst)
		return nil, unix.ENETUNREACH
	}
	n := putSockaddr(w.net.out[:], family, r)
	if n == 0 {
		s.log.Warn().Stringer("dst", dst).Stringer("relay", r).Msg("supervisor: the relay's address does not fit the socket's family; the process sees ENETUNREACH")
		return nil, unix.ENETUNREACH
	}
	return w.net.out[:n], 0
}

// sendmmsg serves sendmmsg(fd, msgvec, vlen, flags). When no message of the first maxBatch
// goes to a Remote destination the kernel sends them all; otherwise the supervisor sends
// the batch from the duplicate, each message to its relay or to its own address.
func (s *Supervisor) sendmmsg(ctx context.Context, w *worker, st *serving) {
	id, tid, a := w.n.ID, int(w.n.Pid), &w.n.Data.Args
	nb := w.net
	vec, flags := a[1], int(i32(a[3]))
	cnt := min(int(uint32(a[2])), maxBatch)
	if cnt == 0 {
		s.netPass(id)
		return
	}
	hdrs, ok := w.readMmsghdrs(tid, vec, cnt)
	if !ok {
		s.netPass(id)
		return
	}
	named := false
	for i := range hdrs {
		named = named || (hdrs[i].Hdr.Name != 0 && hdrs[i].Hdr.Namelen != 0)
	}
	if !named {
		s.netPass(id)
		return
	}
	so, ok := s.openSock(tid, i32(a[0]))
	if !ok || so.proto != layer.UDP {
		so.close()
		s.netPass(id)
		return
	}
	defer so.close()
	remote := false
	for i := range hdrs {
		h := &hdrs[i].Hdr
		nb.remote[i] = false
		if h.Name == 0 || h.Namelen == 0 {
			continue
		}
		dst, fam, ok := w.readSockaddr(tid, h.Name, int64(min(h.Namelen, sockaddrMax)))
		if !ok || fam != so.family {
			continue // sent as it is: the kernel says what it thinks of the address
		}
		// no ID_VALID yet: deciding is not acting, and sendFrom checks before each send
		route := s.Net.RouteOutgoing(layer.UDP, dst)
		s.traceNet(w, layer.UDP, dst, route)
		if route == layer.Remote {
			nb.remote[i], nb.dst[i], remote = true, dst, true
		}
	}
	if !remote {
		s.stats.netLocal.Add(1)
		s.respond(seccomp.Resp{ID: id, Flags: seccomp.FlagContinue})
		return
	}
	s.stats.netRemote.Add(1)
	s.handOver(ctx, w, st)
	sent := 0
	var errno unix.Errno
	for i := range hdrs {
		h := &hdrs[i].Hdr
		var name []byte
		switch {
		case nb.remote[i]:
			name, errno = s.relayName(ctx, w, nb.dst[i], so.family)
		case h.Name != 0 && h.Namelen != 0:
			name = nb.out[:min(h.Namelen, sizeofSockaddrIn6)]
			if w.mem.read(tid, h.Name, name) != nil {
				errno = unix.EFAULT
			}
		}
		var n int
		if errno == 0 {
			n, errno = s.sendFrom(w, &so, h, nil, name, flags, false)
		}
		if errno == 0 {
			nativePut32(nb.word[:], uint32(n))
			if w.mem.write(tid, vec+uint64(i)*uint64(unsafe.Sizeof(mmsghdr{}))+offMmsgLen, nb.word[:4]) != nil {
				errno = unix.EFAULT
			}
		}
		if errno != 0 {
			break
		}
		if nb.remote[i] {
			s.relayed.add(so.fd)
		}
		sent++
	}
	if errno == errnoGone {
		s.stats.gone.Add(1)
		return
	}
	s.log.Debug().Str("call", "sendmmsg").Int("tid", tid).Int("messages", sent).Str("result", errnoString(errno)).Msg("relayed send")
	if sent > 0 {
		// the kernel too answers the count and leaves a later message's error for the next call
		s.respond(seccomp.Resp{ID: id, Val: int64(sent)})
		return
	}
	s.stats.netFailed.Add(1)
	s.replyErrno(id, errno)
}

// readMmsghdrs reads the first cnt headers of an mmsghdr array. A program may pass a vlen
// larger than its array (the kernel would send or fill what it can, then fault): when the
// whole read fails, the batch is the first header alone, so that a readable message is
// never let through unrouted.
func (w *worker) readMmsghdrs(tid int, vec uint64, cnt int) ([]mmsghdr, bool) {
	hdrs := w.net.mmsg[:cnt]
	size := int(unsafe.Sizeof(mmsghdr{}))
	if w.mem.read(tid, vec, unsafe.Slice((*byte)(unsafe.Pointer(&hdrs[0])), cnt*size)) == nil {
		return hdrs, true
	}
	hdrs = hdrs[:1]
	return hdrs, w.mem.read(tid, vec, unsafe.Slice((*byte)(unsafe.Pointer(&hdrs[0])), size)) == nil
}

// inMsg is where one received message goes in the caller's memory.
type inMsg struct {
	h           msghdr // Iov/Iovlen, Control/Controllen as the caller gave them
	single      *iovec // recvfrom's buffer
	name        uint64 // the source address buffer, 0 for none
	nameCap     int32  // its size as the caller said it
	nameLenAddr uint64 // where the source's length goes
	ctrlLenAddr uint64 // where the control data's length goes (recvmsg), 0 for none
	flagsAddr   uint64 // where msg_flags goes (recvmsg), 0 for none
}

// recv serves recvfrom(fd, buf, len, flags, src, addrlen) and recvmsg(fd, msg, flags).
func (s *Supervisor) recv(ctx context.Context, w *worker, st *serving, k kind) {
	id, tid, a := w.n.ID, int(w.n.Pid), &w.n.Data.Args
	nb := w.net
	var m inMsg
	var flags int
	if k == kRecvfrom {
		nb.iov[0] = iovec{Base: a[1], Len: a[2]}
		m.single, m.name, m.nameLenAddr = &nb.iov[0], a[4], a[5]
		flags = int(i32(a[3]))
		if m.name != 0 && m.nameLenAddr != 0 {
			if w.mem.read(tid, m.nameLenAddr, nb.word[:4]) != nil {
				s.netPass(id)
				return
			}
			m.nameCap = int32(nativeGet32(nb.word[:4]))
		}
	} else {
		if w.mem.read(tid, a[1], bytesOf(&m.h)) != nil {
			s.netPass(id)
			return
		}
		flags = int(i32(a[2]))
		m.name, m.nameCap = m.h.Name, int32(m.h.Namelen)
		m.nameLenAddr, m.ctrlLenAddr, m.flagsAddr = a[1]+offMsgNamelen, a[1]+offMsgControllen, a[1]+offMsgFlags
	}
	// Without a source address buffer there is nothing to rewrite; a negative size, an
	// unreadable length or too many iovecs are the kernel's to refuse.
	if m.name == 0 || m.nameLenAddr == 0 || m.nameCap < 0 || flags&unix.MSG_ERRQUEUE != 0 || (m.single == nil && m.h.Iovlen > maxIov) {
		s.netPass(id)
		return
	}
	so, local, ok := s.relayedSock(w, i32(a[0]))
	if !ok {
		s.netPass(id)
		return
	}
	defer so.close()
	s.stats.netRecv.Add(1)
	s.handOver(ctx, w, st)
	n, err := s.recvOne(w, st, &so, local, &m, flags, !nonblocking(so.fd, flags))
	if errors.Is(err, errGone) {
		s.stats.gone.Add(1)
		return
	}
	errno := errnoOf(err)
	if failure(errno) {
		s.stats.netFailed.Add(1)
	}
	s.answer(id, n, errno)
}

// relayedSock duplicates fd when it is a relayed UDP socket; ok is false otherwise (the call
// is then the kernel's).
func (s *Supervisor) relayedSock(w *worker, fd int32) (sock, netip.AddrPort, bool) {
	so, ok := s.openSock(int(w.n.Pid), fd)
	if !ok {
		return so, netip.AddrPort{}, false
	}
	local, ok := sockAddr(so.fd, false, w.net.name[:])
	if so.proto != layer.UDP || !ok || !(s.relayed.has(so.fd) || s.Net.Relayed(local)) {
		so.close()
		return so, local, false
	}
	return so, local, true
}

// nonblocking says whether a receive on fd with flags must not wait.
func nonblocking(fd, flags int) bool {
	if flags&unix.MSG_DONTWAIT != 0 {
		return true
	}
	fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
	return err == nil && fl&unix.O_NONBLOCK != 0
}

// recvmmsg serves recvmmsg(fd, msgvec, vlen, flags, timeout).
func (s *Supervisor) recvmmsg(ctx context.Context, w *worker, st *serving) {
	id, tid, a := w.n.ID, int(w.n.Pid), &w.n.Data.Args
	nb := w.net
	vec, flags := a[1], int(i32(a[3]))
	cnt := min(int(uint32(a[2])), maxBatch)
	if cnt == 0 || flags&unix.MSG_ERRQUEUE != 0 {
		s.netPass(id)
		return
	}
	hdrs, ok := w.readMmsghdrs(tid, vec, cnt)
	if !ok {
		s.netPass(id)
		return
	}
	named := false
	for i := range hdrs {
		named = named || hdrs[i].Hdr.Name != 0
	}
	if !named {
		s.netPass(id)
		return
	}
	so, local, ok := s.relayedSock(w, i32(a[0]))
	if !ok {
		s.netPass(id)
		return
	}
	defer so.close()
	s.stats.netRecv.Add(1)
	s.handOver(ctx, w, st)
	block := !nonblocking(so.fd, flags)
	flags &^= unix.MSG_WAITFORONE
	got := 0
	var errno unix.Errno
	for i := range hdrs {
		at := vec + uint64(i)*uint64(unsafe.Sizeof(mmsghdr{}))
		m := inMsg{h: hdrs[i].Hdr, name: hdrs[i].Hdr.Name, nameCap: int32(hdrs[i].Hdr.Namelen),
			nameLenAddr: at + offMsgNamelen, ctrlLenAddr: at + offMsgControllen, flagsAddr: at + offMsgFlags}
		if m.nameCap < 0 {
			errno = unix.EINVAL
			break
		}
		n, err := s.recvOne(w, st, &so, local, &m, flags, block && i == 0)
		if errors.Is(err, errGone) {
			s.stats.gone.Add(1)
			return
		}
		if errno = errnoOf(err); errno != 0 {
			break
		}
		nativePut32(nb.word[:], uint32(n))
		if w.mem.write(tid, at+offMmsgLen, nb.word[:4]) != nil {
			errno = unix.EFAULT
			break
		}
		got++
	}
	if got > 0 {
		s.respond(seccomp.Resp{ID: id, Val: int64(got)})
		return
	}
	if failure(errno) {
		s.stats.netFailed.Add(1)
	}
	s.replyErrno(id, errno)
}

// recvOne receives one datagram on so for the caller's message m and writes it back: the
// payload across the caller's iovecs, the source (rewritten by Lookup) with its length, the
// control data with its length, and msg_flags. block waits for a datagram (until
// SO_RCVTIMEO, if set); otherwise an empty queue is EAGAIN. The caller is checked to still
// wait right before the datagram is taken, so none is lost to a caller that has gone.
func (s *Supervisor) recvOne(w *worker, st *serving, so *sock, local netip.AddrPort, m *inMsg, flags int, block bool) (int, error) {
	nb := w.net
	tid := int(w.n.Pid)
	iovs, errno := w.readIovecs(tid, &m.h, m.single)
	if errno != 0 {
		return 0, errno
	}
	capacity := 0
	for _, v := range iovs {
		capacity = int(min(uint64(capacity)+min(v.Len, maxPayload), maxPayload)) // saturating: v.Len is the caller's
	}
	buf := nb.payload[:capacity]
	var oob []byte
	if m.ctrlLenAddr != 0 && m.h.Control != 0 {
		oob = nb.ctrl[:min(m.h.Controllen, maxControl)]
	}
	var deadline time.Time
	if block {
		if d := rcvTimeout(so.fd); d > 0 {
			deadline = time.Now().Add(d)
		}
	}
	var r recvResult
	for {
		if block {
			if err := s.waitFor(w, st, so.fd, unix.POLLIN, deadline); err != nil {
				return 0, err
			}
		}
		if err := seccomp.IDValid(s.fd, w.n.ID); err != nil {
			return 0, errGone
		}
		r, errno = recvmsgRaw(so.fd, buf, oob, nb.name[:], flags|unix.MSG_DONTWAIT)
		if errno == unix.EAGAIN && block {
			continue // another reader took it
		}
		if errno != 0 {
			return 0, errno
		}
		break
	}

	// the payload, as much as fits (r.n is the datagram's length with MSG_TRUNC)
	rest := buf[:min(r.n, len(buf))]
	for _, v := range iovs {
		if len(rest) == 0 {
			break
		}
		c := int(min(v.Len, uint64(len(rest))))
		if c == 0 {
			continue
		}
		if w.mem.write(tid, v.Base, rest[:c]) != nil {
			return 0, unix.EFAULT
		}
		rest = rest[c:]
	}
	if m.name != 0 {
		src := nb.name[:r.nameLen]
		if ap, _, ok := parseSockaddr(src); ok {
			if f, ok := s.Net.Lookup(layer.UDP, local, ap); ok {
				if n := putSockaddr(nb.out[:], so.family, f.Remote); n > 0 {
					src = nb.out[:n]
				}
				if e := s.log.Trace(); e.Enabled() {
					e.Int("tid", tid).Stringer("from", ap).Stringer("remote", f.Remote).Msg("datagram source rewritten")
				}
			}
		}
		// as move_addr_to_user: what fits, then the whole length
		if err := w.mem.write(tid, m.name, src[:min(int(m.nameCap), len(src))]); err != nil {
			return 0, unix.EFAULT
		}
		nativePut32(nb.word[:], uint32(len(src)))
		if w.mem.write(tid, m.nameLenAddr, nb.word[:4]) != nil {
			return 0, unix.EFAULT
		}
	}
	if m.ctrlLenAddr != 0 {
		if w.mem.write(tid, m.h.Control, oob[:r.oobn]) != nil {
			return 0, unix.EFAULT
		}
		nativePut64(nb.word[:], uint64(r.oobn))
		if w.mem.write(tid, m.ctrlLenAddr, nb.word[:8]) != nil {
			return 0, unix.EFAULT
		}
	}
	if m.flagsAddr != 0 {
		nativePut32(nb.word[:], uint32(r.flags))
		if w.mem.write(tid, m.flagsAddr, nb.word[:4]) != nil {
			return 0, unix.EFAULT
		}
	}
	return r.n, nil
}

// waitFor polls fd for events until it is ready (or in error: the next call on it says
// which), until deadline (EAGAIN), until the caller has gone or the supervisor stops
// (errGone), or until the caller has a signal to handle.
//
// That last one is why the wait is not left to the kernel's: with WAIT_KILLABLE_RECV a
// trapped call waits through every signal but a fatal one, and a receive may wait forever,
// so a program blocked in recvfrom could not be interrupted (Ctrl-C in Python is a handled
// SIGINT; Ctrl-Z is a stop). The thread's pending signals are read from /proc at each check,
// and a pending one ends the wait as the kernel's own receive would end it: ERESTARTSYS (the
// kernel restarts the call after a SA_RESTART handler or a stop, else the caller sees
// EINTR), or EINTR when the socket has a receive timeout. ERESTARTSYS is only right when the
// kernel will look at the thread's signals on the way out, which is certain for a signal sent
// to the thread, or to a process of one thread; a process-wide signal in a process of many
// threads may be another thread's to take, so only one still pending at the next check
// (nobody else took it) ends the wait, with EINTR.
func (s *Supervisor) waitFor(w *worker, st *serving, fd int, events int16, deadline time.Time) error {
	pfd := [2]unix.PollFd{{Fd: int32(fd), Events: events}, {Fd: int32(st.stop.fd), Events: unix.POLLIN}}
	var sig signalCheck
	for {
		timeout := pollEvery
		if !deadline.IsZero() {
			left := time.Until(deadline)
			if left <= 0 {
				return unix.EAGAIN
			}
			timeout = min(timeout, left)
		}
		pfd[0].Revents, pfd[1].Revents = 0, 0
		ms := int((timeout + time.Millisecond - 1) / time.Millisecond)
		if _, err := unix.Poll(pfd[:], ms); err != nil && err != unix.EINTR {
			return err
		}
		if pfd[1].Revents != 0 {
			return errGone
		}
		if pfd[0].Revents != 0 {
			return nil
		}
		if err := seccomp.IDValid(s.fd, w.n.ID); err != nil {
			return errGone
		}
		if errno := sig.check(int(w.n.Pid), !deadline.IsZero()); errno != 0 {
			return errno
		}
	}
}

// signalCheck decides, check after check, whether a waiting caller has a signal to handle
// (see waitFor), and with which errno its call ends: 0 while it has none.
type signalCheck struct {
	sharedSeen bool
}

func (c *signalCheck) check(tid int, hasTimeout bool) unix.Errno {
	own, shared, threads := pendingSignals(tid)
	interrupt := own || (shared && (threads == 1 || c.sharedSeen))
	c.sharedSeen = shared
	switch {
	case !interrupt:
		return 0
	case hasTimeout || !own && threads != 1:
		return unix.EINTR
	}
	return errRestartSys
}

// errRestartSys is the kernel's ERESTARTSYS: "restart the call if the handler says
// SA_RESTART (or there was no handler: a stop), else EINTR".
const errRestartSys = unix.Errno(512)

// pendingSignals reads which signals thread tid has pending and does not block: own (sent to
// the thread), shared (sent to its process); and how many threads the process has.
func pendingSignals(tid int) (own, shared bool, threads int) {
	b, err := os.ReadFile("/proc/" + itoa(tid) + "/status")
	if err != nil {
		return false, false, 0
	}
	var sigPnd, shdPnd, sigBlk uint64
	for len(b) > 0 {
		line := b
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			b = nil
		}
		k, v, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		v = bytes.TrimSpace(v)
		switch string(k) {
		case "SigPnd":
			sigPnd, _ = strconv.ParseUint(string(v), 16, 64)
		case "ShdPnd":
			shdPnd, _ = strconv.ParseUint(string(v), 16, 64)
		case "SigBlk":
			sigBlk, _ = strconv.ParseUint(string(v), 16, 64)
		case "Threads":
			threads, _ = strconv.Atoi(string(v))
		}
	}
	return sigPnd&^sigBlk != 0, shdPnd&^sigBlk != 0, threads
}

// sockName serves getpeername(fd, addr, addrlen) and getsockname(fd, addr, addrlen).
func (s *Supervisor) sockName(w *worker, k kind) {
	id, tid, a := w.n.ID, int(w.n.Pid), &w.n.Data.Args
	nb := w.net
	addr, lenAddr := a[1], a[2]
	if addr == 0 || lenAddr == 0 || w.mem.read(tid, lenAddr, nb.word[:4]) != nil {
		s.netPass(id)
		return
	}
	ulen := int32(nativeGet32(nb.word[:4]))
	if ulen < 0 {
		s.netPass(id) // EINVAL, from the kernel
		return
	}
	so, ok := s.openSock(tid, i32(a[0]))
	if !ok {
		s.netPass(id)
		return
	}
	defer so.close()
	local, ok1 := sockAddr(so.fd, false, nb.name[:])
	peer, ok2 := sockAddr(so.fd, true, nb.name[:])
	if !ok1 || !ok2 {
		s.netPass(id) // no peer: not a flow (ENOTCONN for getpeername, from the kernel)
		return
	}
	if err := seccomp.IDValid(s.fd, id); err != nil {
		s.stats.gone.Add(1)
		return
	}
	var f layer.Flow
	ok = false
	if s.Net != nil {
		f, ok = s.Net.Lookup(so.proto, local, peer)
	}
	if !ok && s.Incoming != nil && so.proto == layer.TCP {
		f, ok = s.Incoming.Delivered(local, peer)
	}
	v := f.Remote
	if k == kGetsockname {
		v = f.PodLocal
	}
	n := 0
	if ok && v.IsValid() {
		n = putSockaddr(nb.out[:], so.family, v)
	}
	if e := s.log.Trace(); e.Enabled() {
		e.Str("call", seccomp.Name(int(w.n.Data.Nr))).Int("tid", tid).Stringer("local", local).Stringer("peer", peer).
			Bool("flow", ok).Stringer("answer", v).Msg("trapped")
	}
	if n == 0 {
		s.netPass(id)
		return
	}
	nativePut32(nb.word[:], uint32(n))
	if w.mem.write(tid, addr, nb.out[:min(int(ulen), n)]) != nil || w.mem.write(tid, lenAddr, nb.word[:4]) != nil {
		s.stats.netFailed.Add(1)
		s.replyErrno(id, unix.EFAULT)
		return
	}
	s.stats.netNamed.Add(1)
	s.respond(seccomp.Resp{ID: id})
}

// answer completes a call with a byte count, or with errno when it is set.
func (s *Supervisor) answer(id uint64, n int, errno unix.Errno) {
	if errno != 0 {
		s.replyErrno(id, errno)
		return
	}
	s.respond(seccomp.Resp{ID: id, Val: int64(n)})
}

// netPass lets a socket call run untouched without routing it.
func (s *Supervisor) netPass(id uint64) {
	s.stats.netPassed.Add(1)
	s.respond(seccomp.Resp{ID: id, Flags: seccomp.FlagContinue})
}

func (s *Supervisor) traceNet(w *worker, p layer.Proto, dst netip.AddrPort, route layer.Route) {
	if e := s.log.Trace(); e.Enabled() {
		e.Str("call", seccomp.Name(int(w.n.Data.Nr))).Int("tid", int(w.n.Pid)).Stringer("proto", p).
			Stringer("dst", dst).Stringer("route", route).Msg("trapped")
	}
}

// logHandlerErr logs a NetHandler failure that is not an errno; the process gets a stock
// errno for it.
func (s *Supervisor) logHandlerErr(err error, op string, dst netip.AddrPort) {
	lvl := s.log.Warn()
	if errors.Is(err, context.Canceled) {
		lvl = s.log.Debug() // the supervisor is stopping: expected, not news
	}
	lvl.Err(err).Str("op", op).Stringer("dst", dst).Msg("supervisor: NetHandler failed")
}

// failure says whether a receive's errno counts as a failure: an empty queue and a signal
// are what receives are for.
func failure(errno unix.Errno) bool {
	return errno != 0 && errno != unix.EAGAIN && errno != unix.EINTR && errno != errRestartSys
}

// errnoOf is err's errno: 0 for nil, EIO for what is not one.
func errnoOf(err error) unix.Errno {
	if err == nil {
		return 0
	}
	var errno unix.Errno
	if errors.As(err, &errno) && errno != 0 {
		return errno
	}
	return unix.EIO
}

func errnoString(e unix.Errno) string {
	if e == 0 {
		return "ok"
	}
	return unix.ErrnoName(e)
}

// routedRemote decides a connect or send to dst once the process's memory has been read: a
// call that went away meanwhile is dropped, a Local one is let through (CONTINUE), and only
// a Remote one is left for the caller to serve (true).
func (s *Supervisor) routedRemote(w *worker, id uint64, p layer.Proto, dst netip.AddrPort) bool {
	if err := seccomp.IDValid(s.fd, id); err != nil {
		s.stats.gone.Add(1)
		return false
	}
	route := s.Net.RouteOutgoing(p, dst)
	s.traceNet(w, p, dst, route)
	if route != layer.Remote {
		s.stats.netLocal.Add(1)
		s.respond(seccomp.Resp{ID: id, Flags: seccomp.FlagContinue})
		return false
	}
	s.stats.netRemote.Add(1)
	return true
}
