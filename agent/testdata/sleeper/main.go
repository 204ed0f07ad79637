// Command sleeper is the "container's main process" of the agent's integration tests: started
// chroot'ed into a test-made root in its own mount namespace, it mounts /proc there (so the
// tree has real magic links to refuse), takes the uid, gid and umask it is told, says "ready"
// on stdout and sleeps until killed. It is built statically and copied into the tree.
package main

import (
	"flag"
	"fmt"
	"os"
	"syscall"
	"time"
)

func main() {
	uid := flag.Int("uid", -1, "uid to run as")
	gid := flag.Int("gid", -1, "gid to run as")
	umask := flag.Int("umask", 0o022, "umask")
	mountProc := flag.Bool("mount-proc", false, "mount procfs on /proc")
	flag.Parse()
	if *mountProc {
		if err := syscall.Mount("proc", "/proc", "proc", 0, ""); err != nil {
			fail("mount /proc", err)
		}
	}
	syscall.Umask(*umask)
	if *gid >= 0 {
		if err := syscall.Setgroups(nil); err != nil {
			fail("setgroups", err)
		}
		if err := syscall.Setresgid(*gid, *gid, *gid); err != nil {
			fail("setresgid", err)
		}
	}
	if *uid >= 0 {
		if err := syscall.Setresuid(*uid, *uid, *uid); err != nil {
			fail("setresuid", err)
		}
	}
	fmt.Println("ready")
	time.Sleep(time.Hour)
}

func fail(what string, err error) {
	fmt.Fprintf(os.Stderr, "sleeper: %s: %v\n", what, err)
	os.Exit(1)
}
