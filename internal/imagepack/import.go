package imagepack

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"
)

// CRINamespace is the containerd namespace kubelet's CRI plugin reads
// images from; images imported anywhere else are invisible to pods.
const CRINamespace = "k8s.io"

// Import loads a docker-archive (as written by Write) into containerd at
// address (its socket path) with ctr, unpacking it for the default
// snapshotter so kubelet can start it without pulling. ctrPath "" means
// "ctr" from PATH; address "" means ctr's default socket.
func Import(ctx context.Context, ctrPath, address, archive string) error {
	if ctrPath == "" {
		ctrPath = "ctr"
	}
	var args []string
	if address != "" {
		args = append(args, "-a", address)
	}
	args = append(args, "-n", CRINamespace, "images", "import", archive)
	cmd := exec.CommandContext(ctx, ctrPath, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if msg == "" {
			msg = strings.TrimSpace(stdout.String())
		}
		if msg == "" {
			msg = "no output"
		}
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%w)", err, ctx.Err())
		}
		return fmt.Errorf("import %s into containerd %q: %s %s: %w: %s",
			archive, address, ctrPath, strings.Join(args, " "), err, msg)
	}
	return nil
}
