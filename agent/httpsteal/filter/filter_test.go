package filter

import (
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/kwarp-dev/kwarp/plugins/steal"
)

func hdr(kv ...string) http.Header {
	h := http.Header{}
	for i := 0; i+1 < len(kv); i += 2 {
		h.Add(kv[i], kv[i+1])
	}
	return h
}

func header(name string, m steal.StringMatch) steal.HeaderMatch {
	return steal.HeaderMatch{Name: name, StringMatch: m}
}

func cfg(m *steal.Match) steal.Config {
	return steal.Config{Kind: "http", Name: "t", Port: 8080, Match: m}
}

// design is the example of DESIGN.md.
var design = &steal.Match{
	Method: []string{"GET", "POST"},
	AnyOf: []steal.Match{{
		Header: []steal.HeaderMatch{header("x-kwarp-user", steal.StringMatch{Regex: "^alice$"})},
		Path:   []steal.StringMatch{{Prefix: "/api/v2/"}},
	}},
}

func TestMatch(t *testing.T) {
	tests := []struct {
		name string
		m    *steal.Match
		req  Request
		want bool
	}{
		{"no match block: everything", nil, Request{Method: "DELETE", Path: "/x"}, true},
		{"design: header", design, Request{Method: "GET", Path: "/", Header: hdr("X-Kwarp-User", "alice")}, true},
		{"design: path", design, Request{Method: "POST", Path: "/api/v2/orders"}, true},
		{"design: neither", design, Request{Method: "GET", Path: "/api/v1/", Header: hdr("X-Kwarp-User", "bob")}, false},
		{"design: method", design, Request{Method: "PUT", Path: "/api/v2/orders"}, false},
		{"design: regex is anchored by the user", design, Request{Method: "GET", Path: "/", Header: hdr("X-Kwarp-User", "alice2")}, false},
		{"header name case-insensitive", &steal.Match{Header: []steal.HeaderMatch{header("X-KWARP-USER", steal.StringMatch{Exact: "a"})}},
			Request{Header: hdr("x-kwarp-user", "a")}, true},
		{"header: any of the values", &steal.Match{Header: []steal.HeaderMatch{header("x-u", steal.StringMatch{Exact: "b"})}},
			Request{Header: hdr("x-u", "a", "x-u", "b")}, true},
		{"header value is not split on commas", &steal.Match{Header: []steal.HeaderMatch{header("x-u", steal.StringMatch{Exact: "b"})}},
			Request{Header: hdr("x-u", "a, b")}, false},
		{"header presence", &steal.Match{Header: []steal.HeaderMatch{header("x-debug", steal.StringMatch{})}},
			Request{Header: hdr("X-Debug", "")}, true},
		{"header absence", &steal.Match{Header: []steal.HeaderMatch{header("x-debug", steal.StringMatch{})}},
			Request{Header: hdr("X-Other", "1")}, false},
		{"no header at all", &steal.Match{Header: []steal.HeaderMatch{header("x-debug", steal.StringMatch{})}},
			Request{}, false},
		{"header exact is case-sensitive", &steal.Match{Header: []steal.HeaderMatch{header("x-u", steal.StringMatch{Exact: "Alice"})}},
			Request{Header: hdr("x-u", "alice")}, false},
		{"path exact", &steal.Match{Path: []steal.StringMatch{{Exact: "/a"}}}, Request{Path: "/a"}, true},
		{"path exact not prefix", &steal.Match{Path: []steal.StringMatch{{Exact: "/a"}}}, Request{Path: "/ab"}, false},
		{"path regex unanchored", &steal.Match{Path: []steal.StringMatch{{Regex: "v[0-9]+"}}}, Request{Path: "/api/v12/x"}, true},
		{"method list", &steal.Match{Method: []string{"PATCH"}}, Request{Method: "PATCH"}, true},
		{"method is case-sensitive", &steal.Match{Method: []string{"PATCH"}}, Request{Method: "patch"}, false},
		{"all_of", &steal.Match{AllOf: []steal.Match{{Path: []steal.StringMatch{{Prefix: "/a"}}, Method: []string{"GET"}}}},
			Request{Method: "POST", Path: "/a"}, false},
		{"any_of inside all_of", &steal.Match{AllOf: []steal.Match{{AnyOf: []steal.Match{{
			Path: []steal.StringMatch{{Exact: "/a"}, {Exact: "/b"}}}}}}}, Request{Path: "/b"}, true},
		{"all_of inside any_of", &steal.Match{AnyOf: []steal.Match{{
			Path:  []steal.StringMatch{{Exact: "/a"}},
			AllOf: []steal.Match{{Method: []string{"GET"}, Path: []steal.StringMatch{{Prefix: "/b"}}}}}}},
			Request{Method: "GET", Path: "/b/1"}, true},
		{"all_of inside any_of fails", &steal.Match{AnyOf: []steal.Match{{
			Path:  []steal.StringMatch{{Exact: "/a"}},
			AllOf: []steal.Match{{Method: []string{"GET"}, Path: []steal.StringMatch{{Prefix: "/b"}}}}}}},
			Request{Method: "POST", Path: "/b/1"}, false},
		{"two any_of both needed", &steal.Match{AnyOf: []steal.Match{
			{Method: []string{"GET"}, Path: []steal.StringMatch{{Exact: "/x"}}},
			{Header: []steal.HeaderMatch{header("a", steal.StringMatch{Exact: "1"})}},
		}}, Request{Method: "GET", Path: "/y"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := MustCompile(cfg(tt.m))
			if got := f.Match(&tt.req); got != tt.want {
				t.Errorf("Match(%+v) = %v, want %v (filter %s)", tt.req, got, tt.want, f)
			}
		})
	}
}

