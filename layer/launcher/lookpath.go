package launcher

import (
	"errors"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// Exit codes, as a shell uses them.
const (
	ExitNotFound      = 127
	ExitNotExecutable = 126
	// ExitSetup is the launcher's own failure (kwarp's exit code for a broken setup).
	ExitSetup = 3
)

// lookupError says why a command cannot be run, with the shell's exit code.
type lookupError struct {
	code int
	msg  string
}

func (e *lookupError) Error() string { return e.msg }

// lookPath finds file like a shell does, in pathEnv (the command's own PATH, not kwarp's):
// a name with a slash is used as is; otherwise the first executable regular file in PATH wins,
// an empty PATH entry meaning the current directory. When only non-executable files match, the
// first of them is the answer (and exec fails with 126), as in bash.
func lookPath(file, pathEnv string) (string, error) {
	if file == "" {
		return "", &lookupError{ExitNotFound, "'': command not found"}
	}
	if strings.Contains(file, "/") {
		if err := executable(file); err != nil {
			return "", err
		}
		return file, nil
	}
	var firstErr error
	for _, dir := range filepath.SplitList(pathEnv) {
		if dir == "" {
			dir = "."
		}
		p := filepath.Join(dir, file)
		if dir == "." {
			p = "./" + file
		}
		if fi, err := os.Stat(p); err == nil && fi.IsDir() {
			continue // a shell skips directories in PATH
		}
		err := executable(p)
		if err == nil {
			return p, nil
		}
		var le *lookupError
		if errors.As(err, &le) && le.code == ExitNotExecutable && firstErr == nil {
			firstErr = &lookupError{ExitNotExecutable, file + ": " + strings.TrimPrefix(le.msg, p+": ")}
		}
	}
	if firstErr != nil {
		return "", firstErr
	}
	return "", &lookupError{ExitNotFound, file + ": command not found"}
}

// executable checks that p exists, is not a directory and may be executed by this process.
func executable(p string) error {
	fi, err := os.Stat(p)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.ENOTDIR) {
			return &lookupError{ExitNotFound, p + ": No such file or directory"}
		}
		return &lookupError{ExitNotExecutable, p + ": " + errText(err)}
	}
	if fi.IsDir() {
		return &lookupError{ExitNotExecutable, p + ": Is a directory"}
	}
	if fi.Mode()&0o111 == 0 || unix.Faccessat(unix.AT_FDCWD, p, unix.X_OK, unix.AT_EACCESS) != nil {
		return &lookupError{ExitNotExecutable, p + ": Permission denied"}
	}
	return nil
}

// errText is the strerror text of err's errno, as a shell prints it.
func errText(err error) string {
	var errno unix.Errno
	if errors.As(err, &errno) {
		s := errno.Error()
		return strings.ToUpper(s[:1]) + s[1:]
	}
	return err.Error()
}
