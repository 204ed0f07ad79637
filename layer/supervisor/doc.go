// Package supervisor answers the seccomp user notifications of the user's process tree: the
// kwarp side of the layer's tier S. The launcher (package launcher) installed a filter that
// traps a chosen set of calls and handed over its listener; every trapped call of every
// process in the tree now waits in the kernel until the supervisor answers it.
//
// # One call
//
//	poll + SECCOMP_IOCTL_NOTIF_RECV     {id, tid, nr, args}; the struct zeroed first
//	process_vm_readv                    the path argument, page by page (PATH_MAX at most)
//	/proc/<tid>/cwd, /proc/<tid>/fd/N   base of a relative path (AT_FDCWD or the dirfd),
//	                                    then cleaned lexically
//	SECCOMP_IOCTL_NOTIF_ID_VALID        the thread is still in this call: what was read was
//	                                    its memory (no TID reuse), so it is safe to act on
//	Handler.Route(path)
//	  Local     SEND with FLAG_CONTINUE: the kernel runs the call as if untrapped
//	  NotFound  SEND error ENOENT
//	  Remote    open family: Handler.Open, then NOTIF_ADDFD with ADDFD_FLAG_SEND (the fd lands
//	            in the process and is the call's result, atomically; O_CLOEXEC as asked);
//	            stat family: Handler.Stat, written with process_vm_writev as struct stat, or
//	            struct statx with every basic field, whatever the mask (as the kernel
//	            does: ls asks STATX_MODE and reads the type too); readlink: the bytes, cut to
//	            bufsiz; access: the errno
//
// The notification carries a TID, not a process id: memory and /proc are read per thread,
// which is right (threads may differ in cwd), and OnExec gets the TGID.
//
// Errors from the Handler that are a unix.Errno (bare or wrapped, as in *os.PathError)
// reach the process as that errno; anything else is logged and the process sees EIO, as
// does a Handler panic.
//
// A remote directory is a local directory the Handler filled with the remote entries. When
// the process then works relative to its fd (openat(dirfd, "name"), fchdir + relative paths,
// getcwd) the kernel names the local stand-in; the supervisor remembers which stand-in means
// which remote directory and routes "<remote dir>/name" instead.
//
// Exec is trapped to follow the tree, not to serve it: execve and execveat run (CONTINUE),
// after a debug line and the OnExec hook with the path, argv and envp read from the process.
// chdir keeps its local meaning: a process cannot have a remote cwd, so chdir into a remote
// directory fails with ENOENT unless the same directory exists locally.
//
// # Socket calls
//
// With Net set (and seccomp.NetRules in the filter) the supervisor also serves connect,
// sendto/sendmsg/sendmmsg with a destination, recvfrom/recvmsg/recvmmsg with a source buffer,
// getpeername and getsockname, on a duplicate of the process's socket taken with
// pidfd_getfd (pidfd_open with PIDFD_THREAD from 6.9, the TGID before): see net.go. Remote
// TCP and connected UDP go through NetHandler.Connect on that socket; unconnected datagrams
// are sent from it to the relay NetHandler.Relay names, and the answers' sources are
// rewritten on receipt; the addresses a process asks for are the pod's (Lookup).
//
// With Incoming set (and seccomp.IncomingRules in the filter) listen is served on the
// duplicate and each new TCP listener reported to IncomingHandler.Listening, and accept and
// accept4 with an address buffer are emulated (accept4 on the duplicate, the new socket
// installed with ADDFD) so that a connection the core delivered names the pod client as its
// peer (Delivered), in accept's address as in getpeername and getsockname: see incoming.go.
//
// # Kernel features
//
// Floor: Linux 5.9 (USER_NOTIF 5.0, CONTINUE 5.5, ADDFD 5.9); layer.Probe says what is
// missing. ADDFD_FLAG_SEND (5.14) is tried first and dropped for ADDFD followed by SEND on
// EINVAL; between those two steps a process that gives up keeps the fd. ADDFD_FLAG_SEND is
// issued with the supervisor thread's signals blocked: a signal in ADDFD's wait makes the
// kernel withdraw the fd after it marked the call answered, and the call returns 0 (see
// addFD). SYNC_WAKE_UP (6.6) is set on the listener when the kernel has it: the trapped
// thread and the answering worker then switch on one CPU, about a third faster per call. WAIT_KILLABLE_RECV (5.19) is the
// launcher's to set; without it a signal aborts a received call, the kernel restarts it, and a
// process that gets signals faster than the Handler answers never completes the call.
//
// # Lifetime
//
// Serve returns when every process carrying the filter is gone (POLLHUP on the listener), or
// when its context ends. With WAIT_KILLABLE_RECV a waiting process can still be killed
// (SIGKILL, or a signal without a handler); a signal it handles waits for the answer. Once
// Serve has returned, the listener is closed and the kernel fails every waiting and later
// trapped call with ENOSYS: the CLI must kill the process group before it stops the
// supervisor. Handler calls in flight get a context that ends with Serve's.
//
// # Cost
//
// Every trapped call is a round trip through this process, Local ones included: BPF sees
// numbers, not paths. On a 2-vCPU VM a trapped local open+close took 7-10 µs against 1-1.5 µs
// untrapped (BenchmarkTrappedOpenLocal), and a 4 KiB remote open through ADDFD 17-22 µs plus
// the Handler's own time (BenchmarkRemoteOpen). The per-call work allocates only the path
// string given to Route. Trap path calls only when a session needs remote files. A trapped
// connect routed Local costs 20-30 µs more than the plain one (35-45 µs for a loopback
// connect on that VM; BenchmarkTrappedConnectLocal): the socket is duplicated and its type
// read before routing. An emulated accept of a queued connection took 27-36 µs against
// 1.5-2 µs untrapped (BenchmarkTrappedAccept); a Go server pays it, and a trapped
// getsockname, per connection, plus an accept4 answered EAGAIN when it goes back to epoll.
package supervisor
