// Package imagepack turns local files (kwarp's own binaries, test workloads
// and the shared libraries they need) into a single-layer container image
// archive that containerd loads with `ctr images import`.
//
// kwarp's images never pass through a registry and no docker engine is
// available where they are built, so the archive is written directly in the
// docker-archive format (`docker save` layout: manifest.json, a config
// blob and uncompressed layer tars), which containerd's importer and
// `docker load` both understand. Output is deterministic: the same inputs give
// byte-identical archives and therefore the same image ID, so rebuilding an
// unchanged image does not churn the node's image store.
package imagepack

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"
)

// DefaultPath is put in the image environment when Spec.Env has no PATH,
// because there is no base image to inherit one from and runtimes resolve a
// relative entrypoint through it. "/" is included since packed binaries
// usually sit at the root (e.g. /kwarp-agent).
const DefaultPath = "PATH=/usr/local/bin:/usr/bin:/bin:/"

// Error categories, so callers and tests can tell failures apart with
// errors.Is while the message carries the specifics.
var (
	ErrBadReference  = errors.New("invalid image reference")
	ErrLatestTag     = errors.New("tag latest is not allowed")
	ErrBadPath       = errors.New("invalid path")
	ErrDuplicatePath = errors.New("duplicate path")
	ErrBadMode       = errors.New("invalid mode")
	ErrNotRegular    = errors.New("not a regular file")
)

// File is one file to put in the image.
type File struct {
	// Src is read on the build machine; symlinks are followed and the
	// target's content is stored, because the link target would not exist
	// inside a single-layer image.
	Src string
	// Dst is where the file appears in the image; absolute and clean.
	Dst string
	// Mode is the permission (plus setuid/setgid/sticky) bits in the image;
	// 0 keeps the source file's bits.
	Mode os.FileMode
}

// Spec describes the image to write.
type Spec struct {
	// Ref is name:tag, e.g. kwarp.dev/kwarp-agent:v0.1.0. The tag is
	// required and may not be "latest": kubelet always tries to pull
	// :latest, and there is no registry to pull from.
	Ref        string
	Entrypoint []string
	Cmd        []string
	// Env entries are KEY=VALUE; DefaultPath is added when no PATH is given.
	Env        []string
	WorkingDir string
	Files      []File
	// Dirs are empty directories to create, as "PATH" (mode 0755) or
	// "PATH:OCTALMODE", e.g. "/tmp:1777".
	Dirs []string
}

// epoch is the timestamp of every entry and of the config; a fixed value is
// what makes repeated builds byte-identical.
var epoch = time.Unix(0, 0).UTC()

