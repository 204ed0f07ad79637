package seccomp

import "golang.org/x/sys/unix"

// AuditArch is the seccomp_data.arch value of native calls on this architecture.
const AuditArch = unix.AUDIT_ARCH_X86_64

// x32SyscallBit marks x32 ABI calls (32-bit pointers on x86-64). They share the native audit
// arch, so only the number tells them apart; a filter that forgot it would let an x32 program
// make every trapped call untrapped.
const x32SyscallBit = 0x40000000

// syscallNumbers names the calls the layer may trap, and io_uring_setup, which it refuses.
// Extend it by name when a feature needs a new call.
var syscallNumbers = map[string]int{
	// files
	"open":       unix.SYS_OPEN,
	"openat":     unix.SYS_OPENAT,
	"openat2":    unix.SYS_OPENAT2,
	"creat":      unix.SYS_CREAT,
	"stat":       unix.SYS_STAT,
	"lstat":      unix.SYS_LSTAT,
	"newfstatat": unix.SYS_NEWFSTATAT,
	"statx":      unix.SYS_STATX,
	"access":     unix.SYS_ACCESS,
	"faccessat":  unix.SYS_FACCESSAT,
	"faccessat2": unix.SYS_FACCESSAT2,
	"readlink":   unix.SYS_READLINK,
	"readlinkat": unix.SYS_READLINKAT,
	"chdir":      unix.SYS_CHDIR,
	"getxattr":   unix.SYS_GETXATTR,
	"lgetxattr":  unix.SYS_LGETXATTR,
	"listxattr":  unix.SYS_LISTXATTR,
	"llistxattr": unix.SYS_LLISTXATTR,
	"fchdir":     unix.SYS_FCHDIR,
	"getcwd":     unix.SYS_GETCWD,
	"mkdir":      unix.SYS_MKDIR,
	"mkdirat":    unix.SYS_MKDIRAT,
	"unlink":     unix.SYS_UNLINK,
	"unlinkat":   unix.SYS_UNLINKAT,
	"rmdir":      unix.SYS_RMDIR,
	"rename":     unix.SYS_RENAME,
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

// absentHere are names that exist on other architectures only.
var absentHere = map[string]bool{}
