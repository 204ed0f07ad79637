package filter

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
)

// maxTerms bounds the disjunctive normal form of one filter; a filter whose any_of nesting
// multiplies past it is taken as overlapping everything on its port.
const maxTerms = 1024

var errTooComplex = errors.New("filter too complex to compare")

// Overlaps reports whether a and b may both match one request. It is Overlap without the
// example.
func Overlaps(a, b *Filter) bool {
	_, ok := Overlap(a, b)
	return ok
}

// Overlap reports whether a and b may both match one request; when it can name such a
// request it returns it as example ("GET /api/v2/ with X-Kwarp-User: alice").
//
// Filters on different ports never overlap. On one port the answer is exact — overlapping
// means some request matches both — for every combination of methods, paths and headers,
// with exact, prefix and regex matchers (regexes are intersected as automata, so `^alice$`
// and `^bob$` do not overlap and `^a` and `b$` do), under one assumption: a request carries
// each header name once. A request that repeats a header with both filters' values matches
// both and goes to the first route (Router's order); Overlap does not count that.
//
// The answer is conservative (an overlap) where it is not decided: a regex with a line
// anchor or a word boundary ((?m)^, \b) among the matchers of the same header or of the
// path, and filters whose any_of nesting or automata outgrow the search budget.
func Overlap(a, b *Filter) (example string, overlaps bool) {
	if a.cfg.Port != b.cfg.Port {
		return "", false
	}
	ta, errA := a.terms()
	tb, errB := b.terms()
	if errA != nil || errB != nil {
		return "", true
	}
	for _, x := range ta {
		for _, y := range tb {
			ex, sat, decided := x.and(y).satisfiable()
			if !decided {
				return "", true
			}
			if sat {
				return ex, true
			}
		}
	}
	return "", false
}

// term is a conjunction of conditions on a request: one alternative of a filter's
// disjunctive normal form.
type term struct {
	methods []string // nil: any method; else sorted, and empty means none
	paths   []*matcher
	headers map[string][]*matcher
}

func (f *Filter) terms() ([]term, error) {
	if f.root == nil {
		return []term{{}}, nil
	}
	return f.root.terms()
}

func (n *node) terms() ([]term, error) {
	var conds [][]term
	if n.hasM {
		ms := slices.Clone(n.methods)
		if ms == nil {
			ms = []string{}
		}
		sort.Strings(ms)
		conds = append(conds, []term{{methods: slices.Compact(ms)}})
	}
	for _, h := range n.headers {
		conds = append(conds, []term{{headers: map[string][]*matcher{h.name: {h.m}}}})
	}
	for _, p := range n.paths {
		conds = append(conds, []term{{paths: []*matcher{p}}})
	}
	for _, s := range n.subs {
		ts, err := s.terms()
		if err != nil {
			return nil, err
		}
		conds = append(conds, ts)
	}
	if n.any {
		var out []term
		for _, c := range conds {
			out = append(out, c...)
			if len(out) > maxTerms {
				return nil, errTooComplex
			}
		}
		return out, nil
	}
	out := []term{{}}
	for _, c := range conds {
		if len(out)*len(c) > maxTerms {
			return nil, errTooComplex
		}
		next := make([]term, 0, len(out)*len(c))
		for _, x := range out {
			for _, y := range c {
				next = append(next, x.and(y))
			}
		}
		out = next
	}
	return out, nil
}

func (t term) and(u term) term {
	r := term{paths: append(slices.Clip(t.paths), u.paths...)}
	switch {
	case t.methods == nil:
		r.methods = u.methods
	case u.methods == nil:
		r.methods = t.methods
	default:
		r.methods = []string{}
		for _, m := range t.methods {
			if _, ok := slices.BinarySearch(u.methods, m); ok {
				r.methods = append(r.methods, m)
			}
		}
	}
	if len(t.headers)+len(u.headers) > 0 {
		r.headers = make(map[string][]*matcher, len(t.headers)+len(u.headers))
		for k, v := range t.headers {
			r.headers[k] = slices.Clip(v)
		}
		for k, v := range u.headers {
			r.headers[k] = append(r.headers[k], v...)
		}
	}
	return r
}

// satisfiable tells whether a request meets every condition of t, taking each header as
// sent once, and describes one.
func (t term) satisfiable() (example string, sat, decided bool) {
	method := "GET"
	if t.methods != nil {
		if len(t.methods) == 0 {
			return "", false, true
		}
		if _, ok := slices.BinarySearch(t.methods, "GET"); !ok {
			method = t.methods[0]
		}
	}
	path, sat, decided := intersect(t.paths)
	if !decided || !sat {
		return "", sat, decided
	}
	if len(t.paths) == 0 {
		path = "/"
	}
	names := make([]string, 0, len(t.headers))
	for name := range t.headers {
		names = append(names, name)
	}
	sort.Strings(names)
	var hs []string
	for _, name := range names {
		v, sat, decided := intersect(t.headers[name])
		if !decided || !sat {
			return "", sat, decided
		}
		hs = append(hs, fmt.Sprintf("%s: %s", name, v))
	}
	example = method + " " + path
	if len(hs) > 0 {
		example += " with " + strings.Join(hs, ", ")
	}
	return example, true, true
}
