package supervisor

import (
	"context"
	"errors"
	"os"
	"runtime"
	"runtime/debug"

	"github.com/kwarp-dev/kwarp/layer"
	"github.com/kwarp-dev/kwarp/layer/seccomp"
	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"
)

// kind is what the supervisor does with a trapped call.
type kind uint8

const (
	kNone kind = iota // trapped, but not served here: CONTINUE
	kOpen
	kOpenat
	kOpenat2
	kCreat
	kStat
	kLstat
	kNewfstatat
	kStatx
	kAccess
	kFaccessat
	kFaccessat2
	kReadlink
	kReadlinkat
	kChdir
	kGetxattr
	kListxattr
	kExecve
	kExecveat
	// socket calls, served through the NetHandler and the IncomingHandler (net.go,
	// incoming.go): handle sends every kind from kConnect on there
	kConnect
	kSendto
	kSendmsg
	kSendmmsg
	kRecvfrom
	kRecvmsg
	kRecvmmsg
	kGetpeername
	kGetsockname
	// incoming (incoming.go)
	kListen
	kAccept
	kAccept4
)

var kindByName = map[string]kind{
	"open": kOpen, "openat": kOpenat, "openat2": kOpenat2, "creat": kCreat,
	"stat": kStat, "lstat": kLstat, "newfstatat": kNewfstatat, "statx": kStatx,
	"access": kAccess, "faccessat": kFaccessat, "faccessat2": kFaccessat2,
	"readlink": kReadlink, "readlinkat": kReadlinkat,
	"chdir": kChdir,
	// ls -l asks each name for its security label; a remote name has none here
	"getxattr": kGetxattr, "lgetxattr": kGetxattr, "listxattr": kListxattr, "llistxattr": kListxattr,
	"execve": kExecve, "execveat": kExecveat,
	"connect": kConnect, "sendto": kSendto, "sendmsg": kSendmsg, "sendmmsg": kSendmmsg,
	"recvfrom": kRecvfrom, "recvmsg": kRecvmsg, "recvmmsg": kRecvmmsg,
	"getpeername": kGetpeername, "getsockname": kGetsockname,
	"listen": kListen, "accept": kAccept, "accept4": kAccept4,
}

// kindTable indexes the kinds by this architecture's syscall numbers: one slice load per call.
func kindTable() []kind {
	max := 0
	for name := range kindByName {
		if nr, ok := seccomp.Number(name); ok && nr > max {
			max = nr
		}
	}
	t := make([]kind, max+1)
	for name, k := range kindByName {
		if nr, ok := seccomp.Number(name); ok {
			t[nr] = k
		}
	}
	return t
}

// call is a trapped call's arguments, decoded for its kind.
type call struct {
	kind     kind
	dirfd    int32  // AT_FDCWD for the calls without one
	pathAddr uint64 // the path argument in the caller's memory
	flags    int    // open(2) flags for the open family, AT_* flags for the *at calls
	mode     uint32 // open mode, access mode
	buf      uint64 // where the answer goes: struct stat, struct statx, readlink's buffer
	size     int64  // readlink's bufsiz
	mask     uint32 // statx's mask
	howAddr  uint64 // openat2's struct open_how
	howSize  uint64
	argvAddr uint64
	envpAddr uint64
}

// decode reads the register arguments. Ints are 32-bit in the kernel's signatures, so the
// upper halves of the registers are ignored as the kernel ignores them.
func decode(k kind, a *[6]uint64) call {
	i32 := func(v uint64) int32 { return int32(uint32(v)) }
	c := call{kind: k, dirfd: unix.AT_FDCWD}
	switch k {
	case kOpen:
		c.pathAddr, c.flags, c.mode = a[0], int(i32(a[1])), uint32(a[2])
	case kCreat:
		c.pathAddr, c.flags, c.mode = a[0], unix.O_CREAT|unix.O_WRONLY|unix.O_TRUNC, uint32(a[1])
	case kOpenat:
		c.dirfd, c.pathAddr, c.flags, c.mode = i32(a[0]), a[1], int(i32(a[2])), uint32(a[3])
	case kOpenat2:
		c.dirfd, c.pathAddr, c.howAddr, c.howSize = i32(a[0]), a[1], a[2], a[3]
	case kStat:
		c.pathAddr, c.buf = a[0], a[1]
	case kLstat:
		c.pathAddr, c.buf, c.flags = a[0], a[1], unix.AT_SYMLINK_NOFOLLOW
	case kNewfstatat:
		c.dirfd, c.pathAddr, c.buf, c.flags = i32(a[0]), a[1], a[2], int(i32(a[3]))
	case kStatx:
		c.dirfd, c.pathAddr, c.flags, c.mask, c.buf = i32(a[0]), a[1], int(i32(a[2])), uint32(a[3]), a[4]
	case kAccess:
		c.pathAddr, c.mode = a[0], uint32(a[1])
	case kFaccessat:
		c.dirfd, c.pathAddr, c.mode = i32(a[0]), a[1], uint32(a[2])
	case kFaccessat2:
		c.dirfd, c.pathAddr, c.mode, c.flags = i32(a[0]), a[1], uint32(a[2]), int(i32(a[3]))
	case kReadlink:
		c.pathAddr, c.buf, c.size = a[0], a[1], int64(i32(a[2]))
	case kReadlinkat:
		c.dirfd, c.pathAddr, c.buf, c.size = i32(a[0]), a[1], a[2], int64(i32(a[3]))
	case kChdir, kGetxattr, kListxattr:
		c.pathAddr = a[0]
	case kExecve:
		c.pathAddr, c.argvAddr, c.envpAddr = a[0], a[1], a[2]
	case kExecveat:
		c.dirfd, c.pathAddr, c.argvAddr, c.envpAddr, c.flags = i32(a[0]), a[1], a[2], a[3], int(i32(a[4]))
	}
	return c
}

