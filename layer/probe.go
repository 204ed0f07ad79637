package layer

import (
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"strings"

	"github.com/kwarp-dev/kwarp/layer/seccomp"
	"golang.org/x/sys/unix"
)

// Features are the seccomp user-notification features the running kernel offers, found by
// trying the real calls (see Probe). Mainline versions are in featureTable.
type Features struct {
	UserNotif        bool // SECCOMP_RET_USER_NOTIF and a listener fd (5.0)
	Continue         bool // SECCOMP_USER_NOTIF_FLAG_CONTINUE: let the kernel run the call (5.5)
	AddFD            bool // SECCOMP_IOCTL_NOTIF_ADDFD: install our fd in the process (5.9)
	AddFDSend        bool // SECCOMP_ADDFD_FLAG_SEND: install and answer atomically (5.14)
	WaitKillableRecv bool // SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV: no signal livelock (5.19)
	SyncWakeUp       bool // SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP: faster round trips (6.6)
	// Kernel is the release string, as uname -r prints it.
	Kernel string
	// Reason says why user notification is unavailable when the kernel is new enough to have
	// it: seccomp disabled, or kwarp itself already running under a seccomp supervisor.
	Reason string
}

type feature struct {
	name     string
	kernel   string // mainline version that brought it
	required bool
	has      func(Features) bool
	without  string // what goes wrong without an optional feature
}

var featureTable = []feature{
	{name: "seccomp user notification", kernel: "5.0", required: true, has: func(f Features) bool { return f.UserNotif }},
	{name: "seccomp user notification CONTINUE", kernel: "5.5", required: true, has: func(f Features) bool { return f.Continue }},
	{name: "seccomp user notification ADDFD", kernel: "5.9", required: true, has: func(f Features) bool { return f.AddFD }},
	{name: "seccomp ADDFD_FLAG_SEND", kernel: "5.14", has: func(f Features) bool { return f.AddFDSend },
		without: "remote opens take one more call (ADDFD, then SEND)"},
	{name: "seccomp WAIT_KILLABLE_RECV", kernel: "5.19", has: func(f Features) bool { return f.WaitKillableRecv },
		without: "a process that gets signals often (a Go program, a timer) may retry a slow remote call forever"},
	{name: "seccomp SYNC_WAKE_UP", kernel: "6.6", has: func(f Features) bool { return f.SyncWakeUp },
		without: "each trapped call costs about a third more"},
}

// Check returns an error naming the missing required feature and the kernel it needs, e.g.
// "seccomp user notification ADDFD needs Linux 5.9; this kernel is 5.4". When several are
// missing it names the one that needs the newest kernel: upgrading to that fixes them all.
// The CLI exits 3 with it.
func (f Features) Check() error {
	var missing *feature
	for i := range featureTable {
		ft := &featureTable[i]
		if ft.required && !ft.has(f) {
			missing = ft
		}
	}
	if missing == nil {
		return nil
	}
	kernel := shortKernel(f.Kernel)
	if f.Reason != "" && versionAtLeast(f.Kernel, missing.kernel) {
		// The kernel should have it: something else is in the way.
		return fmt.Errorf("%s is not available on this kernel (%s): %s", missing.name, kernel, f.Reason)
	}
	return fmt.Errorf("%s needs Linux %s; this kernel is %s", missing.name, missing.kernel, kernel)
}

// Warnings lists, for each optional feature this kernel lacks, what the user should expect.
func (f Features) Warnings() []string {
	if f.Check() != nil {
		return nil
	}
	var out []string
	for _, ft := range featureTable {
		if !ft.required && !ft.has(f) {
			out = append(out, fmt.Sprintf("%s needs Linux %s; this kernel is %s: %s",
				ft.name, ft.kernel, shortKernel(f.Kernel), ft.without))
		}
	}
	return out
}

// Probe finds the features by trying them, not by reading the version: distributions backport
// (and some kernels are built without seccomp at all). The trial filter goes on a throwaway OS
// thread that exits afterwards, because a filter can never be removed from a thread; it allows
// every call, and its listener is only poked with ids that do not exist.
func Probe() Features {
	f := Features{Kernel: kernelRelease()}
	if _, err := seccomp.GetNotifSizes(); err != nil {
		f.Reason = "seccomp(SECCOMP_GET_NOTIF_SIZES): " + err.Error()
		return f
	}
	if err := seccomp.ActionAvail(unix.SECCOMP_RET_USER_NOTIF); err != nil {
		f.Reason = "SECCOMP_RET_USER_NOTIF: " + err.Error()
		return f
	}
	onThrowawayThread(func() { probeOnThisThread(&f) })
	return f
}

