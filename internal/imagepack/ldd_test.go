package imagepack

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
)

func TestParseLDD(t *testing.T) {
	tests := []struct {
		name    string
		out     string
		want    []string
		errIs   error
		errText string
	}{
		{
			name: "glibc dynamic (ls on Debian 12)",
			out: "\tlinux-vdso.so.1 (0x00007ffd5a1f2000)\n" +
				"\tlibselinux.so.1 => /lib/x86_64-linux-gnu/libselinux.so.1 (0x00007f518977f000)\n" +
				"\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f518959d000)\n" +
				"\tlibpcre2-8.so.0 => /lib/x86_64-linux-gnu/libpcre2-8.so.0 (0x00007f5189503000)\n" +
				"\t/lib64/ld-linux-x86-64.so.2 (0x00007f51897e6000)\n",
			want: []string{
				"/lib/x86_64-linux-gnu/libselinux.so.1",
				"/lib/x86_64-linux-gnu/libc.so.6",
				"/lib/x86_64-linux-gnu/libpcre2-8.so.0",
				"/lib64/ld-linux-x86-64.so.2",
			},
		},
		{
			name: "redis-server style with duplicates collapsed",
			out: "\tlinux-vdso.so.1 (0x00007ffc8b5e9000)\n" +
				"\tlibm.so.6 => /lib/x86_64-linux-gnu/libm.so.6 (0x00007f0c1c6a1000)\n" +
				"\tlibssl.so.3 => /lib/x86_64-linux-gnu/libssl.so.3 (0x00007f0c1c5f7000)\n" +
				"\tlibcrypto.so.3 => /lib/x86_64-linux-gnu/libcrypto.so.3 (0x00007f0c1c000000)\n" +
				"\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f0c1be1f000)\n" +
				"\tlibm.so.6 => /lib/x86_64-linux-gnu/libm.so.6 (0x00007f0c1c6a1000)\n" +
				"\t/lib64/ld-linux-x86-64.so.2 (0x00007f0c1c7a6000)\n",
			want: []string{
				"/lib/x86_64-linux-gnu/libm.so.6",
				"/lib/x86_64-linux-gnu/libssl.so.3",
				"/lib/x86_64-linux-gnu/libcrypto.so.3",
				"/lib/x86_64-linux-gnu/libc.so.6",
				"/lib64/ld-linux-x86-64.so.2",
			},
		},
		{
			name: "loader listed with arrow, aarch64",
			out: "\tlinux-vdso.so.1 (0x0000ffff9b7c5000)\n" +
				"\tlibc.so.6 => /lib/aarch64-linux-gnu/libc.so.6 (0x0000ffff9b5e0000)\n" +
				"\t/lib/ld-linux-aarch64.so.1 => /lib/ld-linux-aarch64.so.1 (0x0000ffff9b788000)\n",
			want: []string{"/lib/aarch64-linux-gnu/libc.so.6", "/lib/ld-linux-aarch64.so.1"},
		},
		{
			name: "musl (Alpine)",
			out: "\t/lib/ld-musl-x86_64.so.1 (0x7f3c0a8a3000)\n" +
				"\tlibc.musl-x86_64.so.1 => /lib/ld-musl-x86_64.so.1 (0x7f3c0a8a3000)\n",
			want: []string{"/lib/ld-musl-x86_64.so.1"},
		},
		{
			name: "old i386 linux-gate with empty target",
			out: "\tlinux-gate.so.1 =>  (0xb7f4f000)\n" +
				"\tlibc.so.6 => /lib/i386-linux-gnu/libc.so.6 (0xb7d8a000)\n" +
				"\t/lib/ld-linux.so.2 (0xb7f50000)\n",
			want: []string{"/lib/i386-linux-gnu/libc.so.6", "/lib/ld-linux.so.2"},
		},
		{
			name: "execute permission warning is ignored",
			out: "ldd: warning: you do not have execution permission for `./prog'\n" +
				"\tlinux-vdso.so.1 (0x00007ffd5a1f2000)\n" +
				"\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f518959d000)\n" +
				"\t/lib64/ld-linux-x86-64.so.2 (0x00007f51897e6000)\n",
			want: []string{"/lib/x86_64-linux-gnu/libc.so.6", "/lib64/ld-linux-x86-64.so.2"},
		},
		{name: "Go static binary", out: "\tnot a dynamic executable\n", want: nil},
		{name: "static-pie", out: "\tstatically linked\n", want: nil},
		{
			name: "missing library",
			out: "\tlinux-vdso.so.1 (0x00007ffe1b9e8000)\n" +
				"\tlibfoo.so => not found\n" +
				"\tlibbar.so.2 => not found\n" +
				"\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007fc66d14f000)\n" +
				"\t/lib64/ld-linux-x86-64.so.2 (0x00007fc66d349000)\n",
			errIs:   ErrLibraryNotFound,
			errText: "libfoo.so, libbar.so.2",
		},
		{
			name:    "no such file",
			out:     "ldd: /nonexist: No such file or directory\n",
			errText: "/nonexist: No such file or directory",
		},
		{
			name: "glibc version mismatch",
			out: "./prog: /lib/x86_64-linux-gnu/libc.so.6: version `GLIBC_2.38' not found (required by ./prog)\n" +
				"\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007fc66d14f000)\n",
			errText: "GLIBC_2.38",
		},
		{
			name:    "relative resolved path",
			out:     "\tlibfoo.so => ./libfoo.so (0x00007fc66d14f000)\n",
			errText: "not absolute",
		},
		{name: "garbage", out: "something else entirely\n", errText: "unrecognised ldd line"},
		{name: "empty", out: "\n", errText: "printed nothing"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseLDD(tt.out)
			if tt.errText != "" || tt.errIs != nil {
				if err == nil {
					t.Fatalf("parseLDD = %q, want error containing %q", got, tt.errText)
				}
				if tt.errIs != nil && !errors.Is(err, tt.errIs) {
					t.Errorf("error %q is not %v", err, tt.errIs)
				}
				if !strings.Contains(err.Error(), tt.errText) {
					t.Errorf("error %q does not contain %q", err, tt.errText)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseLDD: %v", err)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("parseLDD =\n %q\nwant\n %q", got, tt.want)
			}
		})
	}
}