// worker is one serving goroutine's state: the notification and every buffer a call needs, so
// the common path allocates only the path string it hands to the Handler.
type worker struct {
	s       *Supervisor
	n       seccomp.Notif
	mem     memory
	path    [pathMax]byte
	link    [pathMax]byte
	join    [2 * pathMax]byte
	scratch [64]byte
	stat    unix.Stat_t
	statx   unix.Statx_t
	arg     []byte   // for exec's argv and envp strings, made on the first exec
	net     *netBufs // for socket calls, made on the first one

	handedOver bool // this call made a new receiver; the current one ends after it
}

func newWorker(s *Supervisor) *worker { return &worker{s: s} }

// handle answers the call in w.n. Every path through it answers exactly once, or not at all
// when the caller has gone (the kernel then has nothing to answer). Before a call that may
// block it hands the receiver role on (w.handedOver).
func (s *Supervisor) handle(ctx context.Context, w *worker, st *serving) {
	n := &w.n
	defer s.recoverCall(n.ID)
	nr := int(n.Data.Nr)
	k := kNone
	if nr >= 0 && nr < len(s.kinds) {
		k = s.kinds[nr]
	}
	if k == kNone {
		s.pass(n.ID)
		return
	}
	if k >= kConnect {
		s.netCall(ctx, w, st, k)
		return
	}
	c := decode(k, &n.Data.Args)
	tid := int(n.Pid)

	ln, err := w.mem.readString(tid, c.pathAddr, w.path[:])
	if err == nil && ln == 0 && k == kExecveat && c.flags&unix.AT_EMPTY_PATH != 0 {
		// fexecve: the program is the file dirfd refers to.
		l, err := readlinkProc(tid, "fd/", int(c.dirfd), w.scratch[:], w.link[:])
		if err == nil {
			s.exec(ctx, w, st, &c, string(w.link[:l]))
			return
		}
	}
	if err != nil || ln == 0 {
		// Unreadable (the kernel will say EFAULT or ENAMETOOLONG), or empty: with
		// AT_EMPTY_PATH that is fstat/faccess of a real fd (or the cwd), without it ENOENT.
		// Either way the kernel answers best.
		s.pass(n.ID)
		return
	}
	if k == kOpenat2 {
		// struct open_how {u64 flags; u64 mode; u64 resolve}; RESOLVE_* flags are not
		// honoured for remote paths (the Handler resolves inside the container).
		var how [3]uint64
		if c.howSize < 24 || w.mem.read(tid, c.howAddr, bytesOf(&how)) != nil {
			s.pass(n.ID)
			return
		}
		c.flags, c.mode = int(how[0]), uint32(how[1])
	}
	p, ok := w.resolve(tid, c.dirfd, w.path[:ln])
	if !ok {
		s.pass(n.ID)
		return
	}
	if k == kExecve || k == kExecveat {
		s.exec(ctx, w, st, &c, p)
		return
	}
	// What was read is only known to be the caller's if the call is still waiting: the id
	// proves the thread is stopped in this very call, so its TID was not reused.
	if err := seccomp.IDValid(s.fd, n.ID); err != nil {
		s.stats.gone.Add(1)
		return
	}
	route := s.h.Route(p)
	if e := s.log.Trace(); e.Enabled() {
		e.Str("call", seccomp.Name(nr)).Int("tid", tid).Str("path", p).Stringer("route", route).Msg("trapped")
	}
	switch route {
	case layer.Local:
		s.stats.local.Add(1)
		s.respond(seccomp.Resp{ID: n.ID, Flags: seccomp.FlagContinue})
	case layer.NotFound:
		s.stats.notFound.Add(1)
		s.replyErrno(n.ID, unix.ENOENT)
	case layer.Remote:
		s.stats.remote.Add(1)
		s.handOver(ctx, w, st)
		s.remote(ctx, w, &c, p)
	default:
		s.log.Error().Int("route", int(route)).Str("path", p).Msg("supervisor: Handler returned an unknown route; answering locally")
		s.respond(seccomp.Resp{ID: n.ID, Flags: seccomp.FlagContinue})
	}
}

