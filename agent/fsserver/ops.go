package fsserver

import (
	"encoding/binary"
	"os"
	"strings"
	"unicode/utf8"

	agentv1 "github.com/kwarp-dev/kwarp/agent/api/v1"
	"github.com/kwarp-dev/kwarp/agent/internal/inroot"
	"golang.org/x/sys/unix"
)

// The operations below work on a root directory fd and return bare errnos. They know nothing of
// targets or credentials: the service runs them on a thread with the target's credentials, the
// tests on a plain directory.

// pathMax is PATH_MAX: the kernel refuses longer names (with the NUL) with ENAMETOOLONG.
const pathMax = 4096

// checkPath validates a request's path before any system call: absolute, no NUL, not too long.
// The path is otherwise passed to the kernel unchanged (no lexical cleaning: "a/link/.." is not
// "a" when link is a symlink, and RESOLVE_IN_ROOT already keeps ".." inside the root).
func checkPath(p string) unix.Errno {
	switch {
	case p == "":
		return unix.ENOENT // what open("") says
	case p[0] != '/':
		return unix.EINVAL // the layer resolves relative paths against the process's cwd
	case strings.IndexByte(p, 0) >= 0:
		return unix.EINVAL
	case len(p) >= pathMax:
		return unix.ENAMETOOLONG
	}
	return 0
}

// splitParent splits an absolute path into its parent directory and last name. The name keeps
// trailing slashes ("/a/b/" → "/a", "b/") so the kernel applies the same trailing-slash rules as
// for the whole path; it never contains another '/' before them, so an *at call on the parent's
// fd resolves nothing but that one name. The root itself has the name "".
func splitParent(p string) (parent, name string) {
	t := strings.TrimRight(p, "/")
	if t == "" {
		return "/", ""
	}
	i := strings.LastIndexByte(t, '/')
	parent = strings.TrimRight(t[:i], "/")
	if parent == "" {
		parent = "/"
	}
	return parent, p[i+1:]
}

// openParent opens the parent of p inside root, for the calls that act on a name in a
// directory (mkdir, unlink, rename): the parent is resolved like any path, the name is not
// followed.
func openParent(root int, p string) (fd int, name string, err error) {
	parent, name := splitParent(p)
	fd, err = inroot.Open(root, parent, unix.O_PATH|unix.O_DIRECTORY, 0)
	return fd, name, err
}

func fileInfo(st *unix.Stat_t) *agentv1.FileInfo {
	return &agentv1.FileInfo{
		Mode:    st.Mode,
		Size:    st.Size,
		Uid:     st.Uid,
		Gid:     st.Gid,
		Nlink:   uint64(st.Nlink),
		Ino:     st.Ino,
		Dev:     st.Dev,
		Rdev:    st.Rdev,
		Blksize: int64(st.Blksize),
		Blocks:  st.Blocks,
		AtimeNs: st.Atim.Nano(),
		MtimeNs: st.Mtim.Nano(),
		CtimeNs: st.Ctim.Nano(),
	}
}

func fstat(fd int) (*agentv1.FileInfo, error) {
	var st unix.Stat_t
	// AT_EMPTY_PATH stats the fd itself, also when it is an O_PATH fd of a symlink.
	if err := unix.Fstatat(fd, "", &st, unix.AT_EMPTY_PATH); err != nil {
		return nil, err
	}
	return fileInfo(&st), nil
}

// stat is stat(2), or lstat(2) with noFollow. The path is opened O_PATH (no read permission
// needed, as for stat) and the fd stat'ed; with O_NOFOLLOW the fd is the symlink itself. This
// keeps the kernel's rules for "." and "..", and for a trailing slash, which follows a symlink
// even for lstat.
func stat(root int, p string, noFollow bool) (*agentv1.FileInfo, error) {
	flags := unix.O_PATH
	if noFollow {
		flags |= unix.O_NOFOLLOW
	}
	fd, err := inroot.Open(root, p, flags, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	return fstat(fd)
}

// openRead opens a regular file for reading. O_NONBLOCK keeps a FIFO from blocking the open;
// files that are not regular are refused: a directory with EISDIR, a FIFO, socket or device
// with ENXIO (their content is not a file's content; the layer keeps them local).
func openRead(root int, p string, maxBytes int64) (*os.File, *agentv1.FileInfo, error) {
	fd, err := inroot.Open(root, p, unix.O_RDONLY|unix.O_NOCTTY|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, nil, err
	}
	info, err := fstat(fd)
	if err != nil {
		unix.Close(fd)
		return nil, nil, err
	}
	switch {
	case info.Mode&unix.S_IFMT == unix.S_IFDIR:
		unix.Close(fd)
		return nil, nil, unix.EISDIR
	case info.Mode&unix.S_IFMT != unix.S_IFREG:
		unix.Close(fd)
		return nil, nil, unix.ENXIO
	case maxBytes > 0 && info.Size > maxBytes:
		unix.Close(fd)
		return nil, nil, unix.EFBIG
	}
	return os.NewFile(uintptr(fd), p), info, nil
}

// readDir lists a directory like os.ReadDir: without "." and "..", in getdents order. Names that
// are not valid UTF-8 are left out (skipped reports how many): the wire type is a protobuf
// string, which cannot carry them.
func readDir(root int, p string) (entries []*agentv1.DirEntry, skipped int, err error) {
	fd, err := inroot.Open(root, p, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return nil, 0, err
	}
	defer unix.Close(fd)
	buf := make([]byte, 64<<10)
	for {
		n, err := unix.Getdents(fd, buf)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, 0, err
		}
		if n <= 0 {
			return entries, skipped, nil
		}
		entries, skipped = parseDirents(buf[:n], entries, skipped)
	}
}

