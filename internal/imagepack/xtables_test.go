package imagepack

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestXtables: the binaries and the extensions a steal needs (comment, tcp, REDIRECT) are in
// the list, each at its own path.
func TestXtables(t *testing.T) {
	if _, err := os.Stat(XtablesBinaries[0]); err != nil {
		t.Skip("Debian's iptables is not installed here")
	}
	files, err := Xtables()
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, f := range files {
		if f.Src != f.Dst {
			t.Errorf("%s packed at %s, want its own path", f.Src, f.Dst)
		}
		have[filepath.Base(f.Dst)] = true
	}
	for _, want := range append([]string{"libxt_comment.so", "libxt_tcp.so"}, filepath.Base(XtablesBinaries[0]), filepath.Base(XtablesBinaries[1])) {
		if !have[want] {
			t.Errorf("%s missing from %d files", want, len(files))
		}
	}
	redirect := false
	for name := range have {
		redirect = redirect || strings.Contains(name, "REDIRECT")
	}
	if !redirect {
		t.Error("no REDIRECT extension")
	}
}
