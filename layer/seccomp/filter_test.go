package seccomp

import (
	"encoding/binary"
	"slices"
	"strings"
	"testing"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// vmFor loads the compiled program (the raw instructions, as the kernel gets them) into
// x/net/bpf's interpreter.
func vmFor(t *testing.T, f *Filter) *bpf.VM {
	t.Helper()
	raw := make([]bpf.RawInstruction, len(f.Program))
	for i, s := range f.Program {
		raw[i] = bpf.RawInstruction{Op: s.Code, Jt: s.Jt, Jf: s.Jf, K: s.K}
	}
	ins, ok := bpf.Disassemble(raw)
	if !ok {
		t.Fatalf("program does not disassemble: %v", raw)
	}
	vm, err := bpf.NewVM(ins)
	if err != nil {
		t.Fatal(err)
	}
	return vm
}

// seccompData lays out struct seccomp_data for the interpreter. The kernel loads 32-bit words
// in native order, the interpreter in network order; writing each word big-endian at its
// offset gives the program the same values the kernel would.
// Each 64-bit argument is two words, the low one first as on the little-endian machines
// the layer runs on.
func seccompData(nr, arch uint32, args ...uint64) []byte {
	b := make([]byte, 64)
	binary.BigEndian.PutUint32(b[offNr:], nr)
	binary.BigEndian.PutUint32(b[offArch:], arch)
	for i, a := range args {
		binary.BigEndian.PutUint32(b[offArgs+8*i:], uint32(a))
		binary.BigEndian.PutUint32(b[offArgs+8*i+4:], uint32(a>>32))
	}
	return b
}

func run(t *testing.T, vm *bpf.VM, nr, arch uint32, args ...uint64) uint32 {
	t.Helper()
	v, err := vm.Run(seccompData(nr, arch, args...))
	if err != nil {
		t.Fatal(err)
	}
	return uint32(v)
}

func mustNumber(t *testing.T, name string) uint32 {
	t.Helper()
	n, ok := Number(name)
	if !ok {
		t.Fatalf("no %s here", name)
	}
	return uint32(n)
}

// TestConditionalRules: sendto and recvfrom trap only with an address (args[4]), whichever
// half of the pointer is non-zero; the other net calls trap always; the file set is unchanged.
func TestConditionalRules(t *testing.T) {
	f, err := NewFilter(FileSyscalls, NetRules...)
	if err != nil {
		t.Fatal(err)
	}
	vm := vmFor(t, f)
	const (
		notify = unix.SECCOMP_RET_USER_NOTIF
		allow  = unix.SECCOMP_RET_ALLOW
	)
	tests := []struct {
		name string
		call string
		args []uint64
		want uint32
	}{
		{"sendto without dest", "sendto", []uint64{3, 0x7fff0000, 10, 0, 0, 0}, allow},
		{"sendto with dest", "sendto", []uint64{3, 0x7fff0000, 10, 0, 0x7ffe1234, 16}, notify},
		{"sendto with dest in the high half", "sendto", []uint64{3, 0, 10, 0, 0x7ffe << 32, 16}, notify},
		{"sendto, other args set, no dest", "sendto", []uint64{^uint64(0), ^uint64(0), ^uint64(0), ^uint64(0), 0, ^uint64(0)}, allow},
		{"recvfrom without src", "recvfrom", []uint64{3, 0x7fff0000, 10, 0, 0, 0}, allow},
		{"recvfrom with src", "recvfrom", []uint64{3, 0x7fff0000, 10, 0, 0x7ffe1234, 0x7ffe1300}, notify},
		{"connect", "connect", []uint64{3, 0, 0}, notify},
		{"sendmsg", "sendmsg", nil, notify},
		{"sendmmsg", "sendmmsg", nil, notify},
		{"recvmsg", "recvmsg", nil, notify},
		{"recvmmsg", "recvmmsg", nil, notify},
		{"getpeername", "getpeername", nil, notify},
		{"getsockname", "getsockname", nil, notify},
		{"openat", "openat", nil, notify},
		{"socket", "socket", nil, allow},
		{"bind", "bind", []uint64{0, 1, 2, 3, 4, 5}, allow},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := run(t, vm, mustNumber(t, tt.call), AuditArch, tt.args...); got != tt.want {
				t.Errorf("verdict %#x, want %#x", got, tt.want)
			}
		})
	}
	for _, name := range NetSyscalls {
		if !slices.Contains(f.Trapped, name) {
			t.Errorf("%s is not in Trapped %v", name, f.Trapped)
		}
	}
	// the backstops still hold with blocks between the compares and the verdicts
	if got := run(t, vm, mustNumber(t, "sendto"), AuditArch^1, 0, 0, 0, 0, 1); got != unix.SECCOMP_RET_KILL_PROCESS {
		t.Errorf("foreign arch sendto: verdict %#x", got)
	}
}