// Write writes s as a docker-archive tarball to w. All validation happens
// before anything is written, so on a validation error w is untouched; on a
// later I/O error w holds a partial archive that must be discarded.
func Write(w io.Writer, s Spec) error {
	entries, env, err := plan(s)
	if err != nil {
		return err
	}

	// The layer must be complete before the outer tar can be written, since
	// its size goes in the header and its digest names it and goes in the
	// config. Spooling to a temp file keeps memory flat for big binaries.
	layer, err := os.CreateTemp("", "imagepack-layer-*.tar")
	if err != nil {
		return fmt.Errorf("pack %s: layer temp file: %w", s.Ref, err)
	}
	defer func() {
		layer.Close()
		os.Remove(layer.Name())
	}()
	lh := sha256.New()
	if err := writeLayer(io.MultiWriter(layer, lh), entries); err != nil {
		return fmt.Errorf("pack %s: layer: %w", s.Ref, err)
	}
	layerSize, err := layer.Seek(0, io.SeekCurrent)
	if err != nil {
		return fmt.Errorf("pack %s: layer: %w", s.Ref, err)
	}
	if _, err := layer.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("pack %s: layer: %w", s.Ref, err)
	}
	layerHex := hex.EncodeToString(lh.Sum(nil))

	cfg, err := json.Marshal(imageConfig{
		Created:      epoch.Format(time.RFC3339),
		Architecture: runtime.GOARCH,
		OS:           "linux",
		Config: containerConfig{
			Entrypoint: s.Entrypoint,
			Cmd:        s.Cmd,
			Env:        env,
			WorkingDir: s.WorkingDir,
		},
		RootFS: rootFS{Type: "layers", DiffIDs: []string{"sha256:" + layerHex}},
		History: []history{{
			Created:   epoch.Format(time.RFC3339),
			CreatedBy: "kwarp imagepack",
		}},
	})
	if err != nil {
		return fmt.Errorf("pack %s: config: %w", s.Ref, err)
	}
	cfgSum := sha256.Sum256(cfg)
	cfgName := hex.EncodeToString(cfgSum[:]) + ".json"
	layerName := layerHex + "/layer.tar"

	manifest, err := json.Marshal([]manifestEntry{{
		Config:   cfgName,
		RepoTags: []string{s.Ref},
		Layers:   []string{layerName},
	}})
	if err != nil {
		return fmt.Errorf("pack %s: manifest: %w", s.Ref, err)
	}

	tw := tar.NewWriter(w)
	if err := tw.WriteHeader(dirHeader(layerHex+"/", 0o755)); err != nil {
		return fmt.Errorf("pack %s: %w", s.Ref, err)
	}
	if err := tw.WriteHeader(regHeader(layerName, 0o644, layerSize)); err != nil {
		return fmt.Errorf("pack %s: %w", s.Ref, err)
	}
	if _, err := io.CopyN(tw, layer, layerSize); err != nil {
		return fmt.Errorf("pack %s: copy layer: %w", s.Ref, err)
	}
	for _, b := range []struct {
		name string
		data []byte
	}{{cfgName, cfg}, {"manifest.json", manifest}} {
		if err := tw.WriteHeader(regHeader(b.name, 0o644, int64(len(b.data)))); err != nil {
			return fmt.Errorf("pack %s: %w", s.Ref, err)
		}
		if _, err := tw.Write(b.data); err != nil {
			return fmt.Errorf("pack %s: %w", s.Ref, err)
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("pack %s: %w", s.Ref, err)
	}
	return nil
}

type manifestEntry struct {
	Config   string
	RepoTags []string
	Layers   []string
}

type imageConfig struct {
	Created      string          `json:"created"`
	Architecture string          `json:"architecture"`
	OS           string          `json:"os"`
	Config       containerConfig `json:"config"`
	RootFS       rootFS          `json:"rootfs"`
	History      []history       `json:"history,omitempty"`
}

type containerConfig struct {
	Entrypoint []string `json:"Entrypoint,omitempty"`
	Cmd        []string `json:"Cmd,omitempty"`
	Env        []string `json:"Env,omitempty"`
	WorkingDir string   `json:"WorkingDir,omitempty"`
}

type rootFS struct {
	Type    string   `json:"type"`
	DiffIDs []string `json:"diff_ids"`
}

type history struct {
	Created   string `json:"created"`
	CreatedBy string `json:"created_by"`
}

// entry is one layer member. name has no leading slash, as in layers that
// `docker save` writes.
type entry struct {
	name     string
	dir      bool
	mode     int64 // unix permission + setuid/setgid/sticky bits
	src      string
	explicit bool // from Spec rather than an implied parent directory
}

