package imagepack

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fakeCtr writes a shell script standing in for ctr, so the command line and
// error reporting are tested without containerd.
func fakeCtr(t *testing.T, body string) (ctr, argsFile string) {
	t.Helper()
	if _, err := exec.LookPath("sh"); err != nil {
		t.Skip("no sh")
	}
	dir := t.TempDir()
	argsFile = filepath.Join(dir, "args")
	script := "#!/bin/sh\nprintf '%s\\n' \"$@\" > " + argsFile + "\n" + body + "\n"
	ctr = writeSrc(t, dir, "ctr", script, 0o755)
	return ctr, argsFile
}

func TestImportCommandLine(t *testing.T) {
	tests := []struct {
		name    string
		address string
		want    string
	}{
		{"with address", "/run/kwarp/containerd.sock", "-a\n/run/kwarp/containerd.sock\n-n\nk8s.io\nimages\nimport\n/tmp/img.tar\n"},
		{"default address", "", "-n\nk8s.io\nimages\nimport\n/tmp/img.tar\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctr, argsFile := fakeCtr(t, "echo 'unpacking kwarp.dev/x:v1...done'; exit 0")
			if err := Import(context.Background(), ctr, tt.address, "/tmp/img.tar"); err != nil {
				t.Fatalf("Import: %v", err)
			}
			got, err := os.ReadFile(argsFile)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Errorf("ctr args:\n%s\nwant:\n%s", got, tt.want)
			}
		})
	}
}

func TestImportErrorIncludesStderr(t *testing.T) {
	ctr, _ := fakeCtr(t, `echo 'ctr: failed to dial "/nope.sock": context deadline exceeded' >&2; exit 1`)
	err := Import(context.Background(), ctr, "/nope.sock", "/tmp/img.tar")
	if err == nil {
		t.Fatal("Import succeeded, want error")
	}
	for _, want := range []string{"/tmp/img.tar", "/nope.sock", "exit status 1", "failed to dial"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

func TestImportMissingCtr(t *testing.T) {
	err := Import(context.Background(), filepath.Join(t.TempDir(), "no-ctr"), "", "/tmp/img.tar")
	if err == nil || !strings.Contains(err.Error(), "no-ctr") {
		t.Fatalf("Import with missing ctr = %v, want an error naming it", err)
	}
}

func TestImportContextCancel(t *testing.T) {
	ctr, _ := fakeCtr(t, "exec sleep 30")
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := Import(ctx, ctr, "", "/tmp/img.tar")
	if err == nil || !strings.Contains(err.Error(), "deadline exceeded") {
		t.Fatalf("Import after deadline = %v, want deadline error", err)
	}
	if time.Since(start) > 10*time.Second {
		t.Errorf("Import took %v after its context ended", time.Since(start))
	}
}

// TestImportContainerd imports a packed static binary into a real containerd
// and checks the tag is listed. Set KWARP_TEST_CONTAINERD_SOCK to the socket
// of a containerd you do not mind adding an image to (it is removed after).
func TestImportContainerd(t *testing.T) {
	sock := os.Getenv("KWARP_TEST_CONTAINERD_SOCK")
	if sock == "" {
		t.Skip("KWARP_TEST_CONTAINERD_SOCK not set: skipping import into a real containerd")
	}
	ctr, err := exec.LookPath("ctr")
	if err != nil {
		t.Skip("ctr not installed: skipping import into a real containerd")
	}
	bin := buildStatic(t)
	const ref = "kwarp.dev/imagepack-test:v0.0.0-test"
	archive := filepath.Join(t.TempDir(), "img.tar")
	f, err := os.Create(archive)
	if err != nil {
		t.Fatal(err)
	}
	err = Write(f, Spec{
		Ref:        ref,
		Entrypoint: []string{"/static-test"},
		Files:      []File{{Src: bin, Dst: "/static-test"}},
		Dirs:       []string{"/tmp:1777"},
	})
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := Import(ctx, ctr, sock, archive); err != nil {
		t.Fatalf("Import: %v", err)
	}
	t.Cleanup(func() {
		if out, err := exec.Command(ctr, "-a", sock, "-n", CRINamespace, "images", "rm", ref).CombinedOutput(); err != nil {
			t.Logf("removing %s: %v\n%s", ref, err, out)
		}
	})
	out, err := exec.CommandContext(ctx, ctr, "-a", sock, "-n", CRINamespace, "images", "ls", "-q").CombinedOutput()
	if err != nil {
		t.Fatalf("ctr images ls: %v\n%s", err, out)
	}
	if !strings.Contains("\n"+string(out), "\n"+ref+"\n") {
		t.Errorf("ctr images ls does not list %s:\n%s", ref, out)
	}
}
