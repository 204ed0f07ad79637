// Package creds lets the agent act on the target container's files with the credentials of the
// target's main process instead of its own (root, with capabilities the target may lack).
//
// The fs capability must give the user's process the answer the pod's process would get: EACCES
// for a file its uid cannot read, EROFS on a read-only mount, a new file owned by its uid and
// gid (or by the directory's group when the directory is setgid), masked with its umask.
// Re-implementing the kernel's permission rules (ancestors' search bits, capabilities, ACLs,
// setgid inheritance, read-only mounts) would get some of them wrong, so instead Do runs the
// operation on an OS thread that has taken the target's uids, gids, supplementary groups,
// capabilities and umask, and lets the kernel decide.
//
// Linux keeps credentials per thread (the C library makes setuid process-wide by signalling
// every thread; Go's syscall.Setuid does the same through AllThreadsSyscall). Do uses the raw
// per-thread system calls on a goroutine locked to its thread and never unlocks it, so the Go
// runtime ends that thread when the goroutine returns and no other goroutine ever runs with the
// changed credentials. The runtime also never clones a new thread from a locked one (it hands
// thread creation to a clean template thread), so the credentials do not leak that way either.
//
// What is not reproduced: LSM policy (AppArmor, SELinux) and seccomp of the target, and
// capabilities of a target in its own user namespace (they are dropped: its "root" has no
// power over the node's view of its files).
package creds

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"unsafe"

	"github.com/kwarp-dev/kwarp/agent/target"
	"golang.org/x/sys/unix"
)

// Creds are a process's credentials as /proc/PID/status lists them.
type Creds struct {
	UID    [4]uint32 // real, effective, saved, filesystem
	GID    [4]uint32
	Groups []uint32
	Umask  uint32
	CapPrm uint64 // permitted
	CapEff uint64 // effective
}

// DefaultUmask is assumed when status has no Umask line (kernels before 4.7).
const DefaultUmask = 0o022

// Parse reads the Uid, Gid, Groups, Umask, CapPrm and CapEff lines of a /proc/PID/status file.
func Parse(status []byte) (Creds, error) {
	c := Creds{Umask: DefaultUmask}
	var haveUID, haveGID bool
	sc := bufio.NewScanner(bytes.NewReader(status))
	for sc.Scan() {
		key, val, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		val = strings.TrimSpace(val)
		var err error
		switch key {
		case "Uid":
			c.UID, err = parseIDs(val)
			haveUID = true
		case "Gid":
			c.GID, err = parseIDs(val)
			haveGID = true
		case "Groups":
			for _, f := range strings.Fields(val) {
				var g uint64
				if g, err = strconv.ParseUint(f, 10, 32); err != nil {
					break
				}
				c.Groups = append(c.Groups, uint32(g))
			}
		case "Umask":
			var u uint64
			u, err = strconv.ParseUint(val, 8, 32)
			c.Umask = uint32(u) & 0o777
		case "CapPrm":
			c.CapPrm, err = strconv.ParseUint(val, 16, 64)
		case "CapEff":
			c.CapEff, err = strconv.ParseUint(val, 16, 64)
		}
		if err != nil {
			return Creds{}, fmt.Errorf("status line %q: %w", sc.Text(), err)
		}
	}
	if err := sc.Err(); err != nil {
		return Creds{}, fmt.Errorf("read status: %w", err)
	}
	if !haveUID || !haveGID {
		return Creds{}, fmt.Errorf("status has no Uid or Gid line")
	}
	return c, nil
}

func parseIDs(val string) ([4]uint32, error) {
	var ids [4]uint32
	f := strings.Fields(val)
	if len(f) != 4 {
		return ids, fmt.Errorf("want 4 ids (real, effective, saved, fs), got %d", len(f))
	}
	for i, s := range f {
		n, err := strconv.ParseUint(s, 10, 32)
		if err != nil {
			return ids, err
		}
		ids[i] = uint32(n)
	}
	return ids, nil
}

// Of reads the credentials of the target process p. When p lives in another user namespace
// than the agent, its capabilities are dropped: they are meaningful only inside that namespace.
func Of(p *target.Process) (Creds, error) {
	status, err := p.ReadFile("status")
	if err != nil {
		return Creds{}, err
	}
	c, err := Parse(status)
	if err != nil {
		return Creds{}, fmt.Errorf("credentials of process %d: %w", p.PID, err)
	}
	same, err := sameUserNS(p)
	if err != nil {
		return Creds{}, err
	}
	if !same {
		c.CapPrm, c.CapEff = 0, 0
	}
	return c, nil
}

func sameUserNS(p *target.Process) (bool, error) {
	var theirs, ours unix.Stat_t
	if err := unix.Stat(p.Path("ns", "user"), &theirs); err != nil {
		return false, fmt.Errorf("user namespace of process %d: %w", p.PID, err)
	}
	if err := unix.Stat("/proc/self/ns/user", &ours); err != nil {
		return false, fmt.Errorf("the agent's user namespace: %w", err)
	}
	return theirs.Dev == ours.Dev && theirs.Ino == ours.Ino, nil
}

// errMainThread: Do's goroutine landed on the process's main thread.
var errMainThread = errors.New("on the main thread")

