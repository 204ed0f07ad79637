package launcher

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/kwarp-dev/kwarp/layer/seccomp"
	"golang.org/x/sys/unix"
)

// FDEnv names the variable that tells the launcher which fd is its socket.
const FDEnv = "KWARP_LAUNCHER_FD"

const (
	magic = "KWL1"
	// flagWaitKillable asks for SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV.
	flagWaitKillable = 1 << 0

	msgListener = 'F' // + SCM_RIGHTS: the listener
	msgFailed   = 'E' // + text: why the filter could not be installed
	msgGo       = 'G' // the supervisor serves: exec

	// maxSetup bounds the setup message: header and the kernel's longest program.
	maxSetup = 8 + 8*unix.BPF_MAXINSNS
)

// setup is what the parent tells the launcher to install.
type setup struct {
	program      []unix.SockFilter
	waitKillable bool
}

func encodeSetup(s setup) []byte {
	b := make([]byte, 0, 8+8*len(s.program))
	b = append(b, magic...)
	var flags uint32
	if s.waitKillable {
		flags |= flagWaitKillable
	}
	b = binary.NativeEndian.AppendUint32(b, flags)
	return append(b, seccomp.EncodeProgram(s.program)...)
}

func decodeSetup(b []byte) (setup, error) {
	if len(b) < 8 || string(b[:4]) != magic {
		return setup{}, errors.New("launcher: the parent's setup message is not a kwarp launcher setup (version mismatch?)")
	}
	flags := binary.NativeEndian.Uint32(b[4:])
	if flags&^flagWaitKillable != 0 {
		return setup{}, fmt.Errorf("launcher: unknown setup flags %#x", flags)
	}
	prog, err := seccomp.DecodeProgram(b[8:])
	if err != nil {
		return setup{}, fmt.Errorf("launcher: %w", err)
	}
	return setup{program: prog, waitKillable: flags&flagWaitKillable != 0}, nil
}
