package cli

import (
	"fmt"

	"github.com/kwarp-dev/kwarp/layer"
)

func init() { kernelCheck = func() []Check { return kernelChecks(layer.Probe()) } }

// kernelChecks turns the layer's probe into doctor lines: a missing required feature fails
// (kwarp exec exits 3 on it), a missing optional one is information with its consequence.
func kernelChecks(f layer.Features) []Check {
	var out []Check
	for _, s := range f.Report() {
		what := fmt.Sprintf("kernel %s: %s (Linux %s)", shortRelease(f.Kernel), s.Name, s.Kernel)
		switch {
		case s.Has:
			out = append(out, Check{Status: CheckOK, What: what})
		case s.Required:
			fix := "run kwarp on Linux " + s.Kernel + " or newer"
			if f.Reason != "" {
				fix = f.Reason
			}
			out = append(out, Check{Status: CheckFail, What: what + " is missing", Fix: fix})
		default:
			out = append(out, Check{Status: CheckInfo, What: what + " is missing: " + s.Without})
		}
	}
	return out
}

func shortRelease(r string) string {
	for i, c := range r {
		if c == '-' {
			return r[:i]
		}
	}
	return r
}