func TestCompileErrors(t *testing.T) {
	for _, m := range []*steal.Match{
		{Path: []steal.StringMatch{{Regex: "("}}},
		{Header: []steal.HeaderMatch{header("x", steal.StringMatch{Exact: "a", Prefix: "b"})}},
		{AnyOf: []steal.Match{{Header: []steal.HeaderMatch{header("", steal.StringMatch{})}}}},
	} {
		if _, err := Compile(cfg(m)); err == nil {
			t.Errorf("Compile(%+v): no error", m)
		}
	}
}

func TestPathOf(t *testing.T) {
	for target, want := range map[string]string{
		"/a/b?x=1":               "/a/b",
		"/a/../b":                "/a/../b",
		"/%61":                   "/%61",
		"http://h:80/p/q?z":      "/p/q",
		"http://h":               "/",
		"*":                      "*",
		"example.com:443":        "",
		"/only?":                 "/only",
		"https://user@h/x#frag?": "/x",
	} {
		if got := PathOf(target); got != want {
			t.Errorf("PathOf(%q) = %q, want %q", target, got, want)
		}
	}
}

func TestOverlap(t *testing.T) {
	user := func(m steal.StringMatch) *steal.Match {
		return &steal.Match{Header: []steal.HeaderMatch{header("x-kwarp-user", m)}}
	}
	path := func(m steal.StringMatch) *steal.Match { return &steal.Match{Path: []steal.StringMatch{m}} }
	tests := []struct {
		name    string
		a, b    *steal.Match
		portB   int
		want    bool
		example string // when set, a substring of the example
	}{
		{"everything vs everything", nil, nil, 0, true, "GET /"},
		{"other port", nil, nil, 9090, false, ""},
		{"everything vs anything", nil, user(steal.StringMatch{Exact: "a"}), 0, true, "X-Kwarp-User: a"},
		{"exact header values differ", user(steal.StringMatch{Exact: "alice"}), user(steal.StringMatch{Exact: "bob"}), 0, false, ""},
		{"exact header values equal", user(steal.StringMatch{Exact: "alice"}), user(steal.StringMatch{Exact: "alice"}), 0, true, "alice"},
		{"anchored regexes differ", user(steal.StringMatch{Regex: "^alice$"}), user(steal.StringMatch{Regex: "^bob$"}), 0, false, ""},
		{"unanchored regexes meet", user(steal.StringMatch{Regex: "alice"}), user(steal.StringMatch{Regex: "bob"}), 0, true, ""},
		{"regex alternation meets", user(steal.StringMatch{Regex: "^(alice|carol)$"}), user(steal.StringMatch{Regex: "^c[a-z]+l$"}), 0, true, "carol"},
		{"regex alternation misses", user(steal.StringMatch{Regex: "^(alice|carol)$"}), user(steal.StringMatch{Regex: "^b"}), 0, false, ""},
		{"case-insensitive regex", user(steal.StringMatch{Regex: "(?i)^ALICE$"}), user(steal.StringMatch{Exact: "alice"}), 0, true, "alice"},
		{"regex vs exact miss", user(steal.StringMatch{Regex: "^a.*z$"}), user(steal.StringMatch{Exact: "abc"}), 0, false, ""},
		{"regex vs prefix", user(steal.StringMatch{Regex: "^[0-9]+$"}), user(steal.StringMatch{Prefix: "12"}), 0, true, "12"},
		{"regex vs prefix miss", user(steal.StringMatch{Regex: "^[0-9]+$"}), user(steal.StringMatch{Prefix: "1a"}), 0, false, ""},
		{"header presence vs value", user(steal.StringMatch{}), user(steal.StringMatch{Exact: "bob"}), 0, true, "bob"},
		{"different headers meet", user(steal.StringMatch{Exact: "a"}),
			&steal.Match{Header: []steal.HeaderMatch{header("x-other", steal.StringMatch{Exact: "b"})}}, 0, true, "X-Other: b"},
		{"header name case", user(steal.StringMatch{Exact: "a"}),
			&steal.Match{Header: []steal.HeaderMatch{header("X-KWARP-USER", steal.StringMatch{Exact: "b"})}}, 0, false, ""},
		{"prefix paths disjoint", path(steal.StringMatch{Prefix: "/api/v1/"}), path(steal.StringMatch{Prefix: "/api/v2/"}), 0, false, ""},
		{"prefix paths nested", path(steal.StringMatch{Prefix: "/api/"}), path(steal.StringMatch{Prefix: "/api/v2/"}), 0, true, "GET /api/v2/"},
		{"exact vs prefix path", path(steal.StringMatch{Exact: "/api"}), path(steal.StringMatch{Prefix: "/api/"}), 0, false, ""},
		{"path regex vs prefix", path(steal.StringMatch{Regex: `^/users/[0-9]+$`}), path(steal.StringMatch{Prefix: "/users/4"}), 0, true, "/users/4"},
		{"methods disjoint", &steal.Match{Method: []string{"GET"}}, &steal.Match{Method: []string{"POST", "PUT"}}, 0, false, ""},
		{"methods meet", &steal.Match{Method: []string{"GET", "PUT"}}, &steal.Match{Method: []string{"POST", "PUT"}}, 0, true, "PUT /"},
		{"methods disjoint, paths meet", &steal.Match{Method: []string{"GET"}, Path: []steal.StringMatch{{Prefix: "/"}}},
			&steal.Match{Method: []string{"POST"}, Path: []steal.StringMatch{{Prefix: "/"}}}, 0, false, ""},
		{"design vs bob", design, &steal.Match{Method: []string{"GET"}, Header: []steal.HeaderMatch{header("x-kwarp-user", steal.StringMatch{Regex: "^bob$"})}},
			0, true, "/api/v2/"}, // the design's any_of steals /api/v2/ whoever asks
		{"design vs bob elsewhere", design, &steal.Match{
			Header: []steal.HeaderMatch{header("x-kwarp-user", steal.StringMatch{Regex: "^bob$"})},
			Path:   []steal.StringMatch{{Prefix: "/api/v1/"}}}, 0, false, ""},
		{"design vs DELETE", design, &steal.Match{Method: []string{"DELETE"}}, 0, false, ""},
		{"any_of alternatives all disjoint", &steal.Match{AnyOf: []steal.Match{{Path: []steal.StringMatch{{Exact: "/a"}, {Exact: "/b"}}}}},
			&steal.Match{AnyOf: []steal.Match{{Path: []steal.StringMatch{{Exact: "/c"}, {Prefix: "/d"}}}}}, 0, false, ""},
		{"any_of one alternative meets", &steal.Match{AnyOf: []steal.Match{{Path: []steal.StringMatch{{Exact: "/a"}, {Exact: "/d/1"}}}}},
			&steal.Match{AnyOf: []steal.Match{{Path: []steal.StringMatch{{Exact: "/c"}, {Prefix: "/d"}}}}}, 0, true, "/d/1"},
		{"self-contradictory filter", &steal.Match{Path: []steal.StringMatch{{Exact: "/a"}, {Exact: "/b"}}}, nil, 0, false, ""},
		{"word boundary is undecided: overlap", user(steal.StringMatch{Regex: `\balice\b`}), user(steal.StringMatch{Prefix: "bob"}), 0, true, ""},
		{"word boundary not needed when exact decides", user(steal.StringMatch{Regex: `^\balice\b$`}), user(steal.StringMatch{Exact: "bob"}), 0, false, ""},
		{"empty method list matches nothing", &steal.Match{Method: []string{}}, nil, 0, false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := MustCompile(cfg(tt.a))
			cb := cfg(tt.b)
			if tt.portB != 0 {
				cb.Port = tt.portB
			}
			b := MustCompile(cb)
			ex, got := Overlap(a, b)
			if got != tt.want {
				t.Fatalf("Overlap(%s, %s) = %v (%q), want %v", a, b, got, ex, tt.want)
			}
			if ex2, got2 := Overlap(b, a); got2 != got {
				t.Errorf("not symmetric: Overlap(b, a) = %v (%q)", got2, ex2)
			}
			if !strings.Contains(ex, tt.example) {
				t.Errorf("example %q does not contain %q", ex, tt.example)
			}
			if got && ex != "" {
				// the example must really match both
				req := parseExample(t, ex)
				if !a.Match(req) || !b.Match(req) {
					t.Errorf("example %q does not match both", ex)
				}
			}
		})
	}
}

