package cli

import (
	"os"
	"testing"

	"github.com/kwarp-dev/kwarp/core"
)

// TestMain lets the test binary stand in for kwarp when a session re-executes itself as a
// built-in plugin or the launcher, as the real binary does.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && (os.Args[1] == "plugin" || os.Args[1] == core.LaunchCommand) {
		os.Exit(Execute(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}