// TestIncomingRules: accept and accept4 trap only with an address buffer (args[1]); listen,
// getpeername and getsockname always; combined with NetRules the shared calls trap always.
func TestIncomingRules(t *testing.T) {
	const (
		notify = unix.SECCOMP_RET_USER_NOTIF
		allow  = unix.SECCOMP_RET_ALLOW
	)
	tests := []struct {
		name string
		call string
		args []uint64
		want uint32
	}{
		{"listen", "listen", []uint64{3, 128}, notify},
		{"accept without addr", "accept", []uint64{3, 0, 0}, allow},
		{"accept with addr", "accept", []uint64{3, 0x7ffe1234, 0x7ffe1300}, notify},
		{"accept with addr in the high half", "accept", []uint64{3, 0x7ffe << 32, 0x7ffe1300}, notify},
		{"accept4 without addr", "accept4", []uint64{3, 0, 0, unix.SOCK_CLOEXEC | unix.SOCK_NONBLOCK}, allow},
		{"accept4 with addr", "accept4", []uint64{3, 0x7ffe1234, 0x7ffe1300, unix.SOCK_CLOEXEC}, notify},
		{"accept4, other args set, no addr", "accept4", []uint64{^uint64(0), 0, ^uint64(0), ^uint64(0), ^uint64(0), ^uint64(0)}, allow},
		{"getpeername", "getpeername", nil, notify},
		{"getsockname", "getsockname", nil, notify},
		{"connect", "connect", []uint64{3, 1, 16}, allow},
		{"bind", "bind", []uint64{3, 1, 16}, allow},
	}
	for _, set := range []struct {
		name  string
		rules []Rule
	}{{"incoming", IncomingRules}, {"incoming+net", append(slices.Clone(IncomingRules), NetRules...)}} {
		f, err := NewFilter(nil, set.rules...)
		if err != nil {
			t.Fatal(err)
		}
		vm := vmFor(t, f)
		for _, tt := range tests {
			want := tt.want
			if set.name == "incoming+net" && tt.call == "connect" {
				want = notify
			}
			if got := run(t, vm, mustNumber(t, tt.call), AuditArch, tt.args...); got != want {
				t.Errorf("%s: %s: verdict %#x, want %#x", set.name, tt.name, got, want)
			}
		}
		for _, name := range IncomingSyscalls {
			if !slices.Contains(f.Trapped, name) {
				t.Errorf("%s: %s is not in Trapped %v", set.name, name, f.Trapped)
			}
		}
	}
}

