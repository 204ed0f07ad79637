package fsserver

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kwarp-dev/kwarp/agent/internal/inroot"
	"golang.org/x/sys/unix"
)

var treeMtime = time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC)

// makeTree builds a container root: files, a ConfigMap-like symlink farm, an absolute symlink,
// escape attempts, a symlink loop, a FIFO.
func makeTree(t testing.TB) string {
	dir, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"etc/app.conf":              "hello\n",
		"etc/passwd":                "tree-passwd\n",
		"config/..2024_x/app.conf":  "cfg\n",
		"dir/a":                     "a",
		"dir/b":                     "bb",
		"dir/sub/c":                 "ccc",
		"big":                       strings.Repeat("0123456789abcdef", 300<<10/16),
		"only-root-may-read/secret": "s3cret",
	}
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	links := map[string]string{
		"etc/link":        "/etc/app.conf",
		"config/..data":   "..2024_x",
		"config/app.conf": "..data/app.conf",
		"escape":          "../../../../etc/passwd",
		"abs-escape":      "/../../../etc/passwd",
		"magic":           "/proc/self/root/etc/passwd",
		"loop1":           "loop2",
		"loop2":           "loop1",
		"dangling":        "/nowhere/file",
		"dir-link":        "/dir",
	}
	for name, to := range links {
		if err := os.Symlink(to, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	if err := unix.Mkfifo(filepath.Join(dir, "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(filepath.Join(dir, "etc/app.conf"), treeMtime, treeMtime); err != nil {
		t.Fatal(err)
	}
	return dir
}

func openTree(t testing.TB, dir string) int {
	root, err := inroot.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(root) })
	return root
}

func errnoIs(err error, want unix.Errno) bool {
	if want == 0 {
		return err == nil
	}
	var e unix.Errno
	return errors.As(err, &e) && e == want
}

