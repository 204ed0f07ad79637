package envserver

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	agentv1 "github.com/kwarp-dev/kwarp/agent/api/v1"
	"github.com/kwarp-dev/kwarp/agent/target"
	"github.com/rs/zerolog"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestMain doubles as the child process of TestGetReadsAChildsEnviron: started with
// KWARP_TEST_SLEEP set, the test binary only sleeps.
func TestMain(m *testing.M) {
	if os.Getenv("KWARP_TEST_SLEEP") != "" {
		time.Sleep(time.Minute)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func names(vars []*agentv1.EnvVar) string {
	var b strings.Builder
	for _, v := range vars {
		b.WriteString(v.Name + "=" + v.Value + ";")
	}
	return b.String()
}

func TestParseEnviron(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"empty", "", ""},
		{"order kept", "B=2\x00A=1\x00C=3\x00", "B=2;A=1;C=3;"},
		{"no trailing NUL", "A=1\x00B=2", "A=1;B=2;"},
		{"value with = and spaces", "URL=a=b c\x00", "URL=a=b c;"},
		{"empty value", "EMPTY=\x00", "EMPTY=;"},
		{"malformed skipped", "NOEQUALS\x00=novalue\x00A=1\x00\x00", "A=1;"},
		{"duplicate: last wins, at its place", "A=1\x00B=2\x00A=3\x00", "B=2;A=3;"},
		{"not UTF-8 skipped", "BAD=\xff\xfe\x00OK=1\x00", "OK=1;"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := names(ParseEnviron([]byte(tt.in))); got != tt.want {
				t.Errorf("ParseEnviron(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func FuzzEnviron(f *testing.F) {
	for _, s := range []string{"", "A=1\x00B=2\x00", "A=1\x00A=2", "=\x00==\x00x", "\xff=\x00A=\xff", "A\x00\x00\x00=B=C"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		vars := ParseEnviron(b)
		// The oracle: the last value each well-formed entry gives its name.
		lastValue := map[string]string{}
		for _, raw := range strings.Split(string(b), "\x00") {
			if n, val, ok := strings.Cut(raw, "="); ok && n != "" && utf8.ValidString(raw) {
				lastValue[n] = val
			}
		}
		if len(vars) != len(lastValue) {
			t.Fatalf("%d variables from %q, want %d", len(vars), b, len(lastValue))
		}
		seen := map[string]bool{}
		for _, v := range vars {
			if v.Name == "" || strings.ContainsAny(v.Name, "=\x00") || strings.ContainsRune(v.Value, 0) {
				t.Fatalf("bad variable %q=%q from %q", v.Name, v.Value, b)
			}
			if !utf8.ValidString(v.Name) || !utf8.ValidString(v.Value) {
				t.Fatalf("not UTF-8: %q=%q", v.Name, v.Value)
			}
			if seen[v.Name] {
				t.Fatalf("name %q repeats in %q", v.Name, b)
			}
			seen[v.Name] = true
			if want := lastValue[v.Name]; v.Value != want {
				t.Fatalf("%s = %q, want the last value %q", v.Name, v.Value, want)
			}
		}
	})
}

func TestGetReadsAChildsEnviron(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// os.StartProcess passes the block as is (os/exec would drop the duplicate), so the child
	// really has a duplicate and a malformed entry, as a C launcher could give it.
	env := []string{"KWARP_TEST_SLEEP=1", "DATABASE_URL=postgres://db:5432/x?a=b", "DUP=first", "MALFORMED", "EMPTY=", "DUP=last", "PATH=/usr/bin"}
	p, err := os.StartProcess(exe, []string{exe}, &os.ProcAttr{Env: env})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Kill(); p.Wait() })

	tr, err := target.NewTracker("/proc", func() (int, error) { return p.Pid, nil })
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	// The kernel sets a new program's environment pointers a moment after a vfork parent (os.
	// StartProcess) is released: until then /proc/PID/environ reads empty. A target container's
	// process is long past that; this fresh child may not be.
	srv := New(zerolog.New(zerolog.NewTestWriter(t)), tr)
	var resp *agentv1.GetEnvResponse
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if resp, err = srv.Get(context.Background(), &agentv1.GetEnvRequest{}); err != nil {
			t.Fatal(err)
		}
		if len(resp.Vars) > 0 || time.Now().After(deadline) {
			break
		}
	}
	want := "KWARP_TEST_SLEEP=1;DATABASE_URL=postgres://db:5432/x?a=b;EMPTY=;DUP=last;PATH=/usr/bin;"
	if got := names(resp.Vars); got != want {
		t.Errorf("Get = %q\nwant %q", got, want)
	}
}

func TestGetTargetless(t *testing.T) {
	_, err := New(zerolog.Nop(), nil).Get(context.Background(), &agentv1.GetEnvRequest{})
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "targetless session: no target container") {
		t.Errorf("targetless Get = %v, want FailedPrecondition", err)
	}
}
