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

// Offset of seccomp_data.args[0]; each argument is a 64-bit word.
const offArgs = 16

// Filter is a compiled seccomp program: what the launcher installs before exec.
type Filter struct {
	// Trapped are the names answered by the supervisor, sorted, those trapped only under a
	// condition included; names this architecture does not have are left out.
	Trapped []string
	// Program is the classic BPF program, ready for seccomp(SECCOMP_SET_MODE_FILTER).
	Program []unix.SockFilter
}

// Rule traps one syscall by name, every call or only those its condition picks.
type Rule struct {
	Name string
	// When narrows the rule; the zero Cond traps every call.
	When Cond
}

// Cond picks the calls a Rule traps by their scalar arguments (pointer arguments are
// numbers to the filter: it can tell "passed" from NULL, nothing of what they point to).
type Cond struct {
	nonZero uint8 // bit i: trapped when args[i] != 0
	bad     bool  // an argument index out of range, refused by NewFilter
}

// ArgNonZero traps the call only when argument i (0 to 5) is not zero: a pointer the caller
// passed, a flag word with some bit set. Several rules for one call trap it when any holds.
func ArgNonZero(i int) Cond {
	if i < 0 || i > 5 {
		return Cond{bad: true}
	}
	return Cond{nonZero: 1 << i}
}

// NewFilter compiles the filter that traps the named syscalls, every call of each, and the
// calls the rules pick with SECCOMP_RET_USER_NOTIF, and allows everything else, with three
// backstops that keep the layer from being bypassed:
//
//   - a call made with a foreign architecture's convention (a 32-bit program, or int 0x80 from
//     a 64-bit one) kills the process: its numbers mean other calls, so none of them is
//     trapped, and an ENOSYS answer to every call (exit included) could spin forever;
//   - an x32 call (x86-64 only) fails with ENOSYS, as on the many kernels built without x32;
//   - io_uring_setup fails with ENOSYS: io_uring performs opens and connects the filter never
//     sees, and every io_uring user falls back to plain syscalls on ENOSYS.
//
// The set is a parameter so a session traps only what its features need: local work pays
// nothing for calls that are not trapped. A call both named and picked by a rule is trapped
// always.
func NewFilter(trap []string, rules ...Rule) (*Filter, error) {
	if AuditArch == 0 {
		return nil, errors.New("seccomp: the layer does not support this architecture (amd64 and arm64 only)")
	}
	all := make([]Rule, 0, len(trap)+len(rules))
	for _, name := range trap {
		all = append(all, Rule{Name: name})
	}
	all = append(all, rules...)

	masks := map[int]uint8{} // by number; 0 traps every call
	var names []string
	for _, r := range all {
		if r.When.bad {
			return nil, fmt.Errorf("seccomp: rule for %s: argument index out of range (0-5)", r.Name)
		}
		nr, ok := Number(r.Name)
		if !ok {
			if Known(r.Name) {
				continue // the architecture has no such call: nothing can make it
			}
			return nil, fmt.Errorf("seccomp: unknown syscall %q", r.Name)
		}
		if r.Name == "io_uring_setup" {
			return nil, errors.New("seccomp: io_uring_setup is always refused with ENOSYS, it cannot be trapped")
		}
		m, seen := masks[nr]
		switch {
		case !seen:
			names = append(names, r.Name)
			masks[nr] = r.When.nonZero
		case m != 0 && r.When.nonZero != 0:
			masks[nr] = m | r.When.nonZero
		default:
			masks[nr] = 0
		}
	}
	if len(names) > maxTrapped {
		return nil, fmt.Errorf("seccomp: %d syscalls trapped; at most %d fit the filter", len(names), maxTrapped)
	}
	sort.Strings(names)
	traps := make([]trapped, len(names))
	for i, n := range names {
		nr, _ := Number(n)
		traps[i] = trapped{nr: nr, nonZero: masks[nr]}
	}
	ins, err := instructions(traps)
	if err != nil {
		return nil, err
	}
	prog, err := assemble(ins)
	if err != nil {
		return nil, err
	}
	return &Filter{Trapped: names, Program: prog}, nil
}

// trapped is one number of the filter; nonZero, when set, names the arguments of which one
// must be non-zero for the call to trap.
type trapped struct {
	nr      int
	nonZero uint8
}

// instructions lays the program out as: arch check, x32 check, io_uring check, one compare per
// trapped number, "allow" for the rest, then one block per conditional number, then the four
// verdicts. A linear scan is fine: at a few nanoseconds per compare, twenty compares are noise
// next to a syscall. Classic BPF only jumps forward, so the blocks sit between the compares
// and the verdicts they end in.
//
// A block tests the two 32-bit halves of each argument: "non-zero" holds when either half
// is, whatever the byte order, so the loads need not know which half is which.
func instructions(traps []trapped) ([]bpf.Instruction, error) {
	var p []bpf.Instruction
	// Jumps are patched once every label's place is known.
	type patch struct {
		at     int
		label  int
		onTrue bool
	}
	const (
		vAllow = iota
		vNotify
		vENOSYS
		vKill
		firstBlock // labels from here on are the conditional blocks, by index into traps
	)
	var patches []patch
	jump := func(cond bpf.JumpTest, val uint32, label int, onTrue bool) {
		patches = append(patches, patch{at: len(p), label: label, onTrue: onTrue})
		p = append(p, bpf.JumpIf{Cond: cond, Val: val})
	}
	p = append(p, bpf.LoadAbsolute{Off: offArch, Size: 4})
	jump(bpf.JumpNotEqual, AuditArch, vKill, true)
	p = append(p, bpf.LoadAbsolute{Off: offNr, Size: 4})
	if x32SyscallBit != 0 {
		jump(bpf.JumpBitsSet, x32SyscallBit, vENOSYS, true)
	}
	jump(bpf.JumpEqual, uint32(syscallNumbers["io_uring_setup"]), vENOSYS, true)
	for i, t := range traps {
		target := vNotify
		if t.nonZero != 0 {
			target = firstBlock + i
		}
		jump(bpf.JumpEqual, uint32(t.nr), target, true)
	}
	p = append(p, bpf.RetConstant{Val: retAllow})

	labels := map[int]int{}
	for i, t := range traps {
		if t.nonZero == 0 {
			continue
		}
		labels[firstBlock+i] = len(p)
		for a := range uint32(6) {
			if t.nonZero&(1<<a) == 0 {
				continue
			}
			for _, half := range []uint32{0, 4} {
				p = append(p, bpf.LoadAbsolute{Off: offArgs + 8*a + half, Size: 4})
				jump(bpf.JumpNotEqual, 0, vNotify, true)
			}
		}
		p = append(p, bpf.RetConstant{Val: retAllow})
	}

	for v, ret := range []uint32{retAllow, retNotify, retENOSYS, retKillAll} {
		labels[v] = len(p)
		p = append(p, bpf.RetConstant{Val: ret})
	}
	for _, pt := range patches {
		j := p[pt.at].(bpf.JumpIf)
		skip := labels[pt.label] - pt.at - 1
		if skip < 0 || skip > 255 {
			return nil, fmt.Errorf("seccomp: filter too long: a jump of %d instructions does not fit classic BPF", skip)
		}
		if pt.onTrue {
			j.SkipTrue = uint8(skip)
		} else {
			j.SkipFalse = uint8(skip)
		}
		p[pt.at] = j
	}
	return p, nil
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
