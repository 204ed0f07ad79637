package bench

import (
	"fmt"
	"os"
	"testing"

	"github.com/kwarp-dev/kwarp/test/testenv"
)

// TestMain reuses (or starts) the local test cluster through testenv.Main. The benchmarks need
// it, and it needs root: without root nothing runs, and the reason is printed.
func TestMain(m *testing.M) {
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "bench: skipped: the benchmarks run kwarp against the local test cluster, which needs root (run `make bench` as root)")
		os.Exit(0)
	}
	testenv.Main(m)
}
