package supervisor_test

import (
	"context"
	"errors"
	"hash/fnv"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kwarp-dev/kwarp/layer"
	"golang.org/x/sys/unix"
)

// fakeFS is the Handler of the tests: an in-memory "remote" tree under a root that does not
// exist on this machine, served the way the core will serve it (memfd for files, a local
// directory filled with empty entries of the right names for directories).
type fakeFS struct {
	root     string
	nodes    map[string]*node
	notFound map[string]bool
	dirsDir  string // where directories are materialised
	// slow delays Open of these paths; block makes Open wait for the context.
	slow  map[string]time.Duration
	block map[string]bool

	mu        sync.Mutex
	dirs      map[string]string // remote dir → materialised local dir
	opens     atomic.Int64
	blocked   chan struct{} // closed when a blocking Open starts
	blockOnce sync.Once
	gate      chan struct{} // Open of /kwarp-remote/block/gate waits for it to close
}

type node struct {
	mode    uint32 // with the type bits
	content string
	link    string
	errno   unix.Errno // Open and Access fail with it
	err     error      // Open fails with it (not an errno: EIO)
	panics  bool       // Open panics
}

const remoteRoot = "/kwarp-remote"

// fakeMtime is the remote files' mtime, a value no local file has.
const fakeMtime = 1000000000

const appConf = "name=checkout\nmode=staging\n"

func newFakeFS(dirsDir string) *fakeFS {
	f := &fakeFS{
		root:     remoteRoot,
		notFound: map[string]bool{},
		dirsDir:  dirsDir,
		slow:     map[string]time.Duration{},
		block:    map[string]bool{},
		dirs:     map[string]string{},
		blocked:  make(chan struct{}),
		gate:     make(chan struct{}),
		nodes: map[string]*node{
			"/kwarp-remote":                     {mode: unix.S_IFDIR | 0o755},
			"/kwarp-remote/etc":                 {mode: unix.S_IFDIR | 0o755},
			"/kwarp-remote/etc/app.conf":        {mode: unix.S_IFREG | 0o640, content: appConf},
			"/kwarp-remote/etc/link":            {mode: unix.S_IFLNK | 0o777, link: "app.conf"},
			"/kwarp-remote/etc/secret":          {mode: unix.S_IFREG | 0o600, content: "s3cr3t", errno: unix.EACCES},
			"/kwarp-remote/etc/broken":          {mode: unix.S_IFREG | 0o644, err: errors.New("agent connection lost")},
			"/kwarp-remote/etc/panic":           {mode: unix.S_IFREG | 0o644, panics: true},
			"/kwarp-remote/etc/sub":             {mode: unix.S_IFDIR | 0o755},
			"/kwarp-remote/etc/sub/nested.txt":  {mode: unix.S_IFREG | 0o644, content: "nested\n"},
			"/kwarp-remote/bench/4k":            {mode: unix.S_IFREG | 0o644, content: strings.Repeat("k", 4096)},
			"/kwarp-remote/slow/app.conf":       {mode: unix.S_IFREG | 0o644, content: appConf},
			"/kwarp-remote/block/forever":       {mode: unix.S_IFREG | 0o644, content: "never"},
			"/kwarp-remote/block/gate":          {mode: unix.S_IFREG | 0o644, content: "through the gate"},
			"/kwarp-remote/bench":               {mode: unix.S_IFDIR | 0o755},
			"/kwarp-remote/slow":                {mode: unix.S_IFDIR | 0o755},
			"/kwarp-remote/block":               {mode: unix.S_IFDIR | 0o755},
			"/kwarp-remote/etc/sub/deeper":      {mode: unix.S_IFDIR | 0o755},
			"/kwarp-remote/etc/sub/deeper/leaf": {mode: unix.S_IFREG | 0o644, content: "leaf\n"},
		},
	}
	f.slow["/kwarp-remote/slow/app.conf"] = 150 * time.Millisecond
	f.block["/kwarp-remote/block/forever"] = true
	return f
}

func (f *fakeFS) Route(p string) layer.Route {
	if f.notFound[p] {
		return layer.NotFound
	}
	if p == f.root || strings.HasPrefix(p, f.root+"/") {
		return layer.Remote
	}
	return layer.Local
}