// dynamicBinary returns a dynamically linked program on this machine and its
// ELF interpreter, or skips.
func dynamicBinary(t *testing.T) (string, string) {
	t.Helper()
	if _, err := exec.LookPath("ldd"); err != nil {
		t.Skip("ldd not installed")
	}
	for _, p := range []string{"/bin/ls", "/usr/bin/ls", "/bin/cat"} {
		f, err := elf.Open(p)
		if err != nil {
			continue
		}
		for _, prog := range f.Progs {
			if prog.Type != elf.PT_INTERP {
				continue
			}
			b, err := io.ReadAll(prog.Open())
			f.Close()
			if err != nil {
				t.Fatal(err)
			}
			return p, strings.TrimRight(string(b), "\x00")
		}
		f.Close()
	}
	t.Skip("no dynamically linked ls/cat on this machine")
	return "", ""
}

func TestSharedLibrariesDynamic(t *testing.T) {
	bin, interp := dynamicBinary(t)
	libs, err := SharedLibraries(bin)
	if err != nil {
		t.Fatalf("SharedLibraries(%s): %v", bin, err)
	}
	if !slices.Contains(libs, interp) {
		t.Errorf("libraries %q lack the ELF interpreter %s", libs, interp)
	}
	if !slices.ContainsFunc(libs, func(p string) bool { return strings.HasPrefix(filepath.Base(p), "libc.so") }) {
		t.Errorf("libraries %q lack libc", libs)
	}
}

