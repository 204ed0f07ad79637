package supervisor

import (
	"os"
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
