package launcher

import (
	"bytes"
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

	msgEnv      = 'V' // + part of the command's environment (NUL-terminated entries)
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

// envChunk bounds one msgEnv message, well under the socket's buffer and the launcher's
// receive buffer.
const envChunk = 16 << 10

// encodeEnv is env as the msgEnv messages carry it, split anywhere.
func encodeEnv(env []string) []byte {
	var b []byte
	for _, kv := range env {
		b = append(append(b, kv...), 0)
	}
	return b
}

func decodeEnv(b []byte) []string {
	env := []string{}
	for len(b) > 0 {
		i := bytes.IndexByte(b, 0)
		if i < 0 {
			i = len(b)
		}
		env = append(env, string(b[:i]))
		b = b[min(i+1, len(b)):]
	}
	return env
}
