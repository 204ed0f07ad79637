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
func seccompData(nr, arch uint32) []byte {
	b := make([]byte, 64)
	binary.BigEndian.PutUint32(b[offNr:], nr)
	binary.BigEndian.PutUint32(b[offArch:], arch)
	return b
}

func run(t *testing.T, vm *bpf.VM, nr, arch uint32) uint32 {
	t.Helper()
	v, err := vm.Run(seccompData(nr, arch))
	if err != nil {
		t.Fatal(err)
	}
	return uint32(v)
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
	for _, name := range FileSyscalls {
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
