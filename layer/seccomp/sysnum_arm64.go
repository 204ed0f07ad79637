package seccomp

import "golang.org/x/sys/unix"

// AuditArch is the seccomp_data.arch value of native calls on this architecture.
const AuditArch = unix.AUDIT_ARCH_AARCH64

// x32SyscallBit is an x86-64 notion; arm64 has none (AArch32 calls carry their own arch).
const x32SyscallBit = 0

// syscallNumbers names the calls the layer may trap, and io_uring_setup, which it refuses.
// arm64 only has the *at forms of the path calls; see absentHere.
var syscallNumbers = map[string]int{
	// files
	"openat":     unix.SYS_OPENAT,
	"openat2":    unix.SYS_OPENAT2,
	"newfstatat": unix.SYS_NEWFSTATAT,
	"statx":      unix.SYS_STATX,
	"faccessat":  unix.SYS_FACCESSAT,
	"faccessat2": unix.SYS_FACCESSAT2,
	"readlinkat": unix.SYS_READLINKAT,
	"chdir":      unix.SYS_CHDIR,
	"getxattr":   unix.SYS_GETXATTR,
	"lgetxattr":  unix.SYS_LGETXATTR,
	"listxattr":  unix.SYS_LISTXATTR,
	"llistxattr": unix.SYS_LLISTXATTR,
	"fchdir":     unix.SYS_FCHDIR,
	"getcwd":     unix.SYS_GETCWD,
	"mkdirat":    unix.SYS_MKDIRAT,
	"unlinkat":   unix.SYS_UNLINKAT,
	"renameat":   unix.SYS_RENAMEAT,
	"renameat2":  unix.SYS_RENAMEAT2,
	"truncate":   unix.SYS_TRUNCATE,
	"statfs":     unix.SYS_STATFS,
	// processes
	"execve":   unix.SYS_EXECVE,
	"execveat": unix.SYS_EXECVEAT,
	// network
	"socket":      unix.SYS_SOCKET,
	"connect":     unix.SYS_CONNECT,
	"bind":        unix.SYS_BIND,
	"listen":      unix.SYS_LISTEN,
	"accept":      unix.SYS_ACCEPT,
	"accept4":     unix.SYS_ACCEPT4,
	"getsockname": unix.SYS_GETSOCKNAME,
	"getpeername": unix.SYS_GETPEERNAME,
	"sendto":      unix.SYS_SENDTO,
	"sendmsg":     unix.SYS_SENDMSG,
	"sendmmsg":    unix.SYS_SENDMMSG,
	"recvfrom":    unix.SYS_RECVFROM,
	"recvmsg":     unix.SYS_RECVMSG,
	"recvmmsg":    unix.SYS_RECVMMSG,
	// refused: io_uring submits file and socket work the filter never sees
	"io_uring_setup": unix.SYS_IO_URING_SETUP,
	// harmless calls, here so tests and probes can trap something nobody else uses
	"getppid": unix.SYS_GETPPID,
	"getpid":  unix.SYS_GETPID,
}

// absentHere are the legacy path calls of x86-64 that arm64 never had: libc maps them to the
// *at forms, so trapping those is enough.
var absentHere = map[string]bool{
	"open": true, "creat": true, "stat": true, "lstat": true, "access": true,
	"readlink": true, "mkdir": true, "unlink": true, "rmdir": true, "rename": true,
}