// plan validates s and resolves it into sorted layer entries and the final
// environment. It opens every source so unreadable files fail here, before
// any output exists.
func plan(s Spec) ([]*entry, []string, error) {
	if err := checkRef(s.Ref); err != nil {
		return nil, nil, fmt.Errorf("pack %s: %w", s.Ref, err)
	}
	if s.WorkingDir != "" {
		if err := checkImagePath(s.WorkingDir); err != nil {
			return nil, nil, fmt.Errorf("pack %s: working dir: %w", s.Ref, err)
		}
	}
	env, err := buildEnv(s.Env)
	if err != nil {
		return nil, nil, fmt.Errorf("pack %s: %w", s.Ref, err)
	}

	byName := map[string]*entry{}
	for _, d := range s.Dirs {
		p, mode, err := parseDir(d)
		if err != nil {
			return nil, nil, fmt.Errorf("pack %s: dir %q: %w", s.Ref, d, err)
		}
		name := p[1:]
		if _, dup := byName[name]; dup {
			return nil, nil, fmt.Errorf("pack %s: dir %s is listed twice: %w", s.Ref, p, ErrDuplicatePath)
		}
		byName[name] = &entry{name: name, dir: true, mode: mode, explicit: true}
	}
	for _, f := range s.Files {
		if err := checkImagePath(f.Dst); err != nil {
			return nil, nil, fmt.Errorf("pack %s: file %s: destination: %w", s.Ref, f.Src, err)
		}
		name := f.Dst[1:]
		if prev, dup := byName[name]; dup {
			what := "directory"
			if !prev.dir {
				what = "file " + prev.src
			}
			return nil, nil, fmt.Errorf("pack %s: file %s: destination %s is already used by %s: %w",
				s.Ref, f.Src, f.Dst, what, ErrDuplicatePath)
		}
		mode, err := sourceMode(f)
		if err != nil {
			return nil, nil, fmt.Errorf("pack %s: file %s: %w", s.Ref, f.Src, err)
		}
		byName[name] = &entry{name: name, mode: mode, src: f.Src, explicit: true}
	}

	// Parents are added after all explicit entries so that an explicit dir
	// keeps its mode regardless of list order, and a file sitting where a
	// directory is needed is caught.
	explicit := make([]*entry, 0, len(byName))
	for _, e := range byName {
		explicit = append(explicit, e)
	}
	for _, e := range explicit {
		for p := path.Dir(e.name); p != "."; p = path.Dir(p) {
			if prev, ok := byName[p]; ok {
				if !prev.dir {
					return nil, nil, fmt.Errorf("pack %s: /%s is a file (from %s) but /%s needs it to be a directory: %w",
						s.Ref, p, prev.src, e.name, ErrDuplicatePath)
				}
				continue
			}
			byName[p] = &entry{name: p, dir: true, mode: 0o755}
		}
	}

	for _, argv := range [][]string{s.Entrypoint, s.Cmd} {
		if len(argv) == 0 {
			continue
		}
		// Only the first non-empty of Entrypoint/Cmd names the program.
		// With no base image, an absolute program path that is not packed
		// can only fail at container start, far from the typo.
		if prog := argv[0]; path.IsAbs(prog) {
			if e, ok := byName[strings.TrimPrefix(path.Clean(prog), "/")]; !ok || e.dir {
				return nil, nil, fmt.Errorf("pack %s: program %s is not one of the packed files: %w", s.Ref, prog, ErrBadPath)
			}
		}
		break
	}

	entries := make([]*entry, 0, len(byName))
	for _, e := range byName {
		entries = append(entries, e)
	}
	// A parent's name is a prefix of its children's, so plain string order
	// puts every directory before its contents.
	sort.Slice(entries, func(i, j int) bool { return entries[i].name < entries[j].name })
	return entries, env, nil
}

func buildEnv(in []string) ([]string, error) {
	env := make([]string, 0, len(in)+1)
	hasPath := false
	for _, kv := range in {
		k, _, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("env %q: want KEY=VALUE", kv)
		}
		if k == "PATH" {
			hasPath = true
		}
		env = append(env, kv)
	}
	if !hasPath {
		env = append([]string{DefaultPath}, env...)
	}
	return env, nil
}

// checkImagePath insists on absolute, clean paths so that two spellings of
// one location cannot slip past the duplicate check.
func checkImagePath(p string) error {
	if !path.IsAbs(p) || path.Clean(p) != p {
		return fmt.Errorf("%q must be an absolute, clean path: %w", p, ErrBadPath)
	}
	if p == "/" {
		return fmt.Errorf("%q is the image root: %w", p, ErrBadPath)
	}
	return nil
}

func parseDir(d string) (string, int64, error) {
	p, m, hasMode := strings.Cut(d, ":")
	if err := checkImagePath(p); err != nil {
		return "", 0, err
	}
	if !hasMode {
		return p, 0o755, nil
	}
	mode, err := strconv.ParseUint(m, 8, 32)
	if err != nil || mode > 0o7777 {
		return "", 0, fmt.Errorf("mode %q must be octal between 0 and 7777: %w", m, ErrBadMode)
	}
	return p, int64(mode), nil
}