// remote serves a Remote call through the Handler.
func (s *Supervisor) remote(ctx context.Context, w *worker, c *call, p string) {
	id, tid := w.n.ID, int(w.n.Pid)
	log := s.log.Debug()
	if log.Enabled() {
		log = log.Str("call", seccomp.Name(int(w.n.Data.Nr))).Int("tid", tid).Str("path", p)
	}
	switch c.kind {
	case kOpen, kOpenat, kOpenat2, kCreat:
		f, err := s.h.Open(ctx, p, c.flags, c.mode)
		if err == nil && f == nil {
			err = errors.New("Handler.Open returned no file and no error")
		}
		if err != nil {
			s.fail(id, p, "open", err, log)
			return
		}
		s.install(id, f, p, c.flags, log)
	case kStat, kLstat, kNewfstatat, kStatx:
		st, err := s.h.Stat(ctx, p, c.flags&unix.AT_SYMLINK_NOFOLLOW != 0)
		if err != nil {
			s.fail(id, p, "stat", err, log)
			return
		}
		w.stat = st
		out := bytesOf(&w.stat)
		if c.kind == kStatx {
			toStatx(&w.stat, c.mask, &w.statx)
			out = bytesOf(&w.statx)
		}
		s.writeAndReply(w, c.buf, out, 0, log)
	case kReadlink, kReadlinkat:
		if c.size <= 0 {
			s.replyErrno(id, unix.EINVAL)
			return
		}
		target, err := s.h.Readlink(ctx, p)
		if err != nil {
			s.fail(id, p, "readlink", err, log)
			return
		}
		b := []byte(target)
		if int64(len(b)) > c.size {
			b = b[:c.size] // readlink(2) truncates silently
		}
		s.writeAndReply(w, c.buf, b, int64(len(b)), log)
	case kAccess, kFaccessat, kFaccessat2:
		if err := s.h.Access(ctx, p, c.mode); err != nil {
			s.fail(id, p, "access", err, log)
			return
		}
		log.Msg("remote access")
		s.respond(seccomp.Resp{ID: id})
	case kChdir:
		s.chdir(ctx, w, p, log)
	case kGetxattr:
		// the pod's extended attributes are not carried: as on a file system without them
		s.replyErrno(id, unix.ENODATA)
	case kListxattr:
		s.respond(seccomp.Resp{ID: id, Val: 0})
	}
}

// chdir moves the process into a remote directory: its cwd must be a real directory, so the
// Handler opens the remote one (a local stand-in filled with its entries), and the call is
// restarted with the stand-in's path (see restartCall); relative paths and getcwd() are then
// translated back to the remote directory. When the arguments cannot be changed (no
// WAIT_KILLABLE_RECV, another architecture) chdir keeps its local meaning.
func (s *Supervisor) chdir(ctx context.Context, w *worker, p string, log *zerolog.Event) {
	id, tid := w.n.ID, int(w.n.Pid)
	if !s.WaitKillable || !s.rewrites.attempt(tid) {
		// the restarted chdir names the stand-in: the kernel does it
		s.rewrites.done(tid)
		s.respond(seccomp.Resp{ID: id, Flags: seccomp.FlagContinue})
		return
	}
	f, err := s.h.Open(ctx, p, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		s.rewrites.done(tid)
		s.fail(id, p, "chdir", err, log)
		return
	}
	s.rememberDir(int(f.Fd()), p)
	local, err := os.Readlink("/proc/self/fd/" + itoa(int(f.Fd())))
	f.Close()
	if err != nil {
		s.rewrites.done(tid)
		s.fail(id, p, "chdir", err, log)
		return
	}
	log.Str("local", local).Msg("remote chdir")
	if err := s.restartCall(id, tid, func(regs *unix.PtraceRegs, mem *memory) error {
		return setChdirPath(tid, regs, local, mem)
	}); err != nil {
		s.log.Warn().Err(err).Str("path", p).Msg("could not move the process into a remote directory")
	}
}