func TestRuleMerging(t *testing.T) {
	sendto := mustNumber(t, "sendto")
	tests := []struct {
		name  string
		trap  []string
		rules []Rule
		args  []uint64
		want  uint32
	}{
		{"named and conditional: always", []string{"sendto"}, []Rule{{Name: "sendto", When: ArgNonZero(4)}}, nil, unix.SECCOMP_RET_USER_NOTIF},
		{"conditional then unconditional: always", nil, []Rule{{Name: "sendto", When: ArgNonZero(4)}, {Name: "sendto"}}, nil, unix.SECCOMP_RET_USER_NOTIF},
		{"two conditions, first holds", nil, []Rule{{Name: "sendto", When: ArgNonZero(4)}, {Name: "sendto", When: ArgNonZero(3)}}, []uint64{0, 0, 0, 0, 1}, unix.SECCOMP_RET_USER_NOTIF},
		{"two conditions, second holds", nil, []Rule{{Name: "sendto", When: ArgNonZero(4)}, {Name: "sendto", When: ArgNonZero(3)}}, []uint64{0, 0, 0, 1 << 40, 0}, unix.SECCOMP_RET_USER_NOTIF},
		{"two conditions, none holds", nil, []Rule{{Name: "sendto", When: ArgNonZero(4)}, {Name: "sendto", When: ArgNonZero(3)}}, []uint64{1, 1, 1, 0, 0, 1}, unix.SECCOMP_RET_ALLOW},
		{"argument 0", nil, []Rule{{Name: "sendto", When: ArgNonZero(0)}}, []uint64{1}, unix.SECCOMP_RET_USER_NOTIF},
		{"argument 5", nil, []Rule{{Name: "sendto", When: ArgNonZero(5)}}, []uint64{0, 0, 0, 0, 0, 1 << 63}, unix.SECCOMP_RET_USER_NOTIF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := NewFilter(tt.trap, tt.rules...)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(f.Trapped, []string{"sendto"}) {
				t.Errorf("Trapped %v", f.Trapped)
			}
			if got := run(t, vmFor(t, f), sendto, AuditArch, tt.args...); got != tt.want {
				t.Errorf("verdict %#x, want %#x", got, tt.want)
			}
		})
	}
	for _, bad := range []int{-1, 6} {
		if _, err := NewFilter(nil, Rule{Name: "sendto", When: ArgNonZero(bad)}); err == nil || !strings.Contains(err.Error(), "out of range") {
			t.Errorf("ArgNonZero(%d): %v, want out of range", bad, err)
		}
	}
	if _, err := NewFilter(nil, Rule{Name: "sendtoo", When: ArgNonZero(4)}); err == nil {
		t.Error("unknown name in a rule: no error")
	}
}

// TestConditionalFilterExhaustive: every known call, with and without args[4], against the
// full session set: only sendto and recvfrom depend on it.
func TestConditionalFilterExhaustive(t *testing.T) {
	f, err := NewFilter(FileSyscalls, NetRules...)
	if err != nil {
		t.Fatal(err)
	}
	vm := vmFor(t, f)
	for _, name := range Names() {
		nr, _ := Number(name)
		for _, a4 := range []uint64{0, 0xdead} {
			want := uint32(unix.SECCOMP_RET_ALLOW)
			switch {
			case name == "io_uring_setup":
				want = unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS)
			case (name == "sendto" || name == "recvfrom") && a4 == 0:
			case slices.Contains(FileSyscalls, name) || slices.Contains(NetSyscalls, name):
				want = unix.SECCOMP_RET_USER_NOTIF
			}
			if got := run(t, vm, uint32(nr), AuditArch, 0, 0, 0, 0, a4, 0); got != want {
				t.Errorf("%s args[4]=%#x: verdict %#x, want %#x", name, a4, got, want)
			}
		}
	}
}

