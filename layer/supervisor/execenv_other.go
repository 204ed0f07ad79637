//go:build !amd64

package supervisor

import (
	"errors"

	"golang.org/x/sys/unix"

	"github.com/kwarp-dev/kwarp/layer/seccomp"
)

func seccompErr(id uint64, errno int32) seccomp.Resp { return seccomp.Resp{ID: id, Error: -errno} }

var errArch = errors.New("changing a trapped call's arguments is implemented for amd64 only")

func setExecEnv(int, *unix.PtraceRegs, []string, *memory) error { return errArch }
func setChdirPath(int, *unix.PtraceRegs, string, *memory) error { return errArch }
