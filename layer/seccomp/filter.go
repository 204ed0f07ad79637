package seccomp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sort"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// Offsets of struct seccomp_data, what a seccomp BPF program reads. 32-bit loads are native
// endian in the kernel's seccomp BPF.
const (
	offNr   = 0
	offArch = 4
)

// Verdicts the filter returns.
const (
	retAllow   = unix.SECCOMP_RET_ALLOW
	retNotify  = unix.SECCOMP_RET_USER_NOTIF
	retENOSYS  = unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS)
	retKillAll = unix.SECCOMP_RET_KILL_PROCESS
)

// maxTrapped keeps every jump of the program within the 8-bit offsets of classic BPF.
const maxTrapped = 200

// Filter is a compiled seccomp program: what the launcher installs before exec.
type Filter struct {
	// Trapped are the names answered by the supervisor, sorted; names this architecture does
	// not have are left out.
	Trapped []string
	// Program is the classic BPF program, ready for seccomp(SECCOMP_SET_MODE_FILTER).
	Program []unix.SockFilter
}

// NewFilter compiles the filter that traps the named syscalls with SECCOMP_RET_USER_NOTIF and
// allows everything else, with three backstops that keep the layer from being bypassed:
//
//   - a call made with a foreign architecture's convention (a 32-bit program, or int 0x80 from
//     a 64-bit one) kills the process: its numbers mean other calls, so none of them is
//     trapped, and an ENOSYS answer to every call (exit included) could spin forever;
//   - an x32 call (x86-64 only) fails with ENOSYS, as on the many kernels built without x32;
//   - io_uring_setup fails with ENOSYS: io_uring performs opens and connects the filter never
//     sees, and every io_uring user falls back to plain syscalls on ENOSYS.
//
// The set is a parameter so a session traps only what its features need: local work pays
// nothing for calls that are not trapped.
func NewFilter(trap []string) (*Filter, error) {
	if AuditArch == 0 {
		return nil, errors.New("seccomp: the layer does not support this architecture (amd64 and arm64 only)")
	}
	seen := map[int]bool{}
	var names []string
	for _, name := range trap {
		nr, ok := Number(name)
		if !ok {
			if Known(name) {
				continue // the architecture has no such call: nothing can make it
			}
			return nil, fmt.Errorf("seccomp: unknown syscall %q", name)
		}
		if name == "io_uring_setup" {
			return nil, errors.New("seccomp: io_uring_setup is always refused with ENOSYS, it cannot be trapped")
		}
		if !seen[nr] {
			seen[nr] = true
			names = append(names, name)
		}
	}
	if len(names) > maxTrapped {
		return nil, fmt.Errorf("seccomp: %d syscalls trapped; at most %d fit the filter", len(names), maxTrapped)
	}
	sort.Strings(names)
	nrs := make([]int, len(names))
	for i, n := range names {
		nrs[i], _ = Number(n)
	}
	prog, err := assemble(instructions(nrs))
	if err != nil {
		return nil, err
	}
	return &Filter{Trapped: names, Program: prog}, nil
}

// instructions lays the program out as: arch check, x32 check, io_uring check, one compare per
// trapped number, then the four verdicts. A linear scan is fine: at a few nanoseconds per
// compare, twenty compares are noise next to a syscall.
func instructions(nrs []int) []bpf.Instruction {
	var p []bpf.Instruction
	// Jumps to the verdicts are patched after the layout is known.
	type patch struct {
		at     int
		target int // index into verdicts
		onTrue bool
	}
	const (
		vAllow = iota
		vNotify
		vENOSYS
		vKill
	)
	var patches []patch
	jump := func(cond bpf.JumpTest, val uint32, target int, onTrue bool) {
		patches = append(patches, patch{at: len(p), target: target, onTrue: onTrue})
		p = append(p, bpf.JumpIf{Cond: cond, Val: val})
	}

	p = append(p, bpf.LoadAbsolute{Off: offArch, Size: 4})
	jump(bpf.JumpNotEqual, AuditArch, vKill, true)
	p = append(p, bpf.LoadAbsolute{Off: offNr, Size: 4})
	if x32SyscallBit != 0 {
		jump(bpf.JumpBitsSet, x32SyscallBit, vENOSYS, true)
	}
	jump(bpf.JumpEqual, uint32(syscallNumbers["io_uring_setup"]), vENOSYS, true)
	for _, nr := range nrs {
		jump(bpf.JumpEqual, uint32(nr), vNotify, true)
	}
	verdictAt := len(p)
	p = append(p,
		bpf.RetConstant{Val: retAllow},
		bpf.RetConstant{Val: retNotify},
		bpf.RetConstant{Val: retENOSYS},
		bpf.RetConstant{Val: retKillAll},
	)
	for _, pt := range patches {
		j := p[pt.at].(bpf.JumpIf)
		skip := uint8(verdictAt + pt.target - pt.at - 1)
		if pt.onTrue {
			j.SkipTrue = skip
		} else {
			j.SkipFalse = skip
		}
		p[pt.at] = j
	}
	return p
}

func assemble(ins []bpf.Instruction) ([]unix.SockFilter, error) {
	raw, err := bpf.Assemble(ins)
	if err != nil {
		return nil, fmt.Errorf("seccomp: assemble filter: %w", err)
	}
	out := make([]unix.SockFilter, len(raw))
	for i, r := range raw {
		out[i] = unix.SockFilter{Code: r.Op, Jt: r.Jt, Jf: r.Jf, K: r.K}
	}
	return out, nil
}

// EncodeProgram serialises a program as struct sock_filter entries in native byte order, the
// form the launcher receives over its socket (both ends run on the same machine).
func EncodeProgram(prog []unix.SockFilter) []byte {
	b := make([]byte, 0, 8*len(prog))
	for _, f := range prog {
		b = binary.NativeEndian.AppendUint16(b, f.Code)
		b = append(b, f.Jt, f.Jf)
		b = binary.NativeEndian.AppendUint32(b, f.K)
	}
	return b
}

// DecodeProgram is the inverse of EncodeProgram.
func DecodeProgram(b []byte) ([]unix.SockFilter, error) {
	if len(b) == 0 || len(b)%8 != 0 {
		return nil, fmt.Errorf("seccomp: program of %d bytes is not a whole number of instructions", len(b))
	}
	if len(b)/8 > unix.BPF_MAXINSNS {
		return nil, fmt.Errorf("seccomp: program of %d instructions is longer than the kernel allows", len(b)/8)
	}
	out := make([]unix.SockFilter, len(b)/8)
	for i := range out {
		e := b[i*8:]
		out[i] = unix.SockFilter{
			Code: binary.NativeEndian.Uint16(e),
			Jt:   e[2],
			Jf:   e[3],
			K:    binary.NativeEndian.Uint32(e[4:]),
		}
	}
	return out, nil
}
