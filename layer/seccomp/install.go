package seccomp

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

func seccomp(op, flags uintptr, arg unsafe.Pointer) (int, error) {
	r, _, e := unix.Syscall(unix.SYS_SECCOMP, op, flags, uintptr(arg))
	if e != 0 {
		return -1, e
	}
	return int(r), nil
}

// SetNoNewPrivs sets no_new_privs on the calling thread, which an unprivileged process needs
// before installing a filter (and which every descendant keeps: setuid binaries no longer
// elevate). Call it on the thread that installs the filter.
func SetNoNewPrivs() error {
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("prctl(PR_SET_NO_NEW_PRIVS): %w", err)
	}
	return nil
}

// SetModeFilter installs prog on the calling thread (only: no TSYNC) with the given
// SECCOMP_FILTER_FLAG_* flags and returns what seccomp(2) returns: the listener fd with
// SECCOMP_FILTER_FLAG_NEW_LISTENER, else 0. The caller must hold its OS thread
// (runtime.LockOSThread) and keep holding it: the filter stays with the thread.
func SetModeFilter(flags uint, prog []unix.SockFilter) (int, error) {
	if len(prog) == 0 {
		return -1, fmt.Errorf("seccomp: empty program")
	}
	fp := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	return seccomp(unix.SECCOMP_SET_MODE_FILTER, uintptr(flags), unsafe.Pointer(&fp))
}

// Install installs f on the calling thread with a new listener and returns the listener fd
// (close-on-exec). waitKillable asks for SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV (5.19): once the
// supervisor has received a call, only a fatal signal interrupts the caller's wait, so a signal
// (a Go program's SIGURG, a timer) cannot restart a slow call forever.
func Install(f *Filter, waitKillable bool) (int, error) {
	flags := uint(unix.SECCOMP_FILTER_FLAG_NEW_LISTENER)
	if waitKillable {
		flags |= unix.SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV
	}
	fd, err := SetModeFilter(flags, f.Program)
	if err != nil {
		return -1, fmt.Errorf("seccomp(SECCOMP_SET_MODE_FILTER): %w", err)
	}
	return fd, nil
}

// GetNotifSizes asks the kernel for the sizes of its notification structs; it fails on kernels
// without user notification (before 5.0).
func GetNotifSizes() (NotifSizes, error) {
	var s NotifSizes
	_, err := seccomp(unix.SECCOMP_GET_NOTIF_SIZES, 0, unsafe.Pointer(&s))
	return s, err
}

// ActionAvail reports (nil) whether the kernel knows a SECCOMP_RET_* action.
func ActionAvail(action uint32) error {
	_, err := seccomp(unix.SECCOMP_GET_ACTION_AVAIL, 0, unsafe.Pointer(&action))
	return err
}
