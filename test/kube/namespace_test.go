package kube

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation"
)

func TestNamespaceName(t *testing.T) {
	long := strings.Repeat("abcdefghij", 10)
	tests := []struct {
		prefix, want string
	}{
		{"web", "web-x1y2z3"},
		{"TestConnect/sub_case", "testconnect-sub-case-x1y2z3"},
		{"Test__Many---Dashes", "test-many-dashes-x1y2z3"},
		{"--edge--", "edge-x1y2z3"},
		{"Ünïcode is dropped", "n-code-is-dropped-x1y2z3"},
		{"", "kwarp-test-x1y2z3"},
		{"///", "kwarp-test-x1y2z3"},
		{"123", "123-x1y2z3"},
		// 63 - len("-x1y2z3") = 56 characters of prefix are kept.
		{long, long[:56] + "-x1y2z3"},
		// A cut that lands just after a dash must not leave "--" or a trailing dash behind.
		{strings.Repeat("a", 55) + "_bbbb", strings.Repeat("a", 55) + "-x1y2z3"},
	}
	for _, tt := range tests {
		got := namespaceName(tt.prefix, "x1y2z3")
		if got != tt.want {
			t.Errorf("namespaceName(%q) = %q, want %q", tt.prefix, got, tt.want)
		}
		if errs := validation.IsDNS1123Label(got); len(errs) > 0 {
			t.Errorf("namespaceName(%q) = %q is not a DNS-1123 label: %v", tt.prefix, got, errs)
		}
	}
}

func TestNamespaceNameAlwaysValid(t *testing.T) {
	// Names from real test names, with random suffixes, over every length up to well past 63.
	for n := 0; n < 100; n++ {
		prefix := strings.Repeat("Test_X/", n/7+1)[:n]
		got := namespaceName(prefix, randomSuffix(suffixLen))
		if errs := validation.IsDNS1123Label(got); len(errs) > 0 {
			t.Fatalf("namespaceName(%q) = %q: %v", prefix, got, errs)
		}
	}
}

func TestRandomSuffix(t *testing.T) {
	seen := map[string]bool{}
	for i := 0; i < 1000; i++ {
		s := randomSuffix(suffixLen)
		if len(s) != suffixLen || strings.Trim(s, "abcdefghijklmnopqrstuvwxyz0123456789") != "" {
			t.Fatalf("randomSuffix = %q, want %d characters of [a-z0-9]", s, suffixLen)
		}
		seen[s] = true
	}
	// 36^6 possibilities: one repeat in 1000 draws happens (probability about 2e-4), two mean the
	// randomness is broken (about 3e-8 by chance).
	if len(seen) < 998 {
		t.Errorf("only %d distinct suffixes in 1000 draws", len(seen))
	}
}
