package creds

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

const statusSample = `Name:	app
Umask:	0027
State:	S (sleeping)
Tgid:	4242
Uid:	1000	1001	1002	1003
Gid:	2000	2001	2002	2003
FDSize:	64
Groups:	10 20 30 
CapInh:	0000000000000000
CapPrm:	00000000a80425fb
CapEff:	00000000a80425fb
CapBnd:	00000000a80425fb
`

func TestParse(t *testing.T) {
	c, err := Parse([]byte(statusSample))
	if err != nil {
		t.Fatal(err)
	}
	want := Creds{
		UID: [4]uint32{1000, 1001, 1002, 1003}, GID: [4]uint32{2000, 2001, 2002, 2003},
		Groups: []uint32{10, 20, 30}, Umask: 0o027, CapPrm: 0xa80425fb, CapEff: 0xa80425fb,
	}
	if c.UID != want.UID || c.GID != want.GID || c.Umask != want.Umask || c.CapPrm != want.CapPrm ||
		c.CapEff != want.CapEff || len(c.Groups) != 3 || c.Groups[2] != 30 {
		t.Errorf("Parse = %+v, want %+v", c, want)
	}

	old := strings.Replace(statusSample, "Umask:\t0027\n", "", 1) // kernels before 4.7
	if c, err := Parse([]byte(old)); err != nil || c.Umask != DefaultUmask {
		t.Errorf("no Umask line: %v, %v; want the default", c.Umask, err)
	}
	noGroups := strings.Replace(statusSample, "Groups:\t10 20 30 \n", "Groups:\t\n", 1)
	if c, err := Parse([]byte(noGroups)); err != nil || len(c.Groups) != 0 {
		t.Errorf("empty Groups: %v, %v", c.Groups, err)
	}
	for _, bad := range []string{
		"Gid:\t1 1 1 1\n",                // no Uid
		"Uid:\t1 1 1\nGid:\t1 1 1 1\n",   // three ids
		"Uid:\tx 1 1 1\nGid:\t1 1 1 1\n", // not a number
		"Uid:\t1 1 1 1\nGid:\t1 1 1 1\nCapEff:\tzz\n",
	} {
		if _, err := Parse([]byte(bad)); err == nil {
			t.Errorf("Parse(%q): no error", bad)
		}
	}
}

func TestParseOwnStatus(t *testing.T) {
	c, err := Self()
	if err != nil {
		t.Fatal(err)
	}
	if int(c.UID[0]) != os.Getuid() || int(c.GID[1]) != os.Getegid() {
		t.Errorf("Self = %+v, want uid %d gid %d", c, os.Getuid(), os.Getegid())
	}
}

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("taking another process's credentials needs root (CAP_SETUID, CAP_SETGID); run as root")
	}
}