// parseExample reads "METHOD PATH with Name: value, Name: value" back into a Request.
func parseExample(t *testing.T, ex string) *Request {
	t.Helper()
	head, hs, _ := strings.Cut(ex, " with ")
	method, path, _ := strings.Cut(head, " ")
	r := &Request{Method: method, Path: path, Header: http.Header{}}
	if hs != "" {
		for _, kv := range strings.Split(hs, ", ") {
			k, v, _ := strings.Cut(kv, ": ")
			r.Header.(http.Header).Add(k, v)
		}
	}
	return r
}

func TestOverlapTooComplex(t *testing.T) {
	// 11 any_of of two alternatives each: 2048 terms, past the budget → conservative
	m := &steal.Match{}
	for i := 0; i < 11; i++ {
		m.AnyOf = append(m.AnyOf, steal.Match{Path: []steal.StringMatch{{Exact: "/a"}, {Exact: "/b"}}})
	}
	a := MustCompile(cfg(m))
	b := MustCompile(cfg(&steal.Match{Path: []steal.StringMatch{{Exact: "/c"}}}))
	if !Overlaps(a, b) {
		t.Error("a filter past the budget must count as overlapping")
	}
}

func BenchmarkMatch(b *testing.B) {
	f := MustCompile(cfg(design))
	req := &Request{Method: "GET", Path: "/api/v1/x", Header: hdr("X-Kwarp-User", "alice", "Accept", "*/*")}
	for b.Loop() {
		if !f.Match(req) {
			b.Fatal("no match")
		}
	}
}

