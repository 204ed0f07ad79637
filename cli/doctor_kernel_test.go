package cli

import (
	"strings"
	"testing"

	"github.com/kwarp-dev/kwarp/layer"
)

func TestKernelChecks(t *testing.T) {
	old := layer.Features{Kernel: "5.4.0-150-generic", UserNotif: true, Continue: true}
	var fails, oks int
	for _, c := range kernelChecks(old) {
		switch c.Status {
		case CheckFail:
			fails++
			if !strings.Contains(c.What, "ADDFD") || !strings.Contains(c.Fix, "5.9") || !strings.Contains(c.What, "kernel 5.4.0") {
				t.Errorf("failing line %+v: want ADDFD, the kernel and the version that has it", c)
			}
		case CheckOK:
			oks++
		}
	}
	if fails != 1 || oks != 2 {
		t.Errorf("5.4 with notify and continue: %d failures, %d OK; want 1 and 2", fails, oks)
	}
	current := layer.Features{Kernel: "6.18.1", UserNotif: true, Continue: true, AddFD: true, AddFDSend: true, WaitKillableRecv: true, SyncWakeUp: true}
	for _, c := range kernelChecks(current) {
		if c.Status != CheckOK {
			t.Errorf("a kernel with every feature: %+v", c)
		}
	}
}
