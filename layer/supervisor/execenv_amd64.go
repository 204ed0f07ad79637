package supervisor

import (
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/kwarp-dev/kwarp/layer/seccomp"
)

func seccompErr(id uint64, errno int32) seccomp.Resp { return seccomp.Resp{ID: id, Error: -errno} }

// belowStack writes blob below the stopped thread's stack pointer, past the red zone, and
// returns its address: memory the thread does not use while it is in a syscall.
func belowStack(tid int, regs *unix.PtraceRegs, mem *memory, size int, fill func(base uint64) []byte) (uint64, error) {
	base := (regs.Rsp - redZone - uint64(size) - 64) &^ 15
	if err := mem.write(tid, base, fill(base)); err != nil {
		return 0, fmt.Errorf("write below the stack of %d: %w", tid, err)
	}
	return base, nil
}

// setExecEnv points the stopped thread's exec at env, written below its stack.
func setExecEnv(tid int, regs *unix.PtraceRegs, env []string, mem *memory) error {
	nrExecve, _ := seccomp.Number("execve")
	nrExecveat, _ := seccomp.Number("execveat")
	if int(regs.Orig_rax) != nrExecve && int(regs.Orig_rax) != nrExecveat {
		return fmt.Errorf("thread %d stopped in syscall %d, not an exec", tid, regs.Orig_rax)
	}
	base, err := belowStack(tid, regs, mem, len(packEnv(env, 0)), func(b uint64) []byte { return packEnv(env, b) })
	if err != nil {
		return err
	}
	if int(regs.Orig_rax) == nrExecve {
		regs.Rdx = base
	} else {
		regs.R10 = base
	}
	return nil
}

// setChdirPath points the stopped thread's chdir at path.
func setChdirPath(tid int, regs *unix.PtraceRegs, path string, mem *memory) error {
	if nr, _ := seccomp.Number("chdir"); int(regs.Orig_rax) != nr {
		return fmt.Errorf("thread %d stopped in syscall %d, not chdir", tid, regs.Orig_rax)
	}
	b := append([]byte(path), 0)
	base, err := belowStack(tid, regs, mem, len(b), func(uint64) []byte { return b })
	if err != nil {
		return err
	}
	regs.Rdi = base
	return nil
}