// install hands f to the process as the result of its open: ADDFD with SEND installs the fd
// and completes the call in one step (5.14+), so no fd can leak into a caller that gave up;
// before 5.14, ADDFD then SEND with the new number.
func (s *Supervisor) install(id uint64, f *os.File, p string, flags int, log *zerolog.Event) {
	defer f.Close()
	var newFlags uint32
	if flags&unix.O_CLOEXEC != 0 {
		newFlags = unix.O_CLOEXEC
	}
	// Fd keeps f in blocking mode, which is what the process expects of a file anyway; f stays
	// open (and its fd valid) until the deferred Close.
	src := uint32(f.Fd())
	s.rememberDir(int(src), p)
	fd, _, err := s.addFD(id, src, newFlags)
	switch {
	case err == unix.ENOENT:
		s.stats.gone.Add(1)
	case err != nil:
		// EMFILE and the like: the process's own limits; the call is still waiting.
		s.fail(id, p, "open", err, log)
	default:
		log.Int("fd", fd).Msg("remote open")
	}
}

// addFD installs src in the caller and completes its call with the new fd number. installed
// says whether the fd reached the caller's table (also when err is set: the answer failed
// after a two-step install). With ADDFD_FLAG_SEND a failed install (EMFILE) leaves the call
// waiting for another answer; ENOENT or ESRCH says the caller has gone.
//
// ADDFD waits, interruptibly, until the caller's thread has installed the fd. A signal to the
// supervisor's thread in that wait (the Go runtime's SIGURG, a SIGCHLD for the process) makes
// the kernel withdraw the request, and with ADDFD_FLAG_SEND the call has already been marked
// answered: the caller wakes to find no fd and its call returns 0 (measured: an accept4 that
// returned 0, about once in 20000 accepts; the restarted ioctl then fails with EINPROGRESS or
// ENOENT). So signals are blocked on this thread for the ioctl; those sent meanwhile are
// delivered right after. (Without SEND an interrupted ADDFD is simply restarted.)
func (s *Supervisor) addFD(id uint64, src, newFlags uint32) (fd int, installed bool, err error) {
	if !s.noSend.Load() {
		a := seccomp.AddFD{ID: id, Flags: seccomp.AddFDSend, SrcFD: src, NewFDFlags: newFlags}
		fd, err := addFDNoSignals(s.fd, &a)
		if err != unix.EINVAL {
			return fd, err == nil, err
		}
	}
	a := seccomp.AddFD{ID: id, SrcFD: src, NewFDFlags: newFlags}
	fd, err = seccomp.AddFDToTarget(s.fd, &a)
	if err != nil {
		return fd, false, err
	}
	if !s.noSend.Swap(true) {
		s.log.Debug().Msg("supervisor: no ADDFD_FLAG_SEND on this kernel; installing and answering in two steps")
	}
	// If the caller gives up between these two steps, the fd stays in its table.
	return fd, true, seccomp.Send(s.fd, &seccomp.Resp{ID: id, Val: int64(fd)})
}

// addFDNoSignals is ADDFD with every signal blocked on the calling thread (see addFD).
func addFDNoSignals(listener int, a *seccomp.AddFD) (int, error) {
	runtime.LockOSThread() // the mask is the thread's: no moving between the three calls
	defer runtime.UnlockOSThread()
	var all, old unix.Sigset_t
	for i := range all.Val {
		all.Val[i] = ^all.Val[i]
	}
	if err := unix.PthreadSigmask(unix.SIG_SETMASK, &all, &old); err != nil {
		return seccomp.AddFDToTarget(listener, a)
	}
	defer unix.PthreadSigmask(unix.SIG_SETMASK, &old, nil)
	return seccomp.AddFDToTarget(listener, a)
}

// rememberDir records a directory the Handler materialised for p (see dirMap).
func (s *Supervisor) rememberDir(fd int, p string) {
	var st unix.Stat_t
	if unix.Fstat(fd, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return
	}
	local, err := os.Readlink("/proc/self/fd/" + itoa(fd))
	if err != nil || local == "" || local[0] != '/' || local == p {
		return
	}
	s.dirs.add(local, p)
}

func itoa(v int) string { return string(appendInt(nil, v)) }

