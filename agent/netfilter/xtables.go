package netfilter

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// family is an address family's pair of commands in the multi-call binaries.
type family struct {
	name               string
	cmd, save, restore string
}

var (
	ipv4        = family{"ipv4", "iptables", "iptables-save", "iptables-restore"}
	ipv6        = family{"ipv6", "ip6tables", "ip6tables-save", "ip6tables-restore"}
	allFamilies = []family{ipv4, ipv6}
)

// xtables runs one backend's multi-call binary (xtables-legacy-multi or xtables-nft-multi) in
// a namespace. The binary picks the command from its first argument ("iptables",
// "ip6tables-save"…) when its own name is not one, so no symlinks are needed in the image.
type xtables struct {
	backend Backend
	multi   string
	ns      Runner
}

func newXtables(b Backend, binDir string, ns Runner) *xtables {
	return &xtables{backend: b, multi: filepath.Join(binDir, "xtables-"+string(b)+"-multi"), ns: ns}
}

// present reports whether the backend's binary exists.
func (x *xtables) present() bool {
	_, err := os.Stat(x.multi)
	return err == nil
}

// cmdError is a failed iptables command, with what it printed.
type cmdError struct {
	argv string
	out  string
	err  error
}

func (e *cmdError) Error() string {
	out := strings.TrimSpace(e.out)
	if out == "" {
		return fmt.Sprintf("%s: %v", e.argv, e.err)
	}
	return fmt.Sprintf("%s: %v: %s", e.argv, e.err, out)
}

func (e *cmdError) Unwrap() error { return e.err }

// outputSays reports whether err is a cmdError whose output contains one of msgs.
func outputSays(err error, msgs ...string) bool {
	var ce *cmdError
	if !errors.As(err, &ce) {
		return false
	}
	for _, m := range msgs {
		if strings.Contains(ce.out, m) {
			return true
		}
	}
	return false
}

// isExists: -N of a chain that exists.
func isExists(err error) bool { return outputSays(err, "Chain already exists") }

// isAbsent: -D, -C, -F or -X of a rule or chain that does not exist (legacy and nft word it
// differently).
func isAbsent(err error) bool {
	return outputSays(err, "Bad rule (does a matching rule exist", "No chain/target/match by that name",
		"does not exist", "Couldn't load target")
}

// isBusy: a concurrent change of the table (legacy answers EAGAIN when another writer
// replaced the table between its read and its write), or the xtables lock timed out.
func isBusy(err error) bool {
	return outputSays(err, "Resource temporarily unavailable", "Another app is currently holding the xtables lock")
}

// exec runs the multi-call binary as sub in the namespace and returns its combined output.
//
// The child is forked by the namespace's thread (Runner), so it starts in the target's network
// namespace; everything else (mount namespace, so the binary and its libraries; credentials)
// is the agent's. Pdeathsig ties it to that thread: if the agent dies mid-command the command
// dies too, before it can commit a rule after the guard has cleaned up (a legacy commit is one
// setsockopt and an nf_tables one is one batch, so a killed command changed everything or
// nothing).
func (x *xtables) exec(ctx context.Context, sub string, args ...string) (string, error) {
	return x.execIn(ctx, nil, sub, args...)
}

// execIn is exec with stdin.
func (x *xtables) execIn(ctx context.Context, stdin []byte, sub string, args ...string) (string, error) {
	var out bytes.Buffer
	argv := append([]string{sub}, args...)
	err := x.ns.Run(func() error {
		cmd := exec.CommandContext(ctx, x.multi, argv...)
		cmd.Stdin = bytes.NewReader(stdin) // not /dev/null: nothing but the binaries is needed
		cmd.Stdout, cmd.Stderr = &out, &out
		cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		return cmd.Run()
	})
	if err != nil {
		return out.String(), &cmdError{argv: string(x.backend) + " " + strings.Join(argv, " "), out: out.String(), err: err}
	}
	return out.String(), nil
}

// save lists every table of fam that exists in the namespace. It names no table: listing a
// legacy table by name instantiates it (and with nat, turns on connection tracking in the
// namespace), which looking must not do.
func (x *xtables) save(ctx context.Context, fam family) (string, error) {
	return x.exec(ctx, fam.save)
}

// do runs one iptables command on the nat table, waiting for the xtables lock and retrying a
// legacy write that raced another writer.
func (x *xtables) do(ctx context.Context, fam family, args ...string) error {
	full := append([]string{"-w", "5", "-t", "nat"}, args...)
	var err error
	for attempt := 0; attempt < 4; attempt++ {
		if _, err = x.exec(ctx, fam.cmd, full...); err == nil || !isBusy(err) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(time.Duration(attempt+1) * 50 * time.Millisecond):
		}
	}
	return err
}

// restoreNat applies lines (iptables-restore rule lines: "-D …", "-F …", "-X …") to the nat
// table of fam in one transaction, without flushing anything else: they all happen or none
// does (a legacy commit is one setsockopt, an nf_tables one a single batch), so a cleanup
// killed halfway — the guard, when the agent's container is torn down around it — leaves the
// namespace as it was or clean, never with a chain and no jump.
func (x *xtables) restoreNat(ctx context.Context, fam family, lines [][]string) error {
	var script strings.Builder
	script.WriteString("*nat\n")
	for _, l := range lines {
		for i, a := range l {
			if i > 0 {
				script.WriteByte(' ')
			}
			script.WriteString(quoteRestoreArg(a))
		}
		script.WriteByte('\n')
	}
	script.WriteString("COMMIT\n")
	_, err := x.execIn(ctx, []byte(script.String()), fam.restore, "--noflush", "-w", "5")
	return err
}

// quoteRestoreArg quotes an argument for iptables-restore, which splits lines at spaces and
// understands double quotes.
func quoteRestoreArg(a string) string {
	if a != "" && !strings.ContainsAny(a, " \t\"'\\") {
		return a
	}
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(a) + `"`
}