// parseDirents decodes struct linux_dirent64 records: d_ino u64, d_off s64, d_reclen u16,
// d_type u8, d_name NUL-terminated.
func parseDirents(b []byte, entries []*agentv1.DirEntry, skipped int) ([]*agentv1.DirEntry, int) {
	const nameOff = 19
	for len(b) >= nameOff {
		reclen := int(binary.NativeEndian.Uint16(b[16:18]))
		if reclen < nameOff || reclen > len(b) {
			break // malformed; the kernel never does this
		}
		rec := b[:reclen]
		b = b[reclen:]
		name := rec[nameOff:]
		if i := indexNUL(name); i >= 0 {
			name = name[:i]
		}
		if s := string(name); s == "." || s == ".." {
			continue
		}
		if !utf8.Valid(name) {
			skipped++
			continue
		}
		entries = append(entries, &agentv1.DirEntry{
			Name: string(name),
			Type: uint32(rec[18]),
			Ino:  binary.NativeEndian.Uint64(rec[0:8]),
		})
	}
	return entries, skipped
}

func indexNUL(b []byte) int {
	for i, c := range b {
		if c == 0 {
			return i
		}
	}
	return -1
}

// readLink is readlink(2): the link itself is opened (O_PATH|O_NOFOLLOW) and read through its
// fd, so the path up to it resolves inside the root. Not a symlink: EINVAL, as readlink says.
func readLink(root int, p string) (string, error) {
	fd, err := inroot.Open(root, p, unix.O_PATH|unix.O_NOFOLLOW, 0)
	if err != nil {
		return "", err
	}
	defer unix.Close(fd)
	// readlinkat(fd, "") says ENOENT for what is not a symlink; readlink(2) says EINVAL.
	var st unix.Stat_t
	if err := unix.Fstatat(fd, "", &st, unix.AT_EMPTY_PATH); err != nil {
		return "", err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFLNK {
		return "", unix.EINVAL
	}
	for size := 256; ; size *= 2 {
		buf := make([]byte, size)
		n, err := unix.Readlinkat(fd, "", buf)
		if err != nil {
			return "", err
		}
		if n < size {
			if !utf8.Valid(buf[:n]) {
				return "", unix.EILSEQ // a protobuf string cannot carry it
			}
			return string(buf[:n]), nil
		}
		if size >= pathMax*2 {
			return "", unix.ENAMETOOLONG
		}
	}
}

// access is access(2). The path is opened O_PATH (its directories' search permission checked
// as for access), then the kernel checks mode on the fd (faccessat2 with AT_EMPTY_PATH, Linux
// 5.8+), with the real uid and gid as access(2) does, and EROFS for W_OK on a read-only mount.
func access(root int, p string, mode uint32) error {
	if mode&^uint32(unix.R_OK|unix.W_OK|unix.X_OK) != 0 {
		return unix.EINVAL
	}
	fd, err := inroot.Open(root, p, unix.O_PATH, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if mode == unix.F_OK {
		return nil
	}
	return unix.Faccessat2(fd, "", mode, unix.AT_EMPTY_PATH)
}

// openWrite opens p for a Write: created when missing (with the caller's umask, owned by the
// caller's fsuid and fsgid or the directory's group when it is setgid: the kernel's rules),
// truncated or appended to when present. Like openRead it refuses what is not a regular file.
func openWrite(root int, p string, mode uint32, appendTo bool) (*os.File, error) {
	flags := unix.O_WRONLY | unix.O_CREAT | unix.O_NOCTTY | unix.O_NONBLOCK
	if appendTo {
		flags |= unix.O_APPEND
	} else {
		flags |= unix.O_TRUNC
	}
	fd, err := inroot.Open(root, p, flags, mode&0o7777)
	if err != nil {
		return nil, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		unix.Close(fd)
		return nil, unix.ENXIO
	}
	return os.NewFile(uintptr(fd), p), nil
}

// mkdir is mkdir(2) (the caller's umask applies). mkdir of "/" is EEXIST, as the kernel says.
func mkdir(root int, p string, mode uint32) error {
	pfd, name, err := openParent(root, p)
	if err != nil {
		return err
	}
	defer unix.Close(pfd)
	if name == "" {
		return unix.EEXIST
	}
	return unix.Mkdirat(pfd, name, mode&0o7777)
}

// unlink is unlink(2), or rmdir(2) with dir. The name itself is never followed: unlinking a
// symlink removes the link. For "/" the kernel's answers: EISDIR (unlink), EBUSY (rmdir).
func unlink(root int, p string, dir bool) error {
	pfd, name, err := openParent(root, p)
	if err != nil {
		return err
	}
	defer unix.Close(pfd)
	flags := 0
	if dir {
		flags = unix.AT_REMOVEDIR
	}
	if name == "" {
		if dir {
			return unix.EBUSY
		}
		return unix.EISDIR
	}
	return unix.Unlinkat(pfd, name, flags)
}

// rename is rename(2) with both paths in root. Across mounts the kernel says EXDEV. Renaming
// "/" is EBUSY.
func rename(root int, from, to string) error {
	ffd, fname, err := openParent(root, from)
	if err != nil {
		return err
	}
	defer unix.Close(ffd)
	tfd, tname, err := openParent(root, to)
	if err != nil {
		return err
	}
	defer unix.Close(tfd)
	if fname == "" || tname == "" {
		return unix.EBUSY
	}
	return unix.Renameat(ffd, fname, tfd, tname)
}
