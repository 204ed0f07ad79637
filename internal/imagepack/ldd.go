package imagepack

import (
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
)

// ErrLibraryNotFound means ldd could not resolve a library on the build
// machine, so the image would not run either.
var ErrLibraryNotFound = errors.New("shared library not found")

// SharedLibraries returns the absolute paths of the shared libraries and the
// dynamic loader that binary needs, as resolved on this machine by ldd. A
// static binary (or a non-ELF file such as a script) yields nil, nil.
//
// ldd may run the binary's loader, so only use it on binaries you trust —
// kwarp only feeds it its own builds and distro packages.
func SharedLibraries(binary string) ([]string, error) {
	out, runErr := exec.Command("ldd", binary).CombinedOutput()
	libs, err := parseLDD(string(out))
	if err != nil {
		if runErr != nil {
			return nil, fmt.Errorf("ldd %s: %w: %w", binary, runErr, err)
		}
		return nil, fmt.Errorf("ldd %s: %w", binary, err)
	}
	// glibc's ldd exits 1 for "not a dynamic executable"; that is an
	// answer, not a failure. Any other non-zero exit with a library list
	// is not something we understand well enough to trust.
	if runErr != nil && len(libs) > 0 {
		return nil, fmt.Errorf("ldd %s: %w: %s", binary, runErr, strings.TrimSpace(string(out)))
	}
	return libs, nil
}

// parseLDD turns ldd output into absolute library paths, in first-seen
// order, without duplicates. Anything it does not recognise is an error
// rather than skipped, because a silently missing library only shows up as
// a crash inside the container.
func parseLDD(out string) ([]string, error) {
	var (
		libs    []string
		seen    = map[string]bool{}
		missing []string
		static  bool
		saw     bool
	)
	add := func(p string) error {
		if !filepath.IsAbs(p) {
			return fmt.Errorf("library path %q is not absolute", p)
		}
		if !seen[p] {
			seen[p] = true
			libs = append(libs, p)
		}
		return nil
	}
	for _, raw := range strings.Split(out, "\n") {
		line := strings.TrimSpace(raw)
		if line == "" {
			continue
		}
		saw = true
		switch {
		case line == "statically linked" || line == "not a dynamic executable":
			static = true
			continue
		case strings.HasPrefix(line, "ldd: warning:"):
			// e.g. missing execute permission; ldd still lists libraries.
			continue
		case strings.HasPrefix(line, "ldd: "):
			// ldd's own complaint, e.g. "ldd: /x: No such file or directory".
			return nil, errors.New(strings.TrimPrefix(line, "ldd: "))
		}

		if name, target, ok := strings.Cut(line, "=>"); ok {
			name, target = strings.TrimSpace(name), strings.TrimSpace(target)
			switch {
			case target == "not found":
				missing = append(missing, name)
			case isAddress(target):
				// "linux-gate.so.1 =>  (0x...)": virtual, no file.
			default:
				p, ok := pathWithAddress(target)
				if !ok {
					return nil, fmt.Errorf("unrecognised ldd line %q", line)
				}
				if err := add(p); err != nil {
					return nil, fmt.Errorf("ldd line %q: %w", line, err)
				}
			}
			continue
		}

		p, ok := pathWithAddress(line)
		if !ok {
			return nil, fmt.Errorf("unrecognised ldd line %q", line)
		}
		if !filepath.IsAbs(p) {
			// linux-vdso.so.1 and friends are mapped by the kernel.
			continue
		}
		if err := add(p); err != nil {
			return nil, err
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("%s: %w", strings.Join(missing, ", "), ErrLibraryNotFound)
	}
	if !saw {
		return nil, errors.New("ldd printed nothing")
	}
	if static {
		if len(libs) > 0 {
			return nil, errors.New("ldd output says both static and dynamic")
		}
		return nil, nil
	}
	return libs, nil
}

// pathWithAddress splits "PATH (0xADDR)" into PATH.
func pathWithAddress(s string) (string, bool) {
	i := strings.LastIndex(s, " (")
	if i <= 0 || !isAddress(strings.TrimSpace(s[i:])) {
		return "", false
	}
	p := strings.TrimSpace(s[:i])
	return p, p != "" && !strings.ContainsAny(p, " \t")
}

func isAddress(s string) bool {
	if !strings.HasPrefix(s, "(0x") || !strings.HasSuffix(s, ")") {
		return false
	}
	digits := s[3 : len(s)-1]
	if digits == "" {
		return false
	}
	for _, c := range digits {
		if !strings.ContainsRune("0123456789abcdefABCDEF", c) {
			return false
		}
	}
	return true
}

// WithLibraries returns files plus every shared library (and the dynamic
// loader) their sources need, each stored at the path ldd resolved so the
// loader in the container finds it exactly where it looks on the build
// machine. Symlinks are resolved for Src so the real content is stored; the
// link chain itself is not reproduced because the loader only opens the
// resolved name. A Dst already present in files wins over a library.
func WithLibraries(files []File) ([]File, error) {
	out := append([]File(nil), files...)
	have := map[string]bool{}
	for _, f := range files {
		have[filepath.Clean(f.Dst)] = true
	}
	for _, f := range files {
		libs, err := SharedLibraries(f.Src)
		if err != nil {
			return nil, fmt.Errorf("libraries of %s: %w", f.Src, err)
		}
		for _, lib := range libs {
			dst := filepath.Clean(lib)
			if have[dst] {
				continue
			}
			real, err := filepath.EvalSymlinks(lib)
			if err != nil {
				return nil, fmt.Errorf("libraries of %s: %w", f.Src, err)
			}
			have[dst] = true
			out = append(out, File{Src: real, Dst: dst})
		}
	}
	return out, nil
}
