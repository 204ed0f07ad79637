//go:build !amd64

package supervisor

import (
	"errors"

	"github.com/kwarp-dev/kwarp/layer/seccomp"
)

func seccompErr(id uint64, errno int32) seccomp.Resp { return seccomp.Resp{ID: id, Error: -errno} }

func setExecEnv(int, []string, *memory) error {
	return errors.New("restoring an exec's environment is implemented for amd64 only")
}
