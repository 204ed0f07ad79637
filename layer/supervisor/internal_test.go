package supervisor

import (
	"net/netip"
	"os"
	"runtime"
	"strings"
	"testing"
	"unsafe"

	"github.com/kwarp-dev/kwarp/layer/seccomp"
	"golang.org/x/sys/unix"
)

// twoPages maps two pages and makes the second inaccessible: a string that ends at the end of
// the first page is readable, one byte more is not.
func twoPages(t *testing.T) []byte {
	ps := int(pageSize)
	b, err := unix.Mmap(-1, 0, 2*ps, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Munmap(b) })
	if err := unix.Mprotect(b[ps:], unix.PROT_NONE); err != nil {
		t.Fatal(err)
	}
	return b[:ps]
}

func addr(b []byte) uint64 { return uint64(uintptr(unsafe.Pointer(&b[0]))) }

func TestReadStringAtPageEnd(t *testing.T) {
	page := twoPages(t)
	ps := len(page)
	var m memory
	buf := make([]byte, pathMax)
	self := os.Getpid()

	// "/etc/app.conf\0" as the last bytes before the unmapped page.
	s := "/etc/app.conf"
	copy(page[ps-len(s)-1:], s+"\x00")
	n, err := m.readString(self, addr(page[ps-len(s)-1:]), buf)
	if err != nil || string(buf[:n]) != s {
		t.Errorf("string ending at the page end: %q, %v", buf[:n], err)
	}
	// No NUL before the unmapped page: the kernel would fault too.
	copy(page[ps-4:], "abcd")
	if _, err := m.readString(self, addr(page[ps-4:]), buf); err != unix.EFAULT {
		t.Errorf("unterminated string at the page end: %v, want EFAULT", err)
	}
	// A string across a page boundary (both pages mapped) reads in two steps.
	whole, err := unix.Mmap(-1, 0, 2*ps, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(whole)
	long := "/" + strings.Repeat("x", 40)
	copy(whole[ps-20:], long+"\x00")
	n, err = m.readString(self, addr(whole[ps-20:]), buf)
	if err != nil || string(buf[:n]) != long {
		t.Errorf("string across pages: %q, %v", buf[:n], err)
	}
	// Longer than PATH_MAX: ENAMETOOLONG, as the kernel says.
	for i := range whole {
		whole[i] = 'y'
	}
	if _, err := m.readString(self, addr(whole), buf); err != unix.ENAMETOOLONG {
		t.Errorf("path longer than PATH_MAX: %v, want ENAMETOOLONG", err)
	}
	if _, err := m.readString(self, 0, buf); err != unix.EFAULT {
		t.Errorf("NULL path: %v, want EFAULT", err)
	}
}

func TestWriteMemory(t *testing.T) {
	var m memory
	dst := make([]byte, 8)
	if err := m.write(os.Getpid(), addr(dst), []byte("kwarp!")); err != nil || string(dst[:6]) != "kwarp!" {
		t.Errorf("write: %q, %v", dst, err)
	}
	page := twoPages(t)
	if err := m.write(os.Getpid(), addr(page[len(page)-2:]), []byte("abcd")); err == nil {
		t.Error("a write into the unmapped page succeeded")
	}
}

func TestDirMapTranslate(t *testing.T) {
	var d dirMap
	if d.active() {
		t.Fatal("empty map is active")
	}
	d.add("/tmp/kwarp/dir1", "/kwarp-remote/etc")
	d.add("/tmp/kwarp/dir2", "/kwarp-remote/etc/sub")
	for in, want := range map[string]string{
		"/tmp/kwarp/dir1":             "/kwarp-remote/etc",
		"/tmp/kwarp/dir1/app.conf":    "/kwarp-remote/etc/app.conf",
		"/tmp/kwarp/dir2/deeper/leaf": "/kwarp-remote/etc/sub/deeper/leaf",
		"/tmp/kwarp/dir10/x":          "/tmp/kwarp/dir10/x", // a prefix of a name is not a parent
		"/tmp/kwarp":                  "/tmp/kwarp",
		"/etc/hostname":               "/etc/hostname",
		"/":                           "/",
	} {
		if got := d.translate(in); got != want {
			t.Errorf("translate(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestToStatx(t *testing.T) {
	st := unix.Stat_t{
		Dev: unix.Mkdev(8, 1), Ino: 42, Nlink: 3, Mode: unix.S_IFREG | 0o640, Uid: 1, Gid: 2,
		Size: 27, Blksize: 4096, Blocks: 8,
		Atim: unix.Timespec{Sec: 10, Nsec: 1}, Mtim: unix.Timespec{Sec: 20, Nsec: 2}, Ctim: unix.Timespec{Sec: 30, Nsec: 3},
	}
	var x unix.Statx_t
	// Like the kernel, every basic field whatever the mask (ls asks for STATX_MODE and reads
	// the file type from stx_mode too); never the birth time, which stat does not have.
	toStatx(&st, unix.STATX_MODE|unix.STATX_BTIME, &x)
	if x.Mask != unix.STATX_BASIC_STATS {
		t.Errorf("mask %#x, want STATX_BASIC_STATS", x.Mask)
	}
	if x.Mode != unix.S_IFREG|0o640 || x.Ino != 42 || x.Nlink != 3 || x.Uid != 1 || x.Gid != 2 ||
		x.Blocks != 8 || x.Mtime.Sec != 20 || x.Mtime.Nsec != 2 || x.Dev_major != 8 || x.Dev_minor != 1 {
		t.Errorf("basic stats %+v", x)
	}
	if unsafe.Sizeof(x) != 256 {
		t.Errorf("struct statx is 256 bytes, Statx_t is %d", unsafe.Sizeof(x))
	}
}

func TestDecode(t *testing.T) {
	atfdcwd := uint64(uint32(0xffffff9c)) // AT_FDCWD as a 32-bit int in a 64-bit register
	tests := []struct {
		k    kind
		args [6]uint64
		want call
	}{
		{kOpenat, [6]uint64{atfdcwd, 0x1000, unix.O_RDONLY | unix.O_CLOEXEC, 0},
			call{kind: kOpenat, dirfd: unix.AT_FDCWD, pathAddr: 0x1000, flags: unix.O_CLOEXEC}},
		{kCreat, [6]uint64{0x1000, 0o644},
			call{kind: kCreat, dirfd: unix.AT_FDCWD, pathAddr: 0x1000, flags: unix.O_CREAT | unix.O_WRONLY | unix.O_TRUNC, mode: 0o644}},
		{kNewfstatat, [6]uint64{5 | 0xdead00000000, 0x1000, 0x2000, unix.AT_SYMLINK_NOFOLLOW},
			call{kind: kNewfstatat, dirfd: 5, pathAddr: 0x1000, buf: 0x2000, flags: unix.AT_SYMLINK_NOFOLLOW}},
		{kStatx, [6]uint64{atfdcwd, 0x1000, 0, unix.STATX_SIZE, 0x3000},
			call{kind: kStatx, dirfd: unix.AT_FDCWD, pathAddr: 0x1000, mask: unix.STATX_SIZE, buf: 0x3000}},
		{kReadlinkat, [6]uint64{3, 0x1000, 0x2000, uint64(uint32(0xffffffff))},
			call{kind: kReadlinkat, dirfd: 3, pathAddr: 0x1000, buf: 0x2000, size: -1}},
		{kLstat, [6]uint64{0x1000, 0x2000},
			call{kind: kLstat, dirfd: unix.AT_FDCWD, pathAddr: 0x1000, buf: 0x2000, flags: unix.AT_SYMLINK_NOFOLLOW}},
	}
	for _, tt := range tests {
		if got := decode(tt.k, &tt.args); got != tt.want {
			t.Errorf("decode(%d) = %+v, want %+v", tt.k, got, tt.want)
		}
	}
}

func TestKindTableCoversTheFileSet(t *testing.T) {
	kinds := kindTable()
	for _, name := range seccomp.FileSyscalls {
		nr, ok := seccomp.Number(name)
		if !ok {
			continue // not on this architecture
		}
		if kinds[nr] == kNone {
			t.Errorf("%s is trapped by default but not served", name)
		}
	}
}

func TestKindTableCoversTheNetSet(t *testing.T) {
	kinds := kindTable()
	for _, name := range seccomp.NetSyscalls {
		nr, ok := seccomp.Number(name)
		if !ok {
			t.Errorf("%s has no number here", name)
			continue
		}
		if kinds[nr] < kConnect {
			t.Errorf("%s is trapped for the NetHandler but not served as a socket call", name)
		}
	}
}

func TestKindTableCoversTheIncomingSet(t *testing.T) {
	kinds := kindTable()
	for _, name := range seccomp.IncomingSyscalls {
		nr, ok := seccomp.Number(name)
		if !ok {
			t.Errorf("%s has no number here", name)
			continue
		}
		if kinds[nr] < kConnect {
			t.Errorf("%s is trapped for the IncomingHandler but not served as a socket call", name)
		}
	}
}

func TestSockaddr(t *testing.T) {
	v4 := []byte{2, 0, 0, 80, 10, 255, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0}
	v6 := make([]byte, 28)
	nativePut16(v6, unix.AF_INET6)
	bePut16(v6[2:], 443)
	copy(v6[8:], netip.MustParseAddr("fd00:ff::1").AsSlice())
	mapped := make([]byte, 28)
	nativePut16(mapped, unix.AF_INET6)
	bePut16(mapped[2:], 53)
	copy(mapped[8:], netip.MustParseAddr("::ffff:10.255.0.7").AsSlice())
	scoped := append([]byte(nil), v6...)
	scoped[24] = 2
	tests := []struct {
		name string
		b    []byte
		want string // "" when not routed
		fam  int
	}{
		{"ipv4", v4, "10.255.0.1:80", unix.AF_INET},
		{"ipv4, longer length", append(append([]byte(nil), v4...), make([]byte, 100)...), "10.255.0.1:80", unix.AF_INET},
		{"ipv4, short", v4[:15], "", unix.AF_INET},
		{"ipv6", v6, "[fd00:ff::1]:443", unix.AF_INET6},
		{"ipv6 without scope id (RFC 2133 length)", v6[:24], "[fd00:ff::1]:443", unix.AF_INET6},
		{"ipv6, short", v6[:23], "", unix.AF_INET6},
		{"ipv4-mapped routes as ipv4", mapped, "10.255.0.7:53", unix.AF_INET6},
		{"scoped ipv6 stays local", scoped, "", unix.AF_INET6},
		{"AF_UNSPEC", []byte{0, 0, 0, 0}, "", 0},
		{"one byte", []byte{2}, "", 0},
	}
	for _, tt := range tests {
		ap, fam, ok := parseSockaddr(tt.b)
		if got := map[bool]string{true: ap.String(), false: ""}[ok]; got != tt.want || (ok && fam != tt.fam) {
			t.Errorf("%s: %v %d %v, want %q %d", tt.name, ap, fam, ok, tt.want, tt.fam)
		}
	}

	var b [sockaddrMax]byte
	for _, tt := range []struct {
		fam  int
		ap   string
		want string
		n    int
	}{
		{unix.AF_INET, "10.255.0.1:80", "10.255.0.1:80", 16},
		{unix.AF_INET, "[::ffff:10.255.0.1]:80", "10.255.0.1:80", 16},
		{unix.AF_INET6, "10.255.0.1:80", "10.255.0.1:80", 28}, // written IPv4-mapped, read back unmapped
		{unix.AF_INET6, "[fd00:ff::1]:443", "[fd00:ff::1]:443", 28},
		{unix.AF_INET, "[fd00:ff::1]:443", "", 0},
		{unix.AF_UNIX, "10.255.0.1:80", "", 0},
	} {
		n := putSockaddr(b[:], tt.fam, netip.MustParseAddrPort(tt.ap))
		if n != tt.n {
			t.Errorf("putSockaddr(%d, %s) = %d bytes, want %d", tt.fam, tt.ap, n, tt.n)
			continue
		}
		if n == 0 {
			continue
		}
		if tt.fam == unix.AF_INET6 && netip.MustParseAddrPort(tt.ap).Addr().Is4() {
			if got := netip.AddrFrom16([16]byte(b[8:24])); !got.Is4In6() {
				t.Errorf("IPv4 for an AF_INET6 socket: %v, want IPv4-mapped", got)
			}
		}
		if ap, _, ok := parseSockaddr(b[:n]); !ok || ap.String() != tt.want {
			t.Errorf("round trip of %s: %v %v", tt.ap, ap, ok)
		}
	}
}

// TestGatherUntrusted feeds gather the iovecs a careless or hostile process may pass: it
// must answer as the kernel would, never panic.
func TestGatherUntrusted(t *testing.T) {
	w := newWorker(nil)
	w.net = new(netBufs)
	self := os.Getpid()
	data := []byte("hello, world")
	at := addr(data)
	iov := func(vs ...iovec) *msghdr {
		buf := make([]iovec, len(vs))
		copy(buf, vs)
		h := &msghdr{Iovlen: uint64(len(vs))}
		if len(vs) > 0 {
			h.Iov = uint64(uintptr(unsafe.Pointer(&buf[0])))
		}
		t.Cleanup(func() { runtime.KeepAlive(buf) })
		return h
	}
	tests := []struct {
		name   string
		h      *msghdr
		stream bool
		want   string
		errno  unix.Errno
	}{
		{"two iovecs", iov(iovec{at, 5}, iovec{at + 5, 7}), false, "hello, world", 0},
		{"empty", iov(), false, "", 0},
		{"zero-length iovec with a bad pointer", iov(iovec{1, 0}, iovec{at, 5}), false, "hello", 0},
		{"bad pointer", iov(iovec{1, 5}), false, "", unix.EFAULT},
		{"huge length", iov(iovec{at, ^uint64(0)}), false, "", unix.EMSGSIZE},
		{"lengths that overflow when added", iov(iovec{at, 5}, iovec{at, 1<<63 + 1}), false, "", unix.EMSGSIZE},
		{"too many iovecs", &msghdr{Iov: at, Iovlen: maxIov + 1}, false, "", unix.EMSGSIZE},
	}
	for _, tt := range tests {
		got, errno := w.gather(self, tt.h, nil, tt.stream)
		if errno != tt.errno || (errno == 0 && string(got) != tt.want) {
			t.Errorf("%s: %q %v, want %q %v", tt.name, got, errno, tt.want, tt.errno)
		}
	}
	// More than a datagram holds: EMSGSIZE, or for a stream the first maxPayload bytes.
	big := make([]byte, maxPayload+100)
	for i := range big {
		big[i] = byte(i)
	}
	h := iov(iovec{at, 5}, iovec{addr(big), uint64(len(big))})
	if _, errno := w.gather(self, h, nil, false); errno != unix.EMSGSIZE {
		t.Errorf("datagram of %d bytes: %v, want EMSGSIZE", 5+len(big), errno)
	}
	got, errno := w.gather(self, h, nil, true)
	if errno != 0 || len(got) != maxPayload || string(got[:5]) != "hello" || got[5] != 0 || got[maxPayload-1] != big[maxPayload-6] {
		t.Errorf("stream of %d bytes: %d bytes, %v; want the first %d", 5+len(big), len(got), errno, maxPayload)
	}
	runtime.KeepAlive(big)
}

func TestPendingSignals(t *testing.T) {
	own, shared, threads := pendingSignals(os.Getpid())
	if own || shared || threads < 1 {
		t.Errorf("pendingSignals(self) = %v %v %d", own, shared, threads)
	}
	if own, shared, threads := pendingSignals(1 << 30); own || shared || threads != 0 {
		t.Errorf("pendingSignals of no process = %v %v %d", own, shared, threads)
	}
}

// TestPidfdForThreads: a notification names a thread; pidfd works for a thread that is not
// the leader, with PIDFD_THREAD (6.9) and, as on older kernels, through the TGID.
func TestPidfdForThreads(t *testing.T) {
	r, wr, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer wr.Close()
	// Goroutines holding their threads until one is not the main thread.
	tids := make(chan int)
	release := make(chan struct{})
	defer close(release)
	tid := os.Getpid()
	for range 8 {
		go func() {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			tids <- unix.Gettid()
			<-release
		}()
		if tid = <-tids; tid != os.Getpid() {
			break
		}
	}
	if tid == os.Getpid() {
		t.Skip("no thread other than the main one")
	}
	for _, noThread := range []bool{false, true} {
		s := &Supervisor{}
		s.noPidfdThread.Store(noThread)
		pfd, err := s.pidfd(tid)
		if err != nil {
			t.Errorf("noPidfdThread=%v: pidfd(%d): %v", noThread, tid, err)
			continue
		}
		fd, err := unix.PidfdGetfd(pfd, int(r.Fd()), 0)
		unix.Close(pfd)
		if err != nil {
			t.Errorf("noPidfdThread=%v: pidfd_getfd: %v", noThread, err)
			continue
		}
		var a, b unix.Stat_t
		unix.Fstat(fd, &a)
		unix.Fstat(int(r.Fd()), &b)
		unix.Close(fd)
		if a.Ino != b.Ino {
			t.Errorf("noPidfdThread=%v: the duplicate is another file", noThread)
		}
	}
}