// onThrowawayThread runs fn on an OS thread that ends afterwards. fn's goroutine is locked to
// its thread and never unlocked, so the runtime ends the thread when fn returns, and whatever
// fn did to it (a filter, no_new_privs) with it. Threads the runtime starts meanwhile come from
// its template thread, not from a locked one, so they inherit nothing.
func onThrowawayThread(fn func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread()
		if unix.Gettid() == unix.Getpid() {
			// The runtime never ends the main thread (it parks it for good instead, filter
			// and all). Hold it with this goroutine, so that fn runs on another thread.
			onThrowawayThread(fn)
			runtime.UnlockOSThread()
			return
		}
		fn()
	}()
	<-done
}

const bogusID = 0xfeedfacecafebeef

func probeOnThisThread(f *Features) {
	if err := seccomp.SetNoNewPrivs(); err != nil {
		f.Reason = err.Error()
		return
	}
	allowAll := []unix.SockFilter{{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ALLOW}}
	fd, err := seccomp.SetModeFilter(unix.SECCOMP_FILTER_FLAG_NEW_LISTENER|unix.SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV, allowAll)
	if errors.Is(err, unix.EINVAL) {
		fd, err = seccomp.SetModeFilter(unix.SECCOMP_FILTER_FLAG_NEW_LISTENER, allowAll)
	} else if err == nil {
		f.WaitKillableRecv = true
	}
	if err != nil {
		f.Reason = "installing a filter with a listener: " + err.Error()
		if errors.Is(err, unix.EBUSY) {
			f.Reason = "kwarp already runs under a seccomp supervisor (only one listener per process tree)"
		}
		return
	}
	defer unix.Close(fd)
	f.UserNotif = true

	// Each trial names a notification that does not exist: a kernel that knows the request
	// says ENOENT (no such id), one that does not says EINVAL.
	resp := seccomp.Resp{ID: bogusID, Flags: seccomp.FlagContinue}
	f.Continue = errors.Is(seccomp.Send(fd, &resp), unix.ENOENT)
	add := seccomp.AddFD{ID: bogusID, SrcFD: uint32(fd)}
	_, err = seccomp.AddFDToTarget(fd, &add)
	f.AddFD = errors.Is(err, unix.ENOENT)
	add = seccomp.AddFD{ID: bogusID, SrcFD: uint32(fd), Flags: seccomp.AddFDSend}
	_, err = seccomp.AddFDToTarget(fd, &add)
	f.AddFDSend = errors.Is(err, unix.ENOENT)
	f.SyncWakeUp = seccomp.SetFlags(fd, seccomp.FDSyncWakeUp) == nil
}

func kernelRelease() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "unknown"
	}
	return unix.ByteSliceToString(u.Release[:])
}

// parseKernel reads "major.minor" from a release string such as "6.18.44-fc-v657".
func parseKernel(release string) (major, minor int, ok bool) {
	parts := strings.SplitN(release, ".", 3)
	if len(parts) < 2 {
		return 0, 0, false
	}
	major, err1 := strconv.Atoi(parts[0])
	end := strings.IndexFunc(parts[1], func(r rune) bool { return r < '0' || r > '9' })
	if end < 0 {
		end = len(parts[1])
	}
	minor, err2 := strconv.Atoi(parts[1][:end])
	return major, minor, err1 == nil && err2 == nil
}

func shortKernel(release string) string {
	if ma, mi, ok := parseKernel(release); ok {
		return fmt.Sprintf("%d.%d", ma, mi)
	}
	if release == "" {
		return "unknown"
	}
	return release
}

func versionAtLeast(release, want string) bool {
	ma, mi, ok := parseKernel(release)
	wa, wi, ok2 := parseKernel(want)
	if !ok || !ok2 {
		return false
	}
	return ma > wa || ma == wa && mi >= wi
}

// FeatureStatus is one line of the feature report `kwarp doctor` prints.
type FeatureStatus struct {
	Name     string
	Kernel   string // the mainline release that brought it
	Required bool
	Has      bool
	Without  string // what the user gets without an optional feature
}

// Report lists every feature kwarp uses, whether this kernel has it, in featureTable order.
func (f Features) Report() []FeatureStatus {
	out := make([]FeatureStatus, 0, len(featureTable))
	for _, ft := range featureTable {
		out = append(out, FeatureStatus{Name: ft.name, Kernel: ft.kernel, Required: ft.required, Has: ft.has(f), Without: ft.without})
	}
	return out
}
