package supervisor

import (
	"encoding/binary"
	"fmt"
	"runtime"
	"sync"

	"golang.org/x/sys/unix"
)

// Restoring the environment of an exec.
//
// Launchers rebuild the environment of what they start (`env -i`, turbo, nx, a Python parent
// passing env={}), and the pod's variables would be lost below them. seccomp cannot change a
// call's arguments, so the supervisor borrows ptrace for that one call only:
//
//  1. PTRACE_SEIZE the thread blocked in execve, then PTRACE_INTERRUPT it. The thread waits
//     in the seccomp notification (killable only, WAIT_KILLABLE_RECV), so nothing happens yet
//     but a pending trap.
//  2. Answer the notification with ERESTARTNOINTR: on its way back to user space the thread
//     stops for the trap, and will restart the syscall afterwards.
//  3. In that stop, write the new envp (strings and pointer array) below the thread's stack
//     pointer, past the red zone, point the envp register at it, and detach.
//  4. The thread restarts execve with the new environment; it traps again, and this time the
//     environment is complete, so the exec runs (CONTINUE).
//
// Nothing stays traced: a debugger can attach to the program as usual. Without
// WAIT_KILLABLE_RECV (before 5.19) the interrupt would abort the notification instead, so the
// rewrite is skipped there.

// errRestartNoIntr is the kernel's ERESTARTNOINTR: "restart the syscall, whatever happens".
const errRestartNoIntr = 513

// redZone is the x86-64 ABI's area below the stack pointer that leaf functions use freely.
const redZone = 128

// envRewrites counts attempts per thread so a rewrite that did not take (the kernel refused
// to write the memory) is not retried forever: the second exec of that thread runs as it is.
type envRewrites struct {
	mu    sync.Mutex
	tries map[int]int
}

func (r *envRewrites) attempt(tid int) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.tries == nil {
		r.tries = map[int]int{}
	}
	r.tries[tid]++
	return r.tries[tid] == 1
}

func (r *envRewrites) done(tid int) {
	r.mu.Lock()
	delete(r.tries, tid)
	r.mu.Unlock()
}

// packEnv lays out env as execve reads it at base: the pointer array (NULL-terminated) first,
// then the strings.
func packEnv(env []string, base uint64) []byte {
	ptrs := 8 * (len(env) + 1)
	size := ptrs
	for _, kv := range env {
		size += len(kv) + 1
	}
	buf := make([]byte, size)
	at := uint64(ptrs)
	for i, kv := range env {
		binary.LittleEndian.PutUint64(buf[8*i:], base+at)
		copy(buf[at:], kv)
		at += uint64(len(kv)) + 1 // the NUL is already there
	}
	return buf
}

// rewriteEnv runs the dance above for the execve notification id of thread tid.
func (s *Supervisor) rewriteEnv(id uint64, tid int, env []string) error {
	return s.restartCall(id, tid, func(regs *unix.PtraceRegs, mem *memory) error { return setExecEnv(tid, regs, env, mem) })
}

// restartCall makes thread tid, blocked in the trapped call id, run that call again with its
// registers changed by mutate (in a ptrace stop; mutate may also write the thread's memory).
// It always answers the notification (ERESTARTNOINTR when it traced the thread, CONTINUE when
// it could not start), so the call never hangs.
func (s *Supervisor) restartCall(id uint64, tid int, mutate func(*unix.PtraceRegs, *memory) error) error {
	done := make(chan error, 1)
	go func() {
		// every ptrace request must come from the tracing thread
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		done <- s.restartCallLocked(id, tid, mutate)
	}()
	return <-done
}

func (s *Supervisor) restartCallLocked(id uint64, tid int, mutate func(*unix.PtraceRegs, *memory) error) error {
	if err := unix.PtraceSeize(tid); err != nil {
		s.pass(id)
		return fmt.Errorf("ptrace seize %d: %w", tid, err)
	}
	if err := unix.PtraceInterrupt(tid); err != nil {
		_ = unix.PtraceDetach(tid)
		s.pass(id)
		return fmt.Errorf("ptrace interrupt %d: %w", tid, err)
	}
	s.respond(seccompErr(id, errRestartNoIntr))
	var ws unix.WaitStatus
	for {
		_, err := unix.Wait4(tid, &ws, unix.WALL, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("wait for thread %d: %w", tid, err)
		}
		break
	}
	if ws.Exited() || ws.Signaled() {
		return nil // it died meanwhile: nothing to restore
	}
	sig := 0
	if ws.Stopped() && ws.StopSignal() != unix.SIGTRAP {
		sig = int(ws.StopSignal()) // a real signal arrived first: deliver it on detach
	}
	var werr error
	var regs unix.PtraceRegs
	if err := unix.PtraceGetRegs(tid, &regs); err != nil {
		werr = fmt.Errorf("ptrace getregs %d: %w", tid, err)
	} else if werr = mutate(&regs, &memory{}); werr == nil {
		if err := unix.PtraceSetRegs(tid, &regs); err != nil {
			werr = fmt.Errorf("ptrace setregs %d: %w", tid, err)
		}
	}
	_, _, e := unix.Syscall6(unix.SYS_PTRACE, unix.PTRACE_DETACH, uintptr(tid), 0, uintptr(sig), 0, 0)
	if e != 0 && werr == nil {
		werr = fmt.Errorf("ptrace detach %d: %w", tid, e)
	}
	return werr
}