func TestCheckPath(t *testing.T) {
	tests := []struct {
		in   string
		want unix.Errno
	}{
		{"/etc/passwd", 0},
		{"/", 0},
		{"/../..", 0},
		{"", unix.ENOENT},
		{"etc/passwd", unix.EINVAL},
		{"/etc/\x00passwd", unix.EINVAL},
		{"/" + strings.Repeat("a", pathMax), unix.ENAMETOOLONG},
	}
	for _, tt := range tests {
		if got := checkPath(tt.in); got != tt.want {
			t.Errorf("checkPath(%.20q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestSplitParent(t *testing.T) {
	tests := []struct{ in, parent, name string }{
		{"/a/b/c", "/a/b", "c"},
		{"/a", "/", "a"},
		{"/a/b/", "/a", "b/"},
		{"//a//b//", "//a", "b//"},
		{"/", "/", ""},
		{"///", "/", ""},
		{"//a", "/", "a"},
		{"/a/..", "/a", ".."},
	}
	for _, tt := range tests {
		p, n := splitParent(tt.in)
		if p != tt.parent || n != tt.name {
			t.Errorf("splitParent(%q) = %q, %q; want %q, %q", tt.in, p, n, tt.parent, tt.name)
		}
	}
}

func TestStat(t *testing.T) {
	dir := makeTree(t)
	root := openTree(t, dir)
	var rootSt unix.Stat_t
	if err := unix.Stat(dir, &rootSt); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		path     string
		noFollow bool
		errno    unix.Errno
		mode     uint32 // S_IFMT bits
		size     int64
	}{
		{"/etc/app.conf", false, 0, unix.S_IFREG, 6},
		{"/etc/link", false, 0, unix.S_IFREG, 6},
		{"/etc/link", true, 0, unix.S_IFLNK, int64(len("/etc/app.conf"))},
		{"/config/app.conf", false, 0, unix.S_IFREG, 4},
		{"/dir-link/", true, 0, unix.S_IFDIR, -1}, // a trailing slash follows, even for lstat
		{"/etc/app.conf/", false, unix.ENOTDIR, 0, 0},
		{"/nope", false, unix.ENOENT, 0, 0},
		{"/dangling", false, unix.ENOENT, 0, 0},
		{"/dangling", true, 0, unix.S_IFLNK, -1},
		{"/loop1", false, unix.ELOOP, 0, 0},
		{"/loop1", true, 0, unix.S_IFLNK, -1},
		{"/fifo", false, 0, unix.S_IFIFO, 0},
	}
	for _, tt := range tests {
		info, err := stat(root, tt.path, tt.noFollow)
		if !errnoIs(err, tt.errno) {
			t.Errorf("stat(%q, noFollow=%v) err = %v, want %v", tt.path, tt.noFollow, err, tt.errno)
			continue
		}
		if err != nil {
			continue
		}
		if info.Mode&unix.S_IFMT != tt.mode || (tt.size >= 0 && info.Size != tt.size) {
			t.Errorf("stat(%q, noFollow=%v) = mode %o size %d, want type %o size %d", tt.path, tt.noFollow, info.Mode, info.Size, tt.mode, tt.size)
		}
	}
	info, err := stat(root, "/etc/app.conf", false)
	if err != nil {
		t.Fatal(err)
	}
	if info.MtimeNs != treeMtime.UnixNano() || info.Mode&0o777 != 0o644 || info.Uid != uint32(os.Getuid()) || info.Nlink != 1 {
		t.Errorf("stat /etc/app.conf = %+v", info)
	}
	// ".." stops at the root.
	for _, p := range []string{"/..", "/../../..", "/etc/../../.."} {
		info, err := stat(root, p, false)
		if err != nil || info.Ino != rootSt.Ino || info.Dev != rootSt.Dev {
			t.Errorf("stat(%q) = %v, %v; want the tree's root", p, info, err)
		}
	}
}

func readAll(t *testing.T, root int, p string, max int64) (string, error) {
	t.Helper()
	f, _, err := openRead(root, p, max)
	if err != nil {
		return "", err
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	return string(b), nil
}

func TestReadStaysInsideTheRoot(t *testing.T) {
	root := openTree(t, makeTree(t))
	tests := []struct {
		path  string
		want  string
		errno unix.Errno
	}{
		{"/etc/app.conf", "hello\n", 0},
		{"/etc/link", "hello\n", 0},         // absolute symlink, resolved in the tree
		{"/config/app.conf", "cfg\n", 0},    // ConfigMap farm
		{"/escape", "tree-passwd\n", 0},     // ../../../../etc/passwd stops at the root
		{"/abs-escape", "tree-passwd\n", 0}, // so does /../../../etc/passwd
		{"/../../../etc/passwd", "tree-passwd\n", 0},
		{"/dir/sub/../../etc/passwd", "tree-passwd\n", 0},
		{"/magic", "", unix.ENOENT}, // no /proc in this tree
		{"/dir", "", unix.EISDIR},
		{"/fifo", "", unix.ENXIO},
		{"/loop1", "", unix.ELOOP},
		{"/nope", "", unix.ENOENT},
		{"/etc/app.conf/x", "", unix.ENOTDIR},
		{"/big", "", unix.EFBIG}, // with max 1000 below
	}
	for _, tt := range tests {
		max := int64(0)
		if tt.path == "/big" {
			max = 1000
		}
		got, err := readAll(t, root, tt.path, max)
		if !errnoIs(err, tt.errno) || got != tt.want {
			t.Errorf("read %q = %q, %v; want %q, %v", tt.path, got, err, tt.want, tt.errno)
		}
	}
	if host, err := os.ReadFile("/etc/passwd"); err == nil && bytes.Equal(host, []byte("tree-passwd\n")) {
		t.Fatal("the host's /etc/passwd is the tree's: the test proves nothing")
	}
}

// Magic links (/proc/self/root and kin) are refused: here with the host's root as the root,
// where /proc is a real procfs.
func TestMagicLinksRefused(t *testing.T) {
	root := openTree(t, "/")
	for _, p := range []string{"/proc/self/root/etc/passwd", "/proc/self/cwd", "/proc/" + strconv.Itoa(os.Getpid()) + "/root/"} {
		if _, err := readAll(t, root, p, 0); !errnoIs(err, unix.ELOOP) {
			t.Errorf("read %q: err %v, want ELOOP", p, err)
		}
	}
	// The link itself may be stat'ed and read, as lstat and readlink would.
	if info, err := stat(root, "/proc/self/root", true); err != nil || info.Mode&unix.S_IFMT != unix.S_IFLNK {
		t.Errorf("lstat /proc/self/root = %v, %v; want a symlink", info, err)
	}
}

func TestReadDir(t *testing.T) {
	dir := makeTree(t)
	root := openTree(t, dir)
	entries, skipped, err := readDir(root, "/dir-link")
	if err != nil || skipped != 0 {
		t.Fatal(err, skipped)
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].Name < entries[j].Name })
	var got []string
	for _, e := range entries {
		got = append(got, e.Name+":"+strconv.Itoa(int(e.Type)))
		var st unix.Stat_t
		if err := unix.Lstat(filepath.Join(dir, "dir", e.Name), &st); err != nil || st.Ino != e.Ino {
			t.Errorf("%s: ino %d, want %d", e.Name, e.Ino, st.Ino)
		}
	}
	want := []string{"a:" + strconv.Itoa(unix.DT_REG), "b:" + strconv.Itoa(unix.DT_REG), "sub:" + strconv.Itoa(unix.DT_DIR)}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("readDir = %v, want %v (no . and ..)", got, want)
	}
	if _, _, err := readDir(root, "/etc/app.conf"); !errnoIs(err, unix.ENOTDIR) {
		t.Errorf("readDir of a file: %v, want ENOTDIR", err)
	}
	// A directory larger than one getdents buffer.
	for i := 0; i < 3000; i++ {
		if err := os.WriteFile(filepath.Join(dir, "dir/sub", "file-with-a-long-name-"+strconv.Itoa(i)), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	entries, _, err = readDir(root, "/dir/sub")
	if err != nil || len(entries) != 3001 {
		t.Errorf("readDir of 3001 entries: %d, %v", len(entries), err)
	}
	// Names that are not UTF-8 cannot cross the wire: left out and counted.
	if err := os.WriteFile(filepath.Join(dir, "dir", "bad-\xff"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	entries, skipped, err = readDir(root, "/dir")
	if err != nil || skipped != 1 || len(entries) != 3 {
		t.Errorf("readDir with a non-UTF-8 name: %d entries, %d skipped, %v", len(entries), skipped, err)
	}
}

func TestReadLink(t *testing.T) {
	root := openTree(t, makeTree(t))
	tests := []struct {
		path, want string
		errno      unix.Errno
	}{
		{"/etc/link", "/etc/app.conf", 0},
		{"/config/app.conf", "..data/app.conf", 0},
		{"/config/..data", "..2024_x", 0},
		{"/dir-link/a", "", unix.EINVAL}, // not a link (reached through one)
		{"/nope", "", unix.ENOENT},
		{"/dir-link/", "", unix.EINVAL}, // the trailing slash follows: a directory
	}
	for _, tt := range tests {
		got, err := readLink(root, tt.path)
		if !errnoIs(err, tt.errno) || got != tt.want {
			t.Errorf("readLink(%q) = %q, %v; want %q, %v", tt.path, got, err, tt.want, tt.errno)
		}
	}
}

func TestAccessAsCaller(t *testing.T) {
	root := openTree(t, makeTree(t))
	tests := []struct {
		path  string
		mode  uint32
		errno unix.Errno
	}{
		{"/etc/app.conf", unix.F_OK, 0},
		{"/etc/link", unix.R_OK, 0},
		{"/nope", unix.F_OK, unix.ENOENT},
		{"/dangling", unix.F_OK, unix.ENOENT},
		{"/etc/app.conf", 8, unix.EINVAL},
	}
	for _, tt := range tests {
		if err := access(root, tt.path, tt.mode); !errnoIs(err, tt.errno) {
			t.Errorf("access(%q, %d) = %v, want %v", tt.path, tt.mode, err, tt.errno)
		}
	}
}

func TestMutations(t *testing.T) {
	dir := makeTree(t)
	root := openTree(t, dir)
	write := func(p, data string, appendTo bool) error {
		f, err := openWrite(root, p, 0o640, appendTo)
		if err != nil {
			return err
		}
		if _, err := f.WriteString(data); err != nil {
			t.Fatal(err)
		}
		return f.Close()
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(write("/dir/new", "one", false))
	must(write("/dir/new", "two", true))
	must(write("/dir-link/new2", "x", false)) // through the absolute symlink to /dir
	if b, _ := os.ReadFile(filepath.Join(dir, "dir/new")); string(b) != "onetwo" {
		t.Errorf("after write+append: %q", b)
	}
	if _, err := os.Stat(filepath.Join(dir, "dir/new2")); err != nil {
		t.Errorf("write through /dir-link: %v", err)
	}
	must(write("/dir/new", "3", false))
	if b, _ := os.ReadFile(filepath.Join(dir, "dir/new")); string(b) != "3" {
		t.Errorf("after truncating write: %q", b)
	}
	// Creating through the dangling absolute symlink creates its target inside the tree.
	if err := write("/dangling", "x", false); !errnoIs(err, unix.ENOENT) {
		t.Errorf("write through a link into a missing dir: %v, want ENOENT", err)
	}
	for _, tt := range []struct {
		p     string
		errno unix.Errno
	}{{"/dir", unix.EISDIR}, {"/fifo", unix.ENXIO}, {"/nodir/x", unix.ENOENT}} {
		if err := write(tt.p, "x", false); !errnoIs(err, tt.errno) {
			t.Errorf("write %q: %v, want %v", tt.p, err, tt.errno)
		}
	}

	must(mkdir(root, "/dir/made/", 0o750))
	if st, err := os.Stat(filepath.Join(dir, "dir/made")); err != nil || !st.IsDir() {
		t.Errorf("mkdir: %v", err)
	}
	for _, tt := range []struct {
		p     string
		errno unix.Errno
	}{{"/", unix.EEXIST}, {"/dir", unix.EEXIST}, {"/dir/..", unix.EEXIST}, {"/nodir/x", unix.ENOENT}} {
		if err := mkdir(root, tt.p, 0o755); !errnoIs(err, tt.errno) {
			t.Errorf("mkdir %q: %v, want %v", tt.p, err, tt.errno)
		}
	}

	must(rename(root, "/dir/new", "/dir/made/renamed"))
	if _, err := os.Stat(filepath.Join(dir, "dir/made/renamed")); err != nil {
		t.Errorf("rename: %v", err)
	}
	// rename never leaves the root: "/../x" is "/x".
	must(rename(root, "/dir/made/renamed", "/../../renamed-at-root"))
	if _, err := os.Stat(filepath.Join(dir, "renamed-at-root")); err != nil {
		t.Errorf("rename to /../../x: %v", err)
	}
	for _, tt := range []struct {
		from, to string
		errno    unix.Errno
	}{{"/", "/x", unix.EBUSY}, {"/dir/..", "/x", unix.EBUSY}, {"/nope", "/x", unix.ENOENT}, {"/etc/app.conf/", "/x", unix.ENOTDIR}} {
		if err := rename(root, tt.from, tt.to); !errnoIs(err, tt.errno) {
			t.Errorf("rename %q %q: %v, want %v", tt.from, tt.to, err, tt.errno)
		}
	}

	// unlink removes a symlink, not its target.
	must(unlink(root, "/etc/link", false))
	if _, err := os.Stat(filepath.Join(dir, "etc/app.conf")); err != nil {
		t.Errorf("unlink of a symlink removed its target: %v", err)
	}
	for _, tt := range []struct {
		p     string
		dir   bool
		errno unix.Errno
	}{
		{"/dir", false, unix.EISDIR},
		{"/dir/a/", false, unix.ENOTDIR},
		{"/dir", true, unix.ENOTEMPTY},
		{"/dir/made/", true, 0},
		{"/dir/sub/..", true, unix.ENOTEMPTY}, // never the parent's parent
		{"/dir/sub/.", true, unix.EINVAL},
		{"/dir/..", false, unix.EISDIR},
		{"/", true, unix.EBUSY},
		{"/", false, unix.EISDIR},
		{"/renamed-at-root", false, 0},
	} {
		if err := unlink(root, tt.p, tt.dir); !errnoIs(err, tt.errno) {
			t.Errorf("unlink %q dir=%v: %v, want %v", tt.p, tt.dir, err, tt.errno)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "dir/sub")); err != nil {
		t.Errorf("dir/sub gone: %v", err)
	}
}

// FuzzRequestPaths feeds request paths to the validation and to the read-only operations on a
// tree: nothing panics, every failure is an errno, and whatever opens is inside the tree.
func FuzzRequestPaths(f *testing.F) {
	for _, s := range []string{
		"/etc/passwd", "/../../../../etc/passwd", "/escape", "/abs-escape", "/magic", "/etc/link",
		"/config/app.conf", "/config/..data/", "/", "//", "/.", "/..", "/dir/sub/../..", "/loop1",
		"/fifo", "", "relative", "/a\x00b", "/dir-link/../..", "/dir//sub///", "/proc/self/root",
	} {
		f.Add(s, false)
	}
	dir := makeTree(f)
	root := openTree(f, dir)
	f.Fuzz(func(t *testing.T, p string, noFollow bool) {
		if e := checkPath(p); e != 0 {
			return
		}
		parent, name := splitParent(p)
		if !strings.HasPrefix(parent, "/") || strings.Contains(strings.TrimRight(name, "/"), "/") {
			t.Fatalf("splitParent(%q) = %q, %q", p, parent, name)
		}
		if name == "" && strings.Trim(p, "/") != "" {
			t.Fatalf("splitParent(%q) gave the root's empty name", p)
		}
		checkErr := func(op string, err error) {
			var e unix.Errno
			if err != nil && !errors.As(err, &e) {
				t.Fatalf("%s(%q): %v is not an errno", op, p, err)
			}
		}
		_, err := stat(root, p, noFollow)
		checkErr("stat", err)
		_, _, err = readDir(root, p)
		checkErr("readDir", err)
		_, err = readLink(root, p)
		checkErr("readLink", err)
		checkErr("access", access(root, p, unix.R_OK))
		flags := unix.O_PATH
		if noFollow {
			flags |= unix.O_NOFOLLOW
		}
		fd, err := inroot.Open(root, p, flags, 0)
		checkErr("open", err)
		if err != nil {
			return
		}
		defer unix.Close(fd)
		where, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(fd))
		if err != nil {
			t.Fatal(err)
		}
		if where != dir && !strings.HasPrefix(where, dir+"/") {
			t.Fatalf("%q opened %q, outside the root %q", p, where, dir)
		}
	})
}