// lookup finds p, following a final symlink unless nofollow.
func (f *fakeFS) lookup(p string, nofollow bool) (string, *node, error) {
	for range 8 {
		n, ok := f.nodes[p]
		if !ok {
			return p, nil, unix.ENOENT
		}
		if n.mode&unix.S_IFMT != unix.S_IFLNK || nofollow {
			return p, n, nil
		}
		p = path.Join(path.Dir(p), n.link)
	}
	return p, nil, unix.ELOOP
}

func (f *fakeFS) Open(ctx context.Context, p string, flags int, mode uint32) (*os.File, error) {
	f.opens.Add(1)
	p, n, err := f.lookup(p, flags&unix.O_NOFOLLOW != 0)
	if err != nil {
		return nil, err
	}
	if n.errno != 0 {
		return nil, &os.PathError{Op: "open", Path: p, Err: n.errno}
	}
	if n.err != nil {
		return nil, n.err
	}
	if n.panics {
		panic("the fake Handler panics")
	}
	if d := f.slow[p]; d > 0 {
		time.Sleep(d)
	}
	if f.block[p] {
		f.blockOnce.Do(func() { close(f.blocked) })
		<-ctx.Done()
		return nil, ctx.Err()
	}
	if p == "/kwarp-remote/block/gate" {
		select {
		case <-f.gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if flags&unix.O_ACCMODE != unix.O_RDONLY || flags&unix.O_CREAT != 0 {
		return nil, unix.EROFS
	}
	switch n.mode & unix.S_IFMT {
	case unix.S_IFDIR:
		dir, err := f.materialise(p)
		if err != nil {
			return nil, err
		}
		return os.Open(dir)
	case unix.S_IFLNK:
		return nil, unix.ELOOP // O_NOFOLLOW on a link
	}
	if flags&unix.O_DIRECTORY != 0 {
		return nil, unix.ENOTDIR
	}
	fd, err := unix.MemfdCreate("kwarp:"+path.Base(p), unix.MFD_CLOEXEC)
	if err != nil {
		return nil, err
	}
	mf := os.NewFile(uintptr(fd), p)
	if _, err := mf.WriteString(n.content); err != nil {
		mf.Close()
		return nil, err
	}
	if _, err := mf.Seek(0, 0); err != nil {
		mf.Close()
		return nil, err
	}
	return mf, nil
}

// materialise makes a local directory holding empty entries named like the remote ones.
func (f *fakeFS) materialise(p string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if d, ok := f.dirs[p]; ok {
		return d, nil
	}
	d, err := os.MkdirTemp(f.dirsDir, "dir")
	if err != nil {
		return "", err
	}
	for q, n := range f.nodes {
		if path.Dir(q) != p || q == p {
			continue
		}
		local := filepath.Join(d, path.Base(q))
		switch n.mode & unix.S_IFMT {
		case unix.S_IFDIR:
			err = os.Mkdir(local, 0o755)
		case unix.S_IFLNK:
			err = os.Symlink(n.link, local)
		default:
			err = os.WriteFile(local, nil, 0o644)
		}
		if err != nil {
			return "", err
		}
	}
	f.dirs[p] = d
	return d, nil
}

func (f *fakeFS) Stat(ctx context.Context, p string, nofollow bool) (unix.Stat_t, error) {
	p, n, err := f.lookup(p, nofollow)
	if err != nil {
		return unix.Stat_t{}, err
	}
	h := fnv.New64a()
	h.Write([]byte(p))
	size := int64(len(n.content))
	if n.mode&unix.S_IFMT == unix.S_IFLNK {
		size = int64(len(n.link))
	}
	return unix.Stat_t{
		Dev:     0x2a,
		Ino:     h.Sum64(),
		Nlink:   1,
		Mode:    n.mode,
		Uid:     1234,
		Gid:     5678,
		Size:    size,
		Blksize: 4096,
		Blocks:  (size + 511) / 512,
		Atim:    unix.Timespec{Sec: fakeMtime},
		Mtim:    unix.Timespec{Sec: fakeMtime},
		Ctim:    unix.Timespec{Sec: fakeMtime},
	}, nil
}

func (f *fakeFS) Readlink(ctx context.Context, p string) (string, error) {
	_, n, err := f.lookup(p, true)
	if err != nil {
		return "", err
	}
	if n.mode&unix.S_IFMT != unix.S_IFLNK {
		return "", unix.EINVAL
	}
	return n.link, nil
}

func (f *fakeFS) Access(ctx context.Context, p string, mode uint32) error {
	_, n, err := f.lookup(p, false)
	if err != nil {
		return err
	}
	if n.errno != 0 {
		return n.errno
	}
	return nil
}