// Do runs fn on a fresh OS thread that holds c. The error is Do's own (the thread could not
// take the credentials, e.g. the agent is not root); fn reports its results through its closure.
// fn must not start goroutines that expect c: they run on other threads.
func (c Creds) Do(fn func()) error {
	for {
		errc := make(chan error, 1)
		go func() {
			// Never unlocked: the runtime ends this thread when the goroutine returns, so its
			// changed credentials die with it.
			runtime.LockOSThread()
			if unix.Gettid() == unix.Getpid() {
				// Except the main thread: the runtime parks it for good instead of ending it.
				// Leave it parked with the agent's own credentials (what ps and /proc/PID/status
				// show) and try again: a parked thread never runs another goroutine.
				errc <- errMainThread
				return
			}
			if err := c.become(); err != nil {
				errc <- fmt.Errorf("take the target's credentials (uid %d, gid %d): %w", c.UID[1], c.GID[1], err)
				return
			}
			fn()
			errc <- nil
		}()
		if err := <-errc; err != errMainThread {
			return err
		}
	}
}

// become gives the calling thread c's credentials. Order matters: groups and gids while the
// thread still has CAP_SETGID, keepcaps so setresuid leaves the permitted set for capset to
// trim, then the uids, then the capabilities.
func (c Creds) become() error {
	// The thread gets its own fs_struct so the umask it takes is not the whole agent's.
	if err := unix.Unshare(unix.CLONE_FS); err != nil {
		return fmt.Errorf("unshare CLONE_FS: %w", err)
	}
	unix.Umask(int(c.Umask))

	var ours [2]unix.CapUserData
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	if err := unix.Capget(&hdr, &ours[0]); err != nil {
		return fmt.Errorf("capget: %w", err)
	}
	ourPrm := uint64(ours[0].Permitted) | uint64(ours[1].Permitted)<<32

	// Each change is made only when needed, so a root target served by a root agent needs
	// neither CAP_SETUID nor CAP_SETGID; only a target with other ids does.
	if groups, err := unix.Getgroups(); err != nil || !sameGroups(groups, c.Groups) {
		if err := setgroups(c.Groups); err != nil {
			return fmt.Errorf("setgroups: %w%s", err, capHint(err))
		}
	}
	if err := unix.Prctl(unix.PR_SET_KEEPCAPS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("prctl PR_SET_KEEPCAPS: %w", err)
	}
	// setresgid and setresuid also set the fsgid and fsuid to the new effective ids, which is
	// what the target has unless it called setfsuid itself (NFS servers do; apps do not).
	if r, e, s := unix.Getresgid(); [3]uint32{uint32(r), uint32(e), uint32(s)} != [3]uint32(c.GID[:3]) {
		if err := rawSetres(unix.SYS_SETRESGID, c.GID); err != nil {
			return fmt.Errorf("setresgid: %w%s", err, capHint(err))
		}
	}
	if r, e, s := unix.Getresuid(); [3]uint32{uint32(r), uint32(e), uint32(s)} != [3]uint32(c.UID[:3]) {
		if err := rawSetres(unix.SYS_SETRESUID, c.UID); err != nil {
			return fmt.Errorf("setresuid: %w%s", err, capHint(err))
		}
	}
	prm := c.CapPrm & ourPrm
	eff := c.CapEff & prm
	data := [2]unix.CapUserData{
		{Effective: uint32(eff), Permitted: uint32(prm)},
		{Effective: uint32(eff >> 32), Permitted: uint32(prm >> 32)},
	}
	hdr = unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return fmt.Errorf("capset: %w", err)
	}
	return nil
}

func sameGroups(have []int, want []uint32) bool {
	if len(have) != len(want) {
		return false
	}
	for i := range have {
		if uint32(have[i]) != want[i] {
			return false
		}
	}
	return true
}

// capHint explains an EPERM: the agent's container lacks the capability.
func capHint(err error) string {
	if errors.Is(err, unix.EPERM) {
		return " (the agent needs CAP_SETUID and CAP_SETGID to act as a target that runs with other ids)"
	}
	return ""
}

// CheckCanSwitch says whether this process can take other processes' ids (CAP_SETUID and
// CAP_SETGID in its effective set); the agent warns at start when it cannot.
func CheckCanSwitch() error {
	c, err := Self()
	if err != nil {
		return err
	}
	const need = 1<<unix.CAP_SETUID | 1<<unix.CAP_SETGID
	if c.CapEff&need != need {
		return fmt.Errorf("the agent lacks CAP_SETUID or CAP_SETGID: file operations on a target that runs as another user will fail")
	}
	return nil
}

// setgroups sets the thread's supplementary groups with the raw, per-thread system call (gid_t
// is 32 bits, as uint32).
func setgroups(groups []uint32) error {
	if len(groups) == 0 {
		_, _, e := unix.RawSyscall(unix.SYS_SETGROUPS, 0, 0, 0)
		return errnoErr(e)
	}
	_, _, e := unix.RawSyscall(unix.SYS_SETGROUPS, uintptr(len(groups)), uintptr(unsafe.Pointer(&groups[0])), 0)
	runtime.KeepAlive(groups)
	return errnoErr(e)
}

// rawSetres calls setresuid or setresgid on this thread only. On 64-bit Linux these numbers
// are the calls with 32-bit ids (on 32-bit x86 and ARM they would be the 16-bit ones: see the
// guard below).
func rawSetres(trap uintptr, ids [4]uint32) error {
	_, _, e := unix.RawSyscall(trap, uintptr(ids[0]), uintptr(ids[1]), uintptr(ids[2]))
	return errnoErr(e)
}

// The agent ships for 64-bit Linux only; this fails to compile elsewhere instead of silently
// truncating ids in the 16-bit set*id calls of 32-bit ABIs.
const _ = uint(unsafe.Sizeof(uintptr(0)) - 8)

func errnoErr(e unix.Errno) error {
	if e == 0 {
		return nil
	}
	return e
}

// Self returns the agent's own credentials, for tests and for comparisons.
func Self() (Creds, error) {
	b, err := os.ReadFile("/proc/thread-self/status")
	if err != nil {
		return Creds{}, err
	}
	return Parse(b)
}
