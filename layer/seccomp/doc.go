// Package seccomp is the raw kernel interface of the layer's tier S: the classic-BPF filter that
// traps a chosen set of system calls with SECCOMP_RET_USER_NOTIF, the user-notification structs
// and ioctls (RECV, SEND, ID_VALID, ADDFD, SET_FLAGS), and the seccomp(2) calls that install a
// filter and ask what the kernel supports.
//
// It is pure Go on golang.org/x/sys/unix (no cgo, no libseccomp): x/sys has every constant and
// ioctl number, only the four notification structs are declared here. Syscall numbers are known
// by name per GOARCH (amd64 and arm64), so callers say "openat", never 257.
//
// Nothing here decides anything; package launcher installs the filter, package supervisor
// answers the notifications, package layer probes the kernel.
package seccomp