// sourceMode opens the source (proving it is readable, not just present) and
// returns the unix mode bits to store.
func sourceMode(f File) (int64, error) {
	fh, err := os.Open(f.Src)
	if err != nil {
		return 0, err
	}
	defer fh.Close()
	fi, err := fh.Stat()
	if err != nil {
		return 0, err
	}
	if !fi.Mode().IsRegular() {
		return 0, fmt.Errorf("%s is %v: %w", f.Src, fi.Mode().Type(), ErrNotRegular)
	}
	m := fi.Mode()
	if f.Mode != 0 {
		// Catches raw octal such as 04755, whose setuid bit os.FileMode
		// does not represent and would otherwise silently drop.
		if f.Mode&^(fs.ModePerm|fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky) != 0 {
			return 0, fmt.Errorf("mode %#o has bits beyond permissions/setuid/setgid/sticky (use os.ModeSetuid, os.ModeSetgid, os.ModeSticky for those): %w",
				uint32(f.Mode), ErrBadMode)
		}
		m = f.Mode
	}
	return unixMode(m), nil
}

func unixMode(m os.FileMode) int64 {
	u := int64(m.Perm())
	if m&fs.ModeSetuid != 0 {
		u |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		u |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		u |= 0o1000
	}
	return u
}

func writeLayer(w io.Writer, entries []*entry) error {
	tw := tar.NewWriter(w)
	for _, e := range entries {
		if e.dir {
			if err := tw.WriteHeader(dirHeader(e.name+"/", e.mode)); err != nil {
				return err
			}
			continue
		}
		if err := writeFile(tw, e); err != nil {
			return fmt.Errorf("%s -> /%s: %w", e.src, e.name, err)
		}
	}
	return tw.Close()
}

func writeFile(tw *tar.Writer, e *entry) error {
	f, err := os.Open(e.src)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is %v: %w", e.src, fi.Mode().Type(), ErrNotRegular)
	}
	if err := tw.WriteHeader(regHeader(e.name, e.mode, fi.Size())); err != nil {
		return err
	}
	n, err := io.CopyN(tw, f, fi.Size())
	if err != nil {
		return fmt.Errorf("read %d of %d bytes (file changed while packing?): %w", n, fi.Size(), err)
	}
	return nil
}

func dirHeader(name string, mode int64) *tar.Header {
	return &tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: mode, ModTime: epoch}
}

func regHeader(name string, mode, size int64) *tar.Header {
	return &tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: size, ModTime: epoch}
}

// Reference grammar of github.com/distribution/reference, restated here to
// stay on the standard library. The domain part may hold upper case; path
// components may not.
var (
	domainComponent = `(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])`
	domainPart      = `(?:` + domainComponent + `(?:\.` + domainComponent + `)*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?`
	pathComponent   = `[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*`
	nameRE          = regexp.MustCompile(`^(?:` + domainPart + `/)?` + pathComponent + `(?:/` + pathComponent + `)*$`)
	tagRE           = regexp.MustCompile(`^[\w][\w.-]{0,127}$`)
)

const maxNameLen = 255

func checkRef(ref string) error {
	if ref == "" {
		return fmt.Errorf("empty reference, want name:tag: %w", ErrBadReference)
	}
	if strings.Contains(ref, "@") {
		return fmt.Errorf("digest references cannot be imported as tags, want name:tag: %w", ErrBadReference)
	}
	name, tag := ref, ""
	hasTag := false
	if i := strings.LastIndexByte(ref, ':'); i > strings.LastIndexByte(ref, '/') {
		name, tag, hasTag = ref[:i], ref[i+1:], true
	}
	if !hasTag || tag == "" {
		return fmt.Errorf("no tag, want name:tag (e.g. kwarp.dev/kwarp-agent:v0.1.0): %w", ErrBadReference)
	}
	if !tagRE.MatchString(tag) {
		return fmt.Errorf("tag %q must be 1-128 of [A-Za-z0-9_.-] and not start with . or -: %w", tag, ErrBadReference)
	}
	if len(name) > maxNameLen {
		return fmt.Errorf("name is %d characters, more than %d: %w", len(name), maxNameLen, ErrBadReference)
	}
	if !nameRE.MatchString(name) {
		if nameRE.MatchString(strings.ToLower(name)) {
			return fmt.Errorf("name %q: repository path components must be lowercase: %w", name, ErrBadReference)
		}
		return fmt.Errorf("name %q is not [domain[:port]/]component[/component...] with components of [a-z0-9] joined by . _ __ or -: %w", name, ErrBadReference)
	}
	if tag == "latest" {
		return fmt.Errorf("kubelet always pulls :latest and kwarp images come from no registry, so use a version tag: %w", ErrLatestTag)
	}
	return nil
}