// TestIntersectAgainstBruteForce checks the automaton search on pairs of small regexes: a
// "disjoint" answer must leave no common string among all strings of up to 5 runes over the
// regexes' alphabet, and a "meet" answer's example must match both.
func TestIntersectAgainstBruteForce(t *testing.T) {
	res := []string{`^a+$`, `^ab*$`, `b`, `^(ab|ba)`, `c$`, `^[a-c]{2}$`, `^a?b?c?$`, `(?i)^A`, `^$`, `a.c`, `^[^a]*$`, `^(a|b)*c(a|b)*$`}
	var all []string
	var gen func(prefix string, n int)
	gen = func(prefix string, n int) {
		all = append(all, prefix)
		if n == 0 {
			return
		}
		for _, r := range []string{"a", "b", "c", "A", "x"} {
			gen(prefix+r, n-1)
		}
	}
	gen("", 5)
	for _, x := range res {
		for _, y := range res {
			mx := &matcher{kind: regexString, s: x, re: regexp.MustCompile(x)}
			my := &matcher{kind: regexString, s: y, re: regexp.MustCompile(y)}
			ex, sat, decided := intersect([]*matcher{mx, my})
			if !decided {
				t.Errorf("%q ∩ %q undecided", x, y)
				continue
			}
			if sat {
				if !mx.match(ex) || !my.match(ex) {
					t.Errorf("%q ∩ %q: example %q does not match both", x, y, ex)
				}
				continue
			}
			for _, s := range all {
				if mx.match(s) && my.match(s) {
					t.Errorf("%q ∩ %q said empty, but %q matches both", x, y, s)
					break
				}
			}
		}
	}
}
