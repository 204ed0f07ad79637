package supervisor

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// pathMax is PATH_MAX: the kernel refuses longer paths (ENAMETOOLONG), so reading more is waste.
const pathMax = 4096

var pageSize = uint64(unix.Getpagesize())

// memory holds the iovecs of one worker, so reading and writing the target's memory does not
// allocate.
type memory struct {
	local  [1]unix.Iovec
	remote [1]unix.RemoteIovec
}

// readString reads the NUL-terminated string at addr in thread tid into buf and returns its
// length (at most len(buf)-1). It reads page by page with process_vm_readv, never across a page
// boundary: a string that ends just before an unmapped page must read fine, and a read that
// spans into that page would fail whole. Most paths fit the first page: one syscall.
func (m *memory) readString(tid int, addr uint64, buf []byte) (int, error) {
	if addr == 0 {
		return 0, unix.EFAULT
	}
	total := 0
	for total < len(buf) {
		chunk := int(pageSize - (addr+uint64(total))%pageSize)
		if chunk > len(buf)-total {
			chunk = len(buf) - total
		}
		if err := m.read(tid, addr+uint64(total), buf[total:total+chunk]); err != nil {
			return 0, err
		}
		for i, c := range buf[total : total+chunk] {
			if c == 0 {
				return total + i, nil
			}
		}
		total += chunk
	}
	return 0, unix.ENAMETOOLONG
}

// read copies len(buf) bytes at addr in thread tid into buf; a short read is EFAULT.
func (m *memory) read(tid int, addr uint64, buf []byte) error {
	if len(buf) == 0 {
		return nil
	}
	m.local[0].Base = &buf[0]
	m.local[0].SetLen(len(buf))
	m.remote[0] = unix.RemoteIovec{Base: uintptr(addr), Len: len(buf)}
	n, err := unix.ProcessVMReadv(tid, m.local[:], m.remote[:1], 0)
	if err != nil {
		return err
	}
	if n != len(buf) {
		return unix.EFAULT
	}
	return nil
}

// write copies buf to addr in thread tid: how stat and readlink results reach the process.
func (m *memory) write(tid int, addr uint64, buf []byte) error {
	if len(buf) == 0 {
		return nil
	}
	if addr == 0 {
		return unix.EFAULT
	}
	m.local[0].Base = &buf[0]
	m.local[0].SetLen(len(buf))
	m.remote[0] = unix.RemoteIovec{Base: uintptr(addr), Len: len(buf)}
	n, err := unix.ProcessVMWritev(tid, m.local[:], m.remote[:1], 0)
	if err != nil {
		return err
	}
	if n != len(buf) {
		return unix.EFAULT
	}
	return nil
}

// readlinkProc reads the link /proc/<tid>/<name>[<fd>] (cwd, or fd/N) into out without
// allocating: the path is built in scratch and passed to readlinkat directly.
func readlinkProc(tid int, name string, fd int, scratch, out []byte) (int, error) {
	p := append(scratch[:0], "/proc/"...)
	p = appendInt(p, tid)
	p = append(p, '/')
	p = append(p, name...)
	if fd >= 0 {
		p = appendInt(p, fd)
	}
	p = append(p, 0)
	cwd := unix.AT_FDCWD // a variable: the negative constant does not convert to uintptr
	r, _, e := unix.Syscall6(unix.SYS_READLINKAT, uintptr(cwd),
		uintptr(unsafe.Pointer(&p[0])), uintptr(unsafe.Pointer(&out[0])), uintptr(len(out)), 0, 0)
	if e != 0 {
		return 0, e
	}
	if int(r) == len(out) {
		return 0, unix.ENAMETOOLONG // possibly truncated
	}
	return int(r), nil
}

func appendInt(b []byte, v int) []byte {
	if v < 0 {
		b = append(b, '-')
		v = -v
	}
	var tmp [20]byte
	i := len(tmp)
	for {
		i--
		tmp[i] = byte('0' + v%10)
		v /= 10
		if v == 0 {
			break
		}
	}
	return append(b, tmp[i:]...)
}

// bytesOf views a fixed-size struct as bytes, for process_vm_writev.
func bytesOf[T any](v *T) []byte {
	return unsafe.Slice((*byte)(unsafe.Pointer(v)), unsafe.Sizeof(*v))
}
