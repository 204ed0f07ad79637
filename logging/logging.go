// Package logging configures zerolog for kwarp's binaries: human-readable lines on stderr (stdout
// belongs to the user's command), a level from --log-level or KWARP_LOG, and a session id field
// on every line of a session so the CLI's, plugins' and agent's lines can be matched up.
package logging

import (
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/rs/zerolog"
)

// LevelEnv names the environment variable read when --log-level is not given.
const LevelEnv = "KWARP_LOG"

// DefaultLevel keeps kwarp quiet: the user's command owns the terminal.
const DefaultLevel = zerolog.WarnLevel

// ParseLevel accepts zerolog's level names ("debug", "info", …) and "" for the default.
func ParseLevel(s string) (zerolog.Level, error) {
	s = strings.TrimSpace(strings.ToLower(s))
	if s == "" {
		return DefaultLevel, nil
	}
	if s == "warning" {
		s = "warn"
	}
	l, err := zerolog.ParseLevel(s)
	if err != nil || s == "" {
		return DefaultLevel, fmt.Errorf("unknown log level %q (use trace, debug, info, warn, error or disabled)", s)
	}
	return l, nil
}

// Resolve picks the level: the flag when set, else KWARP_LOG, else the default.
func Resolve(flag string) (zerolog.Level, error) {
	if flag != "" {
		return ParseLevel(flag)
	}
	l, err := ParseLevel(os.Getenv(LevelEnv))
	if err != nil {
		return DefaultLevel, fmt.Errorf("%s: %w", LevelEnv, err)
	}
	return l, nil
}

// timeFormat has milliseconds: a session's start is a sequence of steps of a few
// milliseconds each, which whole seconds would not tell apart.
const timeFormat = "2006-01-02T15:04:05.000Z07:00"

func init() { zerolog.TimeFieldFormat = timeFormat }

// New returns a logger writing to w. A terminal gets the console format; anything else
// (a file, a pipe to a log collector) gets JSON lines.
func New(w io.Writer, level zerolog.Level, component string) zerolog.Logger {
	out := w
	if f, ok := w.(*os.File); ok && isTerminal(f) {
		out = zerolog.ConsoleWriter{Out: w, TimeFormat: "15:04:05.000"}
	}
	return zerolog.New(out).Level(level).With().Timestamp().Str("component", component).Logger()
}

// WithSession adds the session id to every line, the key that ties one session's lines together.
func WithSession(l zerolog.Logger, sessionID string) zerolog.Logger {
	return l.With().Str("session", sessionID).Logger()
}

func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