func TestSharedLibrariesStatic(t *testing.T) {
	if _, err := exec.LookPath("ldd"); err != nil {
		t.Skip("ldd not installed")
	}
	bin := buildStatic(t)
	libs, err := SharedLibraries(bin)
	if err != nil || libs != nil {
		t.Fatalf("SharedLibraries(static) = %q, %v; want nil, nil", libs, err)
	}
	files := []File{{Src: bin, Dst: "/static-test"}}
	got, err := WithLibraries(files)
	if err != nil || !slices.Equal(got, files) {
		t.Fatalf("WithLibraries(static) = %+v, %v; want the input unchanged", got, err)
	}
}

func TestSharedLibrariesMissingBinary(t *testing.T) {
	if _, err := exec.LookPath("ldd"); err != nil {
		t.Skip("ldd not installed")
	}
	missing := filepath.Join(t.TempDir(), "nope")
	_, err := SharedLibraries(missing)
	if err == nil || !strings.Contains(err.Error(), missing) {
		t.Fatalf("SharedLibraries(missing) = %v, want an error naming %s", err, missing)
	}
}

func TestWithLibrariesDynamic(t *testing.T) {
	bin, interp := dynamicBinary(t)
	extra := writeSrc(t, t.TempDir(), "note", "hello", 0o644)
	files := []File{{Src: bin, Dst: "/ls"}, {Src: extra, Dst: "/note"}}
	got, err := WithLibraries(files)
	if err != nil {
		t.Fatalf("WithLibraries: %v", err)
	}
	if !slices.Equal(got[:2], files) {
		t.Errorf("inputs not kept first: %+v", got[:2])
	}
	var dsts []string
	for _, f := range got[2:] {
		dsts = append(dsts, f.Dst)
		if fi, err := os.Lstat(f.Src); err != nil || !fi.Mode().IsRegular() {
			t.Errorf("library %s: Src %s is not a resolved regular file (%v)", f.Dst, f.Src, err)
		}
	}
	if !slices.Contains(dsts, interp) {
		t.Errorf("library destinations %q lack the loader %s", dsts, interp)
	}
	if !slices.ContainsFunc(dsts, func(p string) bool { return strings.HasPrefix(filepath.Base(p), "libc.so") }) {
		t.Errorf("library destinations %q lack libc", dsts)
	}

	// Appending twice must not duplicate: WithLibraries is safe to call on
	// a list that already has libraries.
	again, err := WithLibraries(got)
	if err != nil || len(again) != len(got) {
		t.Errorf("WithLibraries on its own output: %d files, %v; want %d", len(again), err, len(got))
	}

	// The real proof: the packed tree runs the program with nothing else.
	var buf bytes.Buffer
	if err := Write(&buf, Spec{Ref: "kwarp.dev/ls:v1", Entrypoint: []string{"/ls"}, Files: got}); err != nil {
		t.Fatalf("Write: %v", err)
	}
	if os.Geteuid() != 0 {
		t.Skip("not root: cannot chroot into the packed tree to run it")
	}
	root := t.TempDir()
	extractLayer(t, parseArchive(t, buf.Bytes()).layerRaw, root)
	cmd := exec.Command("/ls", "/")
	cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: root}
	cmd.Dir = "/"
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("running /ls in the packed tree: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "note") {
		t.Errorf("ls / in packed tree printed %q, want it to list note", out)
	}
}

func extractLayer(t *testing.T, layer []byte, root string) {
	t.Helper()
	tr := tar.NewReader(bytes.NewReader(layer))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(root, filepath.FromSlash(h.Name))
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(p, 0o755); err != nil {
				t.Fatal(err)
			}
		case tar.TypeReg:
			f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_EXCL, os.FileMode(h.Mode).Perm())
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.Copy(f, tr); err != nil {
				t.Fatal(err)
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
		default:
			t.Fatalf("unexpected layer entry %s type %c", h.Name, h.Typeflag)
		}
	}
}
