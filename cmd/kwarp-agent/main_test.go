package main

import (
	"bytes"
	"encoding/json"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/kwarp-dev/kwarp/agent/netfilter"
)

func TestParseFlags(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		wantErr bool
		check   func(c config) bool
	}{
		{"defaults", nil, false, func(c config) bool {
			return c.listen == ":7700" && c.opts.TTL == 30*time.Second && c.opts.IdleStart == 2*time.Minute &&
				c.opts.ContainerID == "" && !c.opts.Ephemeral
		}},
		{"all", []string{"--listen", ":9000", "--container-id", "containerd://abc", "--namespace", "shop", "--pod", "p",
			"--container", "app", "--ttl", "0", "--idle-start", "10s", "--ephemeral", "--log-level", "debug"}, false, func(c config) bool {
			o := c.opts
			return c.listen == ":9000" && o.ContainerID == "containerd://abc" && o.Namespace == "shop" && o.Pod == "p" &&
				o.Container == "app" && o.TTL == 0 && o.IdleStart == 10*time.Second && o.Ephemeral && c.logLevel == "debug"
		}},
		{"negative ttl", []string{"--ttl", "-1s"}, true, nil},
		{"bad duration", []string{"--ttl", "soon"}, true, nil},
		{"stray argument", []string{"extra"}, true, nil},
		{"unknown flag", []string{"--steal"}, true, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := parseFlags(tt.args, io.Discard)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if tt.check != nil && !tt.check(c) {
				t.Errorf("parsed %+v", c)
			}
		})
	}
}

func TestRunExitsAfterIdleStartWithReadyLine(t *testing.T) {
	var stderr bytes.Buffer
	code := run([]string{"--listen", "127.0.0.1:0", "--idle-start", "200ms", "--log-level", "info"}, &stderr)
	if code != 0 {
		t.Fatalf("exit %d, want 0 after idle-start; stderr:\n%s", code, stderr.String())
	}
	var ready map[string]any
	for _, line := range strings.Split(stderr.String(), "\n") {
		if strings.Contains(line, `"agent ready"`) {
			if err := json.Unmarshal([]byte(line), &ready); err != nil {
				t.Fatalf("ready line is not JSON: %v: %s", err, line)
			}
		}
	}
	if ready == nil {
		t.Fatalf("no ready line:\n%s", stderr.String())
	}
	if ready["msg"] != "agent ready" || ready["pid"].(float64) <= 0 || ready["port"].(float64) <= 0 || ready["target_pid"].(float64) != 0 {
		t.Errorf("ready line %v", ready)
	}
	if !strings.Contains(stderr.String(), "lease expired") {
		t.Errorf("no lease line in:\n%s", stderr.String())
	}
}

func TestRunFailsWithoutTarget(t *testing.T) {
	var stderr bytes.Buffer
	code := run([]string{"--listen", "127.0.0.1:0", "--container-id", "containerd://00000000000000000000000000000000000000000000000000000000deadbeef"}, &stderr)
	if code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
	if !strings.Contains(stderr.String(), "hostPID") || strings.Contains(stderr.String(), "agent ready") {
		t.Errorf("stderr does not explain the missing target:\n%s", stderr.String())
	}
}

func TestRunUsage(t *testing.T) {
	if code := run([]string{"--nope"}, io.Discard); code != 2 {
		t.Errorf("unknown flag: exit %d, want 2", code)
	}
	if code := run([]string{"--log-level", "loud"}, io.Discard); code != 2 {
		t.Errorf("bad log level: exit %d, want 2", code)
	}
}

// The hidden guard mode is reached before the agent's flags are parsed.
func TestRunGuardMode(t *testing.T) {
	var stderr bytes.Buffer
	if code := run([]string{netfilter.GuardArg, "-agent-id=not:an:id", "-agent-pid=1"}, &stderr); code != 2 {
		t.Errorf("guard with a bad id: exit %d, want 2; stderr:\n%s", code, stderr.String())
	}
	if !strings.Contains(stderr.String(), netfilter.GuardArg) {
		t.Errorf("the guard's complaint does not name it:\n%s", stderr.String())
	}
}
