package supervisor

import (
	"os"
	"runtime"
	"strings"
	"testing"
	"unsafe"
)

// TestReadStrings reads a C-style NULL-terminated array of strings from this very process, as
// the supervisor reads an exec's argv and envp from a trapped one.
func TestReadStringsOwnProcess(t *testing.T) {
	want := []string{"PATH=/usr/bin", "GREETING=hello", strings.Repeat("x", 5000), ""}
	var bufs [][]byte
	ptrs := make([]uint64, len(want)+1)
	for i, s := range want {
		b := append([]byte(s), 0)
		bufs = append(bufs, b)
		ptrs[i] = uint64(uintptr(unsafe.Pointer(&b[0])))
	}
	var m memory
	got := m.readStrings(os.Getpid(), uint64(uintptr(unsafe.Pointer(&ptrs[0]))), make([]byte, maxArgStrlen))
	runtime.KeepAlive(bufs)
	runtime.KeepAlive(ptrs)
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("readStrings = %d strings %q…, want %d", len(got), got, len(want))
	}
}
