// Package netnstest gives tests a network namespace of their own, the way a pod has one: a
// process started in a fresh namespace with its loopback up, and In to run code on a thread
// inside a process's namespace, e.g. to bind a listener on 127.0.0.1 that the test's own
// namespace cannot reach (so a connection that arrives proves it was dialled from the pod).
//
// Everything here needs root (CAP_SYS_ADMIN for unshare and setns).
package netnstest

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// NeedRoot skips the test unless it runs as root.
func NeedRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: the test makes network namespaces (unshare, setns) to stand in for a pod")
	}
}

// Start starts a process in a new network namespace, brings its loopback up and returns its
// PID. The process is killed when the test ends.
func Start(t testing.TB) int {
	t.Helper()
	NeedRoot(t)
	cmd := exec.Command("sleep", "3600")
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNET}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start a process in its own network namespace: %v", err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	if err := LoopbackUp(cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	return cmd.Process.Pid
}

// In runs fn on an OS thread that entered the network namespace of process pid. Sockets fn
// creates belong to that namespace for their whole life and may be used from any goroutine
// afterwards. The thread is never unlocked, so it ends with fn's goroutine instead of running
// other goroutines in the wrong namespace.
func In(pid int, fn func() error) error {
	for {
		errc := make(chan error, 1)
		go func() {
			runtime.LockOSThread()
			if unix.Gettid() == unix.Getpid() {
				// The runtime parks the main thread instead of ending it: keep it out.
				errc <- errMainThread
				return
			}
			path := "/proc/" + strconv.Itoa(pid) + "/ns/net"
			fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
			if err != nil {
				errc <- fmt.Errorf("open %s: %w", path, err)
				return
			}
			defer unix.Close(fd)
			if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
				errc <- fmt.Errorf("setns %s: %w", path, err)
				return
			}
			errc <- fn()
		}()
		if err := <-errc; err != errMainThread {
			return err
		}
	}
}

var errMainThread = errors.New("on the main thread")

// Run runs a command in pid's network namespace (from a thread in it) and returns its
// combined output; a failure ends the test.
func Run(t testing.TB, pid int, args ...string) string {
	t.Helper()
	var out []byte
	err := In(pid, func() (err error) {
		out, err = exec.Command(args[0], args[1:]...).CombinedOutput()
		return err
	})
	if err != nil {
		t.Fatalf("%s in the namespace of %d: %v\n%s", strings.Join(args, " "), pid, err, out)
	}
	return string(out)
}

// LoopbackUp sets lo up in pid's namespace: a fresh namespace has it down, and nothing can
// connect to 127.0.0.1 there until it is up.
func LoopbackUp(pid int) error {
	return In(pid, func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("socket for ioctl: %w", err)
		}
		defer unix.Close(fd)
		ifr, err := unix.NewIfreq("lo")
		if err != nil {
			return err
		}
		if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
			return fmt.Errorf("get lo flags: %w", err)
		}
		ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
		if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
			return fmt.Errorf("set lo up: %w", err)
		}
		return nil
	})
}

// Listen is net.Listen inside pid's namespace; the listener is closed when the test ends.
func Listen(t testing.TB, pid int, network, addr string) net.Listener {
	t.Helper()
	var l net.Listener
	err := In(pid, func() (err error) {
		l, err = net.Listen(network, addr)
		return err
	})
	if err != nil {
		t.Fatalf("listen on %s %s in the namespace of %d: %v", network, addr, pid, err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// ListenPacket is net.ListenPacket inside pid's namespace; closed when the test ends.
func ListenPacket(t testing.TB, pid int, network, addr string) net.PacketConn {
	t.Helper()
	var c net.PacketConn
	err := In(pid, func() (err error) {
		c, err = net.ListenPacket(network, addr)
		return err
	})
	if err != nil {
		t.Fatalf("listen on %s %s in the namespace of %d: %v", network, addr, pid, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// ThreadNetns returns the network namespace of thread tid of this process, as the link text
// of its /proc entry ("net:[4026531840]").
func ThreadNetns(tid int) (string, error) {
	return os.Readlink("/proc/self/task/" + strconv.Itoa(tid) + "/ns/net")
}

// Netns returns the network namespace of process pid, as ThreadNetns does.
func Netns(pid int) (string, error) {
	return os.Readlink("/proc/" + strconv.Itoa(pid) + "/ns/net")
}