func TestFilterVerdicts(t *testing.T) {
	f, err := NewFilter(FileSyscalls)
	if err != nil {
		t.Fatal(err)
	}
	vm := vmFor(t, f)
	nr := func(name string) uint32 {
		n, ok := Number(name)
		if !ok {
			t.Fatalf("no %s here", name)
		}
		return uint32(n)
	}
	tests := []struct {
		name string
		nr   uint32
		arch uint32
		want uint32
	}{
		{"trapped openat", nr("openat"), AuditArch, unix.SECCOMP_RET_USER_NOTIF},
		{"trapped execve", nr("execve"), AuditArch, unix.SECCOMP_RET_USER_NOTIF},
		{"untrapped getpid", nr("getpid"), AuditArch, unix.SECCOMP_RET_ALLOW},
		{"untrapped connect", nr("connect"), AuditArch, unix.SECCOMP_RET_ALLOW},
		{"untrapped read (0)", 0, AuditArch, unix.SECCOMP_RET_ALLOW},
		{"io_uring_setup refused", nr("io_uring_setup"), AuditArch, unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS)},
		{"i386 call killed", 5, unix.AUDIT_ARCH_I386, unix.SECCOMP_RET_KILL_PROCESS},
		{"foreign arch killed", nr("openat"), AuditArch ^ 1, unix.SECCOMP_RET_KILL_PROCESS},
	}
	if x32SyscallBit != 0 {
		tests = append(tests, struct {
			name string
			nr   uint32
			arch uint32
			want uint32
		}{"x32 openat refused", x32SyscallBit | nr("openat"), AuditArch, unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS)})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := run(t, vm, tt.nr, tt.arch); got != tt.want {
				t.Errorf("verdict %#x, want %#x", got, tt.want)
			}
		})
	}
}

// TestFilterTrapsExactlyTheSet checks every call this package knows: trapped iff asked for.
func TestFilterTrapsExactlyTheSet(t *testing.T) {
	trap := []string{"openat", "connect", "execve", "statx"}
	f, err := NewFilter(trap)
	if err != nil {
		t.Fatal(err)
	}
	vm := vmFor(t, f)
	for _, name := range Names() {
		nr, _ := Number(name)
		want := uint32(unix.SECCOMP_RET_ALLOW)
		switch {
		case name == "io_uring_setup":
			want = unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS)
		case slices.Contains(trap, name):
			want = unix.SECCOMP_RET_USER_NOTIF
		}
		if got := run(t, vm, uint32(nr), AuditArch); got != want {
			t.Errorf("%s (%d): verdict %#x, want %#x", name, nr, got, want)
		}
	}
}

func TestNewFilterNames(t *testing.T) {
	f, err := NewFilter([]string{"statx", "openat", "openat", "statx"})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"openat", "statx"}; !slices.Equal(f.Trapped, want) {
		t.Errorf("Trapped %v, want %v (sorted, deduplicated)", f.Trapped, want)
	}
	for _, tt := range []struct {
		names []string
		err   string
	}{
		{[]string{"openat", "opennat"}, `unknown syscall "opennat"`},
		{[]string{"io_uring_setup"}, "always refused"},
	} {
		if _, err := NewFilter(tt.names); err == nil || !strings.Contains(err.Error(), tt.err) {
			t.Errorf("NewFilter(%v): %v, want an error with %q", tt.names, err, tt.err)
		}
	}
	// An empty set is a valid filter: only the backstops.
	if _, err := NewFilter(nil); err != nil {
		t.Errorf("NewFilter(nil): %v", err)
	}
}

func TestEveryFileSyscallIsKnown(t *testing.T) {
	for _, name := range slices.Concat(FileSyscalls, NetSyscalls, IncomingSyscalls) {
		if !Known(name) {
			t.Errorf("%s is not in the syscall table", name)
		}
	}
	for nr, name := range syscallNames {
		if name != "" {
			if got, _ := Number(name); got != nr {
				t.Errorf("Name/Number disagree for %s: %d vs %d", name, got, nr)
			}
		}
	}
}

func TestProgramEncoding(t *testing.T) {
	f, err := NewFilter(FileSyscalls)
	if err != nil {
		t.Fatal(err)
	}
	b := EncodeProgram(f.Program)
	got, err := DecodeProgram(b)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, f.Program) {
		t.Errorf("round trip changed the program")
	}
	for _, bad := range [][]byte{nil, b[:len(b)-1], make([]byte, 8*(unix.BPF_MAXINSNS+1))} {
		if _, err := DecodeProgram(bad); err == nil {
			t.Errorf("DecodeProgram of %d bytes: no error", len(bad))
		}
	}
}
