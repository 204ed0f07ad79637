package imagepack

import (
	"fmt"
	"os"
	"path/filepath"
)

// XtablesBinaries are Debian's iptables programs the agent runs for agent/netfilter: both
// backends (the multi-call binaries behind iptables-legacy and iptables-nft).
var XtablesBinaries = []string{"/usr/sbin/xtables-legacy-multi", "/usr/sbin/xtables-nft-multi"}

// Xtables lists this machine's iptables files the agent image carries, each at its own path:
// the binaries and every extension iptables dlopens (ldd cannot see those; all of them, because
// iptables-save fails on a rule whose extension is missing, and the pod's rules are not ours to
// choose). Pack them with WithLibraries for their shared libraries. The error says to install
// Debian's iptables when they are missing.
func Xtables() ([]File, error) {
	var files []File
	for _, b := range XtablesBinaries {
		if _, err := os.Stat(b); err != nil {
			return nil, fmt.Errorf("%s is missing: install Debian's iptables (make deps): %w", b, err)
		}
		files = append(files, File{Src: b, Dst: b})
	}
	dirs, _ := filepath.Glob("/usr/lib/*-linux-gnu/xtables")
	if len(dirs) == 0 {
		return nil, fmt.Errorf("no iptables extensions under /usr/lib/*-linux-gnu/xtables: install Debian's iptables (make deps)")
	}
	for _, pattern := range []string{"libxt_*.so", "libipt_*.so", "libip6t_*.so"} {
		exts, _ := filepath.Glob(filepath.Join(dirs[0], pattern))
		for _, e := range exts {
			files = append(files, File{Src: e, Dst: e})
		}
	}
	return files, nil
}
