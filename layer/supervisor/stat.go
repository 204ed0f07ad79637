package supervisor

import (
	"bytes"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// toStatx answers statx(2) from a struct stat. Like the kernel, it fills every basic field
// whatever the mask asked (the mask is a hint: programs such as ls ask for STATX_MODE alone and
// still read the file type from stx_mode) and says so in stx_mask. Fields stat does not have
// (birth time, mount id, DIO alignment) are never reported.
func toStatx(st *unix.Stat_t, _ uint32, out *unix.Statx_t) {
	*out = unix.Statx_t{
		Mask:       unix.STATX_BASIC_STATS,
		Blksize:    uint32(st.Blksize),
		Nlink:      uint32(st.Nlink),
		Uid:        st.Uid,
		Gid:        st.Gid,
		Mode:       uint16(st.Mode),
		Ino:        st.Ino,
		Size:       uint64(st.Size),
		Blocks:     uint64(st.Blocks),
		Atime:      unix.StatxTimestamp{Sec: int64(st.Atim.Sec), Nsec: uint32(st.Atim.Nsec)},
		Mtime:      unix.StatxTimestamp{Sec: int64(st.Mtim.Sec), Nsec: uint32(st.Mtim.Nsec)},
		Ctime:      unix.StatxTimestamp{Sec: int64(st.Ctim.Sec), Nsec: uint32(st.Ctim.Nsec)},
		Dev_major:  unix.Major(st.Dev),
		Dev_minor:  unix.Minor(st.Dev),
		Rdev_major: unix.Major(st.Rdev),
		Rdev_minor: unix.Minor(st.Rdev),
	}
}

// Limits on what is read of an exec's argv and envp for OnExec. A string is never longer than
// the kernel's MAX_ARG_STRLEN (32 pages); the counts are far below the kernel's own limits
// (argv and envp share about a quarter of the stack rlimit), enough for any real command.
const (
	maxArgStrlen   = 32 * 4096
	maxExecStrings = 4096
	maxExecBytes   = 1 << 20 // over all strings of one array
)

// readStrings reads a NULL-terminated array of string pointers (argv, envp) from thread tid.
// A string longer than buf is cut at len(buf)-1 bytes; reading stops quietly at the caps or at
// the first unreadable pointer: the result is for a hook, the exec itself is the kernel's.
func (m *memory) readStrings(tid int, addr uint64, buf []byte) []string {
	if addr == 0 {
		return nil
	}
	var out []string
	var ptrs [64]uint64
	total := 0
	for len(out) < maxExecStrings && total < maxExecBytes {
		// Read a block of pointers, never across a page boundary.
		room := (pageSize - addr%pageSize) / 8
		n := uint64(len(ptrs))
		if room < n {
			n = room
		}
		if n == 0 || m.read(tid, addr, bytesOf(&ptrs)[:n*8]) != nil {
			return out
		}
		for _, p := range ptrs[:n] {
			if p == 0 || len(out) >= maxExecStrings || total >= maxExecBytes {
				return out
			}
			l, err := m.readString(tid, p, buf)
			if err == unix.ENAMETOOLONG {
				l, err = len(buf)-1, nil
			}
			if err != nil {
				return out
			}
			out = append(out, string(buf[:l]))
			total += l
		}
		addr += n * 8
	}
	return out
}

// tgid maps a thread id to its process id (notifications carry the TID), reading
// /proc/<tid>/status; the TID itself when that fails.
func tgid(tid int) int {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(tid) + "/status")
	if err != nil {
		return tid
	}
	i := bytes.Index(b, []byte("\nTgid:"))
	if i < 0 {
		return tid
	}
	line := b[i+len("\nTgid:"):]
	if j := bytes.IndexByte(line, '\n'); j >= 0 {
		line = line[:j]
	}
	v, err := strconv.Atoi(string(bytes.TrimSpace(line)))
	if err != nil {
		return tid
	}
	return v
}