// Do changes one thread's credentials, and only for fn: the process keeps its own.
func TestDoIsConfinedToOneThread(t *testing.T) {
	needRoot(t)
	before, err := Self()
	if err != nil {
		t.Fatal(err)
	}
	oldUmask := unix.Umask(0o022)
	defer unix.Umask(oldUmask)

	target := Creds{UID: [4]uint32{1000, 1000, 1000, 1000}, GID: [4]uint32{1000, 1000, 1000, 1000}, Groups: []uint32{1000, 44}, Umask: 0o077}
	var inside Creds
	var insideErr error
	var insideUmask int
	for i := 0; i < 20; i++ { // several times: fresh threads each time, none left changed
		if err := target.Do(func() {
			inside, insideErr = Self()
			insideUmask = unix.Umask(0o077)
		}); err != nil {
			t.Fatal(err)
		}
	}
	if insideErr != nil {
		t.Fatal(insideErr)
	}
	if inside.UID != target.UID || inside.GID != target.GID || len(inside.Groups) != 2 || inside.CapEff != 0 || inside.CapPrm != 0 {
		t.Errorf("inside Do: %+v, want uid/gid 1000, groups 1000 44, no capabilities", inside)
	}
	if insideUmask != 0o077 {
		t.Errorf("umask inside Do = %o, want 077", insideUmask)
	}
	// Every thread of the process has the agent's credentials and umask again once Do's threads
	// have ended (the runtime ends them just after their goroutines return).
	var changed []string
	deadline := time.Now().Add(5 * time.Second)
	for {
		changed = changed[:0]
		threads, _ := os.ReadDir("/proc/self/task")
		for _, th := range threads {
			b, err := os.ReadFile(filepath.Join("/proc/self/task", th.Name(), "status"))
			if err != nil {
				continue // the thread ended
			}
			c, err := Parse(b)
			if err != nil {
				t.Fatal(err)
			}
			if c.UID != before.UID || c.CapEff != before.CapEff || c.Umask != 0o022 {
				changed = append(changed, fmt.Sprintf("thread %s: uid %v caps %x umask %o", th.Name(), c.UID, c.CapEff, c.Umask))
			}
		}
		if len(changed) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if len(changed) > 0 {
		t.Errorf("threads still changed after Do (want uid %v caps %x umask 022):\n%s", before.UID, before.CapEff, strings.Join(changed, "\n"))
	}
}

// The kernel, not the agent, decides: EACCES where uid 1000 may not write, ownership and umask
// for what it creates.
func TestDoLetsTheKernelDecide(t *testing.T) {
	needRoot(t)
	dir := t.TempDir()
	// t.TempDir's parent is 0700: uid 1000 could not even reach dir.
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	shared := filepath.Join(dir, "shared")
	if err := os.Mkdir(shared, 0o777); err != nil {
		t.Fatal(err)
	}
	os.Chmod(shared, 0o1777)
	secret := filepath.Join(dir, "secret")
	os.WriteFile(secret, []byte("x"), 0o600)

	target := Creds{UID: [4]uint32{1000, 1000, 1000, 1000}, GID: [4]uint32{1000, 1000, 1000, 1000}, Umask: 0o027}
	var errRoot, errShared, errRead error
	if err := target.Do(func() {
		_, errRoot = os.Create(filepath.Join(dir, "no"))
		var f *os.File
		if f, errShared = os.OpenFile(filepath.Join(shared, "yes"), os.O_CREATE|os.O_WRONLY, 0o666); errShared == nil {
			f.Close()
		}
		_, errRead = os.ReadFile(secret)
	}); err != nil {
		t.Fatal(err)
	}
	if !os.IsPermission(errRoot) || !os.IsPermission(errRead) {
		t.Errorf("as uid 1000: create in a root dir = %v, read a 0600 root file = %v; want EACCES both", errRoot, errRead)
	}
	if errShared != nil {
		t.Fatal(errShared)
	}
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(shared, "yes"), &st); err != nil {
		t.Fatal(err)
	}
	if st.Uid != 1000 || st.Gid != 1000 || st.Mode&0o777 != 0o640 {
		t.Errorf("created file: uid %d gid %d mode %o; want 1000 1000 640 (0666 &^ 027)", st.Uid, st.Gid, st.Mode&0o777)
	}

	// A root target keeps root's power over files (CAP_DAC_OVERRIDE).
	self, _ := Self()
	var errAsRoot error
	if err := self.Do(func() { _, errAsRoot = os.ReadFile(secret) }); err != nil {
		t.Fatal(err)
	}
	if errAsRoot != nil {
		t.Errorf("as root: %v", errAsRoot)
	}
	// Root without CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH is refused, as in a container that
	// dropped them.
	noDAC := self
	noDAC.CapPrm &^= 1<<unix.CAP_DAC_OVERRIDE | 1<<unix.CAP_DAC_READ_SEARCH
	noDAC.CapEff = noDAC.CapPrm
	os.Chown(secret, 1000, 1000)
	if err := noDAC.Do(func() { _, errAsRoot = os.ReadFile(secret) }); err != nil {
		t.Fatal(err)
	}
	if !os.IsPermission(errAsRoot) {
		t.Errorf("root without DAC capabilities reading another's 0600 file: %v, want EACCES", errAsRoot)
	}
}
