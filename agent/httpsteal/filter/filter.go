// Package filter compiles the match of a steal "http" block (plugins/stealfilter.Config) into a
// predicate over one HTTP request, and decides whether two blocks may both match one request
// (Overlap), so that the agent can refuse a filter that another session already holds.
//
// What a filter sees of a request (Request):
//   - the method, compared case-sensitively (methods are case-sensitive in HTTP);
//   - the path: the request target without its query (PathOf), exactly as the client sent
//     it: percent-encoding is not decoded and dot segments are not removed, so `/a/../b` is
//     not `/b` and `/%61` is not `/a`. For an absolute-form target (`http://host/p?q`) the
//     path is `/p`; for `*` (OPTIONS) it is `*`; for a CONNECT authority it is empty;
//   - the header fields: the name compares case-insensitively; a header matcher holds when
//     any one of the fields with that name has a value that matches. The value is the field
//     line's value without surrounding blanks, not split on commas. A matcher with no regex,
//     exact or prefix only asks that the header is present.
//
// String matchers: exact and prefix compare bytes; regex is Go RE2 syntax and unanchored, as
// regexp.MatchString does it (`^alice$` for a whole value).
//
// The tree is the Config's: in match and all_of every condition must hold, in any_of one is
// enough; method, each header, each path, each all_of and each any_of is one condition. A
// Config without match matches every request.
package filter

import (
	"fmt"
	"net/textproto"
	"regexp"
	"strings"

	"github.com/kwarp-dev/kwarp/agent/api/stealfilter"
)

// Header gives the values of a request's header fields with a name, compared
// case-insensitively; http.Header and h1.RequestHead both are one.
type Header interface {
	Values(name string) []string
}

// Request is what a filter looks at.
type Request struct {
	Method string
	// Path is the request target's path, without the query (PathOf).
	Path   string
	Header Header
}

// Filter is a compiled steal block.
type Filter struct {
	cfg  stealfilter.Config
	root *node // nil: every request
}

type node struct {
	any     bool // any_of: one condition is enough; else all must hold
	methods []string
	hasM    bool // a method condition exists (methods may still be empty: matches nothing)
	headers []headerCond
	paths   []*matcher
	subs    []*node
}

type headerCond struct {
	name string // canonical MIME form
	m    *matcher
}

type matchKind uint8

const (
	anyString matchKind = iota // an empty regex: anything, presence only for a header
	exactString
	prefixString
	regexString
)

type matcher struct {
	kind matchKind
	s    string
	re   *regexp.Regexp
}

// Compile checks and compiles one steal block. It fails for a regex that does not compile
// and a StringMatch with more than one way set.
func Compile(c stealfilter.Config) (*Filter, error) {
	f := &Filter{cfg: c}
	if c.Match != nil {
		n, err := compileNode(c.Match, false, "match")
		if err != nil {
			return nil, fmt.Errorf("steal %q %q: %w", c.Kind, c.Name, err)
		}
		f.root = n
	}
	return f, nil
}

// MustCompile is Compile for tests and literals: it panics on error.
func MustCompile(c stealfilter.Config) *Filter {
	f, err := Compile(c)
	if err != nil {
		panic(err)
	}
	return f
}

func compileNode(m *stealfilter.Match, anyOf bool, where string) (*node, error) {
	n := &node{any: anyOf}
	if m.Method != nil {
		n.hasM = true
		n.methods = append([]string(nil), m.Method...)
	}
	for _, h := range m.Header {
		if h.Name == "" {
			return nil, fmt.Errorf("%s: header without a name", where)
		}
		sm, err := compileString(h.StringMatch)
		if err != nil {
			return nil, fmt.Errorf("%s: header %q: %w", where, h.Name, err)
		}
		n.headers = append(n.headers, headerCond{name: textproto.CanonicalMIMEHeaderKey(h.Name), m: sm})
	}
	for _, p := range m.Path {
		sm, err := compileString(p)
		if err != nil {
			return nil, fmt.Errorf("%s: path: %w", where, err)
		}
		n.paths = append(n.paths, sm)
	}
	for i := range m.AllOf {
		s, err := compileNode(&m.AllOf[i], false, where+".all_of")
		if err != nil {
			return nil, err
		}
		n.subs = append(n.subs, s)
	}
	for i := range m.AnyOf {
		s, err := compileNode(&m.AnyOf[i], true, where+".any_of")
		if err != nil {
			return nil, err
		}
		n.subs = append(n.subs, s)
	}
	return n, nil
}

