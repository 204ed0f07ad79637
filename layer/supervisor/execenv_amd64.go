package supervisor

import (
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/kwarp-dev/kwarp/layer/seccomp"
)

func seccompErr(id uint64, errno int32) seccomp.Resp { return seccomp.Resp{ID: id, Error: -errno} }

// setExecEnv points the stopped thread's exec at env, written below its stack.
func setExecEnv(tid int, env []string, mem *memory) error {
	var regs unix.PtraceRegs
	if err := unix.PtraceGetRegs(tid, &regs); err != nil {
		return fmt.Errorf("ptrace getregs %d: %w", tid, err)
	}
	nrExecve, _ := seccomp.Number("execve")
	nrExecveat, _ := seccomp.Number("execveat")
	if int(regs.Orig_rax) != nrExecve && int(regs.Orig_rax) != nrExecveat {
		return fmt.Errorf("thread %d stopped in syscall %d, not an exec", tid, regs.Orig_rax)
	}
	size := uint64(len(packEnv(env, 0)))
	base := (regs.Rsp - redZone - size - 64) &^ 15
	blob := packEnv(env, base)
	if err := mem.write(tid, base, blob); err != nil {
		return fmt.Errorf("write the environment below the stack of %d: %w", tid, err)
	}
	if int(regs.Orig_rax) == nrExecve {
		regs.Rdx = base
	} else {
		regs.R10 = base
	}
	if err := unix.PtraceSetRegs(tid, &regs); err != nil {
		return fmt.Errorf("ptrace setregs %d: %w", tid, err)
	}
	return nil
}