// writeAndReply writes the answer into the caller's buffer and completes the call with val.
// The id is checked once more first: the Handler may have taken a while, and the buffer must
// still belong to the thread that asked.
func (s *Supervisor) writeAndReply(w *worker, addr uint64, b []byte, val int64, log *zerolog.Event) {
	id := w.n.ID
	if err := seccomp.IDValid(s.fd, id); err != nil {
		s.stats.gone.Add(1)
		return
	}
	if err := w.mem.write(int(w.n.Pid), addr, b); err != nil {
		s.stats.failed.Add(1)
		s.replyErrno(id, unix.EFAULT)
		return
	}
	log.Msg("remote answer")
	s.respond(seccomp.Resp{ID: id, Val: val})
}

// recoverCall keeps a panicking Handler or hook from taking the supervisor down: every
// process in the tree would see ENOSYS from then on. The call fails with EIO instead (if it
// was not answered yet; a second answer is refused by the kernel, harmlessly).
func (s *Supervisor) recoverCall(id uint64) {
	if r := recover(); r != nil {
		s.log.Error().Interface("panic", r).Str("stack", string(debug.Stack())).Msg("supervisor: the Handler or OnExec panicked; the call gets EIO")
		s.stats.failed.Add(1)
		s.replyErrno(id, unix.EIO)
	}
}

// exec reports an exec to the hook and lets it run. With a hook it hands the receiver role on
// first: reading argv and envp, and the hook, may take a while.
func (s *Supervisor) exec(ctx context.Context, w *worker, st *serving, c *call, p string) {
	id, tid := w.n.ID, int(w.n.Pid)
	s.stats.exec.Add(1)
	var argv, envp []string
	if s.OnExec != nil || s.ExecEnv != nil {
		s.handOver(ctx, w, st)
		if w.arg == nil {
			w.arg = make([]byte, maxArgStrlen)
		}
		argv = w.mem.readStrings(tid, c.argvAddr, w.arg)
		envp = w.mem.readStrings(tid, c.envpAddr, w.arg)
	}
	if err := seccomp.IDValid(s.fd, id); err != nil {
		s.stats.gone.Add(1)
		return
	}
	pid := tgid(tid)
	s.log.Debug().Int("pid", pid).Int("tid", tid).Str("path", p).Int("argc", len(argv)).Msg("exec")
	if s.OnExec != nil {
		s.OnExec(pid, p, argv, envp)
	}
	if s.ExecEnv != nil && s.WaitKillable {
		if env := s.ExecEnv(pid, p, envp); env != nil && s.rewrites.attempt(tid) {
			if err := s.rewriteEnv(id, tid, env); err != nil {
				s.log.Warn().Err(err).Int("pid", pid).Str("path", p).Msg("could not restore the environment of an exec")
			}
			return // answered by rewriteEnv; the restarted exec traps again
		}
		s.rewrites.done(tid)
	}
	s.respond(seccomp.Resp{ID: id, Flags: seccomp.FlagContinue})
}

// pass lets a trapped call run untouched without routing it.
func (s *Supervisor) pass(id uint64) {
	s.stats.passed.Add(1)
	s.respond(seccomp.Resp{ID: id, Flags: seccomp.FlagContinue})
}

// fail answers a remote call whose Handler method failed: a unix.Errno (wrapped or not, as in
// *os.PathError) reaches the process as is; anything else is an internal failure, logged, and
// the process sees EIO.
func (s *Supervisor) fail(id uint64, p, op string, err error, log *zerolog.Event) {
	s.stats.failed.Add(1)
	var errno unix.Errno
	if !errors.As(err, &errno) || errno == 0 {
		errno = unix.EIO
		lvl := s.log.Warn()
		if errors.Is(err, context.Canceled) {
			lvl = s.log.Debug() // the supervisor is stopping: expected, not news
		}
		lvl.Err(err).Str("op", op).Str("path", p).Msg("supervisor: remote call failed; the process sees EIO")
	}
	log.Str("errno", errno.Error()).Msg("remote " + op + " failed")
	s.replyErrno(id, errno)
}

func (s *Supervisor) replyErrno(id uint64, errno unix.Errno) {
	s.respond(seccomp.Resp{ID: id, Error: -int32(errno)})
}

// respond sends an answer, retrying on EINTR; ENOENT means the caller stopped waiting (a signal
// interrupted it, and the kernel will restart and trap the call again, or it died).
func (s *Supervisor) respond(r seccomp.Resp) {
	for {
		err := seccomp.Send(s.fd, &r)
		switch err {
		case nil:
			return
		case unix.EINTR:
			continue
		case unix.ENOENT:
			s.stats.gone.Add(1)
			return
		default:
			s.log.Error().Err(err).Uint64("id", r.ID).Msg("supervisor: answering a trapped call")
			return
		}
	}
}
