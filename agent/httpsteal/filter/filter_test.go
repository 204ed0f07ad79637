package filter

import (
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/kwarp-dev/kwarp/agent/api/stealfilter"
)

func hdr(kv ...string) http.Header {
	h := http.Header{}
	for i := 0; i+1 < len(kv); i += 2 {
		h.Add(kv[i], kv[i+1])
	}
	return h
}

func header(name string, m stealfilter.StringMatch) stealfilter.HeaderMatch {
	return stealfilter.HeaderMatch{Name: name, StringMatch: m}
}

func cfg(m *stealfilter.Match) stealfilter.Config {
	return stealfilter.Config{Kind: "http", Name: "t", Port: 8080, Match: m}
}

// design is the example of DESIGN.md.
var design = &stealfilter.Match{
	Method: []string{"GET", "POST"},
	AnyOf: []stealfilter.Match{{
		Header: []stealfilter.HeaderMatch{header("x-kwarp-user", stealfilter.StringMatch{Regex: "^alice$"})},
		Path:   []stealfilter.StringMatch{{Prefix: "/api/v2/"}},
	}},
}

func TestMatch(t *testing.T) {
	tests := []struct {
		name string
		m    *stealfilter.Match
		req  Request
		want bool
	}{
		{"no match block: everything", nil, Request{Method: "DELETE", Path: "/x"}, true},
		{"design: header", design, Request{Method: "GET", Path: "/", Header: hdr("X-Kwarp-User", "alice")}, true},
		{"design: path", design, Request{Method: "POST", Path: "/api/v2/orders"}, true},
		{"design: neither", design, Request{Method: "GET", Path: "/api/v1/", Header: hdr("X-Kwarp-User", "bob")}, false},
		{"design: method", design, Request{Method: "PUT", Path: "/api/v2/orders"}, false},
		{"design: regex is anchored by the user", design, Request{Method: "GET", Path: "/", Header: hdr("X-Kwarp-User", "alice2")}, false},
		{"header name case-insensitive", &stealfilter.Match{Header: []stealfilter.HeaderMatch{header("X-KWARP-USER", stealfilter.StringMatch{Exact: "a"})}},
			Request{Header: hdr("x-kwarp-user", "a")}, true},
		{"header: any of the values", &stealfilter.Match{Header: []stealfilter.HeaderMatch{header("x-u", stealfilter.StringMatch{Exact: "b"})}},
			Request{Header: hdr("x-u", "a", "x-u", "b")}, true},
		{"header value is not split on commas", &stealfilter.Match{Header: []stealfilter.HeaderMatch{header("x-u", stealfilter.StringMatch{Exact: "b"})}},
			Request{Header: hdr("x-u", "a, b")}, false},
		{"header presence", &stealfilter.Match{Header: []stealfilter.HeaderMatch{header("x-debug", stealfilter.StringMatch{})}},
			Request{Header: hdr("X-Debug", "")}, true},
		{"header absence", &stealfilter.Match{Header: []stealfilter.HeaderMatch{header("x-debug", stealfilter.StringMatch{})}},
			Request{Header: hdr("X-Other", "1")}, false},
		{"no header at all", &stealfilter.Match{Header: []stealfilter.HeaderMatch{header("x-debug", stealfilter.StringMatch{})}},
			Request{}, false},
		{"header exact is case-sensitive", &stealfilter.Match{Header: []stealfilter.HeaderMatch{header("x-u", stealfilter.StringMatch{Exact: "Alice"})}},
			Request{Header: hdr("x-u", "alice")}, false},
		{"path exact", &stealfilter.Match{Path: []stealfilter.StringMatch{{Exact: "/a"}}}, Request{Path: "/a"}, true},
		{"path exact not prefix", &stealfilter.Match{Path: []stealfilter.StringMatch{{Exact: "/a"}}}, Request{Path: "/ab"}, false},
		{"path regex unanchored", &stealfilter.Match{Path: []stealfilter.StringMatch{{Regex: "v[0-9]+"}}}, Request{Path: "/api/v12/x"}, true},
		{"method list", &stealfilter.Match{Method: []string{"PATCH"}}, Request{Method: "PATCH"}, true},
		{"method is case-sensitive", &stealfilter.Match{Method: []string{"PATCH"}}, Request{Method: "patch"}, false},
		{"all_of", &stealfilter.Match{AllOf: []stealfilter.Match{{Path: []stealfilter.StringMatch{{Prefix: "/a"}}, Method: []string{"GET"}}}},
			Request{Method: "POST", Path: "/a"}, false},
		{"any_of inside all_of", &stealfilter.Match{AllOf: []stealfilter.Match{{AnyOf: []stealfilter.Match{{
			Path: []stealfilter.StringMatch{{Exact: "/a"}, {Exact: "/b"}}}}}}}, Request{Path: "/b"}, true},
		{"all_of inside any_of", &stealfilter.Match{AnyOf: []stealfilter.Match{{
			Path:  []stealfilter.StringMatch{{Exact: "/a"}},
			AllOf: []stealfilter.Match{{Method: []string{"GET"}, Path: []stealfilter.StringMatch{{Prefix: "/b"}}}}}}},
			Request{Method: "GET", Path: "/b/1"}, true},
		{"all_of inside any_of fails", &stealfilter.Match{AnyOf: []stealfilter.Match{{
			Path:  []stealfilter.StringMatch{{Exact: "/a"}},
			AllOf: []stealfilter.Match{{Method: []string{"GET"}, Path: []stealfilter.StringMatch{{Prefix: "/b"}}}}}}},
			Request{Method: "POST", Path: "/b/1"}, false},
		{"two any_of both needed", &stealfilter.Match{AnyOf: []stealfilter.Match{
			{Method: []string{"GET"}, Path: []stealfilter.StringMatch{{Exact: "/x"}}},
			{Header: []stealfilter.HeaderMatch{header("a", stealfilter.StringMatch{Exact: "1"})}},
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
	for _, m := range []*stealfilter.Match{
		{Path: []stealfilter.StringMatch{{Regex: "("}}},
		{Header: []stealfilter.HeaderMatch{header("x", stealfilter.StringMatch{Exact: "a", Prefix: "b"})}},
		{AnyOf: []stealfilter.Match{{Header: []stealfilter.HeaderMatch{header("", stealfilter.StringMatch{})}}}},
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
	user := func(m stealfilter.StringMatch) *stealfilter.Match {
		return &stealfilter.Match{Header: []stealfilter.HeaderMatch{header("x-kwarp-user", m)}}
	}
	path := func(m stealfilter.StringMatch) *stealfilter.Match {
		return &stealfilter.Match{Path: []stealfilter.StringMatch{m}}
	}
	tests := []struct {
		name    string
		a, b    *stealfilter.Match
		portB   int
		want    bool
		example string // when set, a substring of the example
	}{
		{"everything vs everything", nil, nil, 0, true, "GET /"},
		{"other port", nil, nil, 9090, false, ""},
		{"everything vs anything", nil, user(stealfilter.StringMatch{Exact: "a"}), 0, true, "X-Kwarp-User: a"},
		{"exact header values differ", user(stealfilter.StringMatch{Exact: "alice"}), user(stealfilter.StringMatch{Exact: "bob"}), 0, false, ""},
		{"exact header values equal", user(stealfilter.StringMatch{Exact: "alice"}), user(stealfilter.StringMatch{Exact: "alice"}), 0, true, "alice"},
		{"anchored regexes differ", user(stealfilter.StringMatch{Regex: "^alice$"}), user(stealfilter.StringMatch{Regex: "^bob$"}), 0, false, ""},
		{"unanchored regexes meet", user(stealfilter.StringMatch{Regex: "alice"}), user(stealfilter.StringMatch{Regex: "bob"}), 0, true, ""},
		{"regex alternation meets", user(stealfilter.StringMatch{Regex: "^(alice|carol)$"}), user(stealfilter.StringMatch{Regex: "^c[a-z]+l$"}), 0, true, "carol"},
		{"regex alternation misses", user(stealfilter.StringMatch{Regex: "^(alice|carol)$"}), user(stealfilter.StringMatch{Regex: "^b"}), 0, false, ""},
		{"case-insensitive regex", user(stealfilter.StringMatch{Regex: "(?i)^ALICE$"}), user(stealfilter.StringMatch{Exact: "alice"}), 0, true, "alice"},
		{"regex vs exact miss", user(stealfilter.StringMatch{Regex: "^a.*z$"}), user(stealfilter.StringMatch{Exact: "abc"}), 0, false, ""},
		{"regex vs prefix", user(stealfilter.StringMatch{Regex: "^[0-9]+$"}), user(stealfilter.StringMatch{Prefix: "12"}), 0, true, "12"},
		{"regex vs prefix miss", user(stealfilter.StringMatch{Regex: "^[0-9]+$"}), user(stealfilter.StringMatch{Prefix: "1a"}), 0, false, ""},
		{"header presence vs value", user(stealfilter.StringMatch{}), user(stealfilter.StringMatch{Exact: "bob"}), 0, true, "bob"},
		{"different headers meet", user(stealfilter.StringMatch{Exact: "a"}),
			&stealfilter.Match{Header: []stealfilter.HeaderMatch{header("x-other", stealfilter.StringMatch{Exact: "b"})}}, 0, true, "X-Other: b"},
		{"header name case", user(stealfilter.StringMatch{Exact: "a"}),
			&stealfilter.Match{Header: []stealfilter.HeaderMatch{header("X-KWARP-USER", stealfilter.StringMatch{Exact: "b"})}}, 0, false, ""},
		{"prefix paths disjoint", path(stealfilter.StringMatch{Prefix: "/api/v1/"}), path(stealfilter.StringMatch{Prefix: "/api/v2/"}), 0, false, ""},
		{"prefix paths nested", path(stealfilter.StringMatch{Prefix: "/api/"}), path(stealfilter.StringMatch{Prefix: "/api/v2/"}), 0, true, "GET /api/v2/"},
		{"exact vs prefix path", path(stealfilter.StringMatch{Exact: "/api"}), path(stealfilter.StringMatch{Prefix: "/api/"}), 0, false, ""},
		{"path regex vs prefix", path(stealfilter.StringMatch{Regex: `^/users/[0-9]+$`}), path(stealfilter.StringMatch{Prefix: "/users/4"}), 0, true, "/users/4"},
		{"methods disjoint", &stealfilter.Match{Method: []string{"GET"}}, &stealfilter.Match{Method: []string{"POST", "PUT"}}, 0, false, ""},
		{"methods meet", &stealfilter.Match{Method: []string{"GET", "PUT"}}, &stealfilter.Match{Method: []string{"POST", "PUT"}}, 0, true, "PUT /"},
		{"methods disjoint, paths meet", &stealfilter.Match{Method: []string{"GET"}, Path: []stealfilter.StringMatch{{Prefix: "/"}}},
			&stealfilter.Match{Method: []string{"POST"}, Path: []stealfilter.StringMatch{{Prefix: "/"}}}, 0, false, ""},
		{"design vs bob", design, &stealfilter.Match{Method: []string{"GET"}, Header: []stealfilter.HeaderMatch{header("x-kwarp-user", stealfilter.StringMatch{Regex: "^bob$"})}},
			0, true, "/api/v2/"}, // the design's any_of steals /api/v2/ whoever asks
		{"design vs bob elsewhere", design, &stealfilter.Match{
			Header: []stealfilter.HeaderMatch{header("x-kwarp-user", stealfilter.StringMatch{Regex: "^bob$"})},
			Path:   []stealfilter.StringMatch{{Prefix: "/api/v1/"}}}, 0, false, ""},
		{"design vs DELETE", design, &stealfilter.Match{Method: []string{"DELETE"}}, 0, false, ""},
		{"any_of alternatives all disjoint", &stealfilter.Match{AnyOf: []stealfilter.Match{{Path: []stealfilter.StringMatch{{Exact: "/a"}, {Exact: "/b"}}}}},
			&stealfilter.Match{AnyOf: []stealfilter.Match{{Path: []stealfilter.StringMatch{{Exact: "/c"}, {Prefix: "/d"}}}}}, 0, false, ""},
		{"any_of one alternative meets", &stealfilter.Match{AnyOf: []stealfilter.Match{{Path: []stealfilter.StringMatch{{Exact: "/a"}, {Exact: "/d/1"}}}}},
			&stealfilter.Match{AnyOf: []stealfilter.Match{{Path: []stealfilter.StringMatch{{Exact: "/c"}, {Prefix: "/d"}}}}}, 0, true, "/d/1"},
		{"self-contradictory filter", &stealfilter.Match{Path: []stealfilter.StringMatch{{Exact: "/a"}, {Exact: "/b"}}}, nil, 0, false, ""},
		{"word boundary is undecided: overlap", user(stealfilter.StringMatch{Regex: `\balice\b`}), user(stealfilter.StringMatch{Prefix: "bob"}), 0, true, ""},
		{"word boundary not needed when exact decides", user(stealfilter.StringMatch{Regex: `^\balice\b$`}), user(stealfilter.StringMatch{Exact: "bob"}), 0, false, ""},
		{"empty method list matches nothing", &stealfilter.Match{Method: []string{}}, nil, 0, false, ""},
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
	m := &stealfilter.Match{}
	for i := 0; i < 11; i++ {
		m.AnyOf = append(m.AnyOf, stealfilter.Match{Path: []stealfilter.StringMatch{{Exact: "/a"}, {Exact: "/b"}}})
	}
	a := MustCompile(cfg(m))
	b := MustCompile(cfg(&stealfilter.Match{Path: []stealfilter.StringMatch{{Exact: "/c"}}}))
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
