package logging

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/rs/zerolog"
)

func TestResolve(t *testing.T) {
	tests := []struct {
		name, flag, env string
		want            zerolog.Level
		wantErr         bool
	}{
		{"default", "", "", DefaultLevel, false},
		{"env", "", "debug", zerolog.DebugLevel, false},
		{"flag wins over env", "error", "debug", zerolog.ErrorLevel, false},
		{"warning alias", "warning", "", zerolog.WarnLevel, false},
		{"case and space", " INFO ", "", zerolog.InfoLevel, false},
		{"bad flag", "loud", "", DefaultLevel, true},
		{"bad env", "", "loud", DefaultLevel, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(LevelEnv, tt.env)
			got, err := Resolve(tt.flag)
			if (err != nil) != tt.wantErr {
				t.Fatalf("Resolve(%q) err = %v, wantErr %v", tt.flag, err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("Resolve(%q) = %v, want %v", tt.flag, got, tt.want)
			}
		})
	}
}

func TestSessionFieldOnEveryLine(t *testing.T) {
	var buf bytes.Buffer
	l := WithSession(New(&buf, zerolog.InfoLevel, "cli"), "s-123")
	l.Info().Msg("one")
	l.Debug().Msg("filtered out")
	lines := bytes.Split(bytes.TrimSpace(buf.Bytes()), []byte("\n"))
	if len(lines) != 1 {
		t.Fatalf("got %d lines, want 1 (debug is below info): %s", len(lines), buf.String())
	}
	var m map[string]any
	if err := json.Unmarshal(lines[0], &m); err != nil {
		t.Fatalf("not JSON: %v: %s", err, lines[0])
	}
	if m["session"] != "s-123" || m["component"] != "cli" || m["message"] != "one" {
		t.Errorf("fields = %v", m)
	}
}