func compileString(s stealfilter.StringMatch) (*matcher, error) {
	set := 0
	for _, v := range []string{s.Regex, s.Exact, s.Prefix} {
		if v != "" {
			set++
		}
	}
	if set > 1 {
		return nil, fmt.Errorf("more than one of regex, exact and prefix")
	}
	switch {
	case s.Exact != "":
		return &matcher{kind: exactString, s: s.Exact}, nil
	case s.Prefix != "":
		return &matcher{kind: prefixString, s: s.Prefix}, nil
	case s.Regex != "":
		re, err := regexp.Compile(s.Regex)
		if err != nil {
			return nil, fmt.Errorf("regex %q: %w", s.Regex, err)
		}
		return &matcher{kind: regexString, s: s.Regex, re: re}, nil
	}
	return &matcher{kind: anyString}, nil
}

// Config is the block the filter was compiled from.
func (f *Filter) Config() stealfilter.Config { return f.cfg }

// Name is the block's name (its second label).
func (f *Filter) Name() string { return f.cfg.Name }

// Port is the pod port the block steals from.
func (f *Filter) Port() int { return f.cfg.Port }

// String is the filter as a short readable expression, for logs and messages.
func (f *Filter) String() string {
	if f.root == nil {
		return "every request"
	}
	return f.root.String()
}

// Match reports whether the request is one the block steals.
func (f *Filter) Match(r *Request) bool {
	return f.root == nil || f.root.match(r)
}

func (n *node) match(r *Request) bool {
	// each condition in turn; in any_of the first that holds decides, in all_of the first
	// that fails.
	if n.hasM {
		ok := false
		for _, m := range n.methods {
			if m == r.Method {
				ok = true
				break
			}
		}
		if ok == n.any {
			return ok
		}
	}
	for _, h := range n.headers {
		if h.match(r.Header) == n.any {
			return n.any
		}
	}
	for _, p := range n.paths {
		if p.match(r.Path) == n.any {
			return n.any
		}
	}
	for _, s := range n.subs {
		if s.match(r) == n.any {
			return n.any
		}
	}
	return !n.any
}

func (h headerCond) match(hd Header) bool {
	if hd == nil {
		return false
	}
	for _, v := range hd.Values(h.name) {
		if h.m.match(v) {
			return true
		}
	}
	return false
}

func (m *matcher) match(s string) bool {
	switch m.kind {
	case exactString:
		return s == m.s
	case prefixString:
		return strings.HasPrefix(s, m.s)
	case regexString:
		return m.re.MatchString(s)
	}
	return true
}

func (m *matcher) String() string {
	switch m.kind {
	case exactString:
		return fmt.Sprintf("= %q", m.s)
	case prefixString:
		return fmt.Sprintf("^= %q", m.s)
	case regexString:
		return fmt.Sprintf("~ %q", m.s)
	}
	return "present"
}

func (n *node) String() string {
	var parts []string
	if n.hasM {
		parts = append(parts, "method in ["+strings.Join(n.methods, " ")+"]")
	}
	for _, h := range n.headers {
		parts = append(parts, "header "+h.name+" "+h.m.String())
	}
	for _, p := range n.paths {
		parts = append(parts, "path "+p.String())
	}
	for _, s := range n.subs {
		parts = append(parts, "("+s.String()+")")
	}
	if n.any {
		return strings.Join(parts, " or ")
	}
	return strings.Join(parts, " and ")
}

// PathOf is the path of a request target, the way filters see it: the target without its
// query, and for an absolute-form target (`http://host/p?q`) the part after the authority.
func PathOf(target string) string {
	if i := strings.IndexAny(target, "?#"); i >= 0 {
		target = target[:i]
	}
	if target == "" || target[0] == '/' || target == "*" {
		return target
	}
	if i := strings.Index(target, "://"); i > 0 {
		rest := target[i+3:]
		if j := strings.IndexByte(rest, '/'); j >= 0 {
			return rest[j:]
		}
		return "/"
	}
	// authority-form (CONNECT host:port) has no path
	return ""
}
