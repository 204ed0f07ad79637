// Package glob is the one glob language of kwarp's policy: the loader validates patterns with
// it, and the core and plugins match paths, host names and environment variable names against
// the rule tables with it. Keeping a single implementation is what makes "verify-config says
// the pattern is fine" mean "the pattern matches at run time the way it reads".
//
// There are three kinds of pattern, because the three kinds of name have different shapes:
//
//   - Path: the name is split on "/". "*" matches any run of characters within one segment,
//     "**" as a whole segment matches zero or more segments. "/data/**" matches "/data",
//     "/data/x" and "/data/x/y"; "**/.aws/**" matches "/home/me/.aws/credentials".
//   - Host: DNS names. "*" matches any run of characters, dots included, so
//     "*.svc.cluster.local" matches "backend.shop.svc.cluster.local" and "backend.*" matches
//     every name that starts with "backend.". Matching ignores ASCII case and one trailing dot
//     on both sides ("Example.COM." matches "example.com").
//   - Env: environment variable names. "*" matches any run of characters; case matters.
//
// In every kind "?" matches one character (not "/" in a path), "[...]" a character class with
// the syntax of Go's path.Match ("[a-z]", "[^0-9]"; "[!0-9]" is accepted as a negation too, as
// shells write it), and "\" makes the next character literal. Braces are not alternatives:
// "{a,b}" is three literal characters; write two patterns instead.
//
// Decisions a user can trip on, and why they are errors rather than guesses:
//
//   - In a path, "**" glued to other characters ("a**b", "/x/**.log") is an error: it reads as
//     "cross directories" but could only mean "*" within a segment, and a rule that silently
//     matches less than the user thinks is how a credential file ends up read from the wrong
//     place. Write "a*b", or "/x/**/*.log".
//   - An unclosed "[", an empty class "[]", a dangling "\" and NUL bytes are errors.
//
// Matching allocates nothing and uses no regular expressions: a pattern compiles to literal
// runs, stars and classes, matched left to right with one backtrack point per star (and per
// "**" over segments), so the cost is linear in practice and bounded by len(pattern)*len(name).
package glob

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Kind says what a pattern matches, which decides what "*" may cross and whether case matters.
type Kind uint8

// The kinds of pattern. The zero Kind is invalid so that a forgotten kind fails to compile
// instead of silently picking one.
const (
	Path Kind = iota + 1
	Host
	Env
)

func (k Kind) String() string {
	switch k {
	case Path:
		return "path"
	case Host:
		return "host"
	case Env:
		return "env"
	}
	return fmt.Sprintf("glob.Kind(%d)", uint8(k))
}

// Error is a pattern that does not compile. Offset is the byte in Pattern where the problem
// is, so a caller can point at it.
type Error struct {
	Kind    Kind
	Pattern string
	Offset  int
	Reason  string
}

func (e *Error) Error() string {
	return fmt.Sprintf("invalid %s pattern %q: %s", e.Kind, e.Pattern, e.Reason)
}

// ErrEmpty is wrapped by the Error for an empty pattern: an empty rule is almost always a
// template left half-filled, not a wish to match the empty name.
var ErrEmpty = errors.New("the pattern is empty")

// Is lets errors.Is(err, ErrEmpty) see through an *Error.
func (e *Error) Is(target error) bool { return target == ErrEmpty && e.Reason == ErrEmpty.Error() }

// Matcher is a compiled pattern. The zero Matcher matches nothing.
type Matcher struct {
	kind    Kind
	pattern string
	// segs is the compiled path, one entry per "/"-separated segment; nil for other kinds.
	segs []segment
	// toks is the compiled host or env pattern.
	toks []token
}

// segment is one path segment of a pattern: either "**" or a run of tokens.
type segment struct {
	doubleStar bool
	toks       []token
}

type tokenKind uint8

const (
	tLiteral tokenKind = iota
	tStar
	tOne
	tClass
)

type token struct {
	kind tokenKind
	lit  string
	// class: ranges are inclusive [lo, hi] pairs; negate inverts the class.
	ranges []rune
	negate bool
}

// Compile parses pattern as a glob of the given kind.
func Compile(kind Kind, pattern string) (Matcher, error) {
	fail := func(off int, format string, args ...any) (Matcher, error) {
		return Matcher{}, &Error{Kind: kind, Pattern: pattern, Offset: off, Reason: fmt.Sprintf(format, args...)}
	}
	switch kind {
	case Path, Host, Env:
	default:
		return fail(0, "unknown pattern kind %d", uint8(kind))
	}
	if pattern == "" {
		return fail(0, "%s", ErrEmpty.Error())
	}
	if i := strings.IndexByte(pattern, 0); i >= 0 {
		return fail(i, "it contains a NUL byte")
	}
	m := Matcher{kind: kind, pattern: pattern}
	switch kind {
	case Path:
		off := 0
		for _, s := range strings.Split(pattern, "/") {
			if s == "**" {
				m.segs = append(m.segs, segment{doubleStar: true})
				off += len(s) + 1
				continue
			}
			if i := doubleStarIn(s); i >= 0 {
				return fail(off+i, `"**" must be a whole path segment, as in "/a/**/b"; within a segment "*" already matches any run of characters`)
			}
			toks, err := parseTokens(s, false)
			if err != nil {
				return fail(off+err.off, "%s", err.msg)
			}
			m.segs = append(m.segs, segment{toks: toks})
			off += len(s) + 1
		}
	case Host:
		p := pattern
		if endsWithUnescapedDot(p) {
			p = p[:len(p)-1]
		}
		if p == "" {
			return fail(0, "a host pattern needs a name, not just a dot")
		}
		if i := strings.IndexAny(p, "/:@ \t\n,="); i >= 0 {
			return fail(i, "a host pattern is a DNS name only (such as %q); ports, schemes, paths and subnets have their own settings", "*.svc.cluster.local")
		}
		toks, err := parseTokens(p, true)
		if err != nil {
			return fail(err.off, "%s", err.msg)
		}
		m.toks = toks
	case Env:
		if i := strings.IndexByte(pattern, '='); i >= 0 {
			return fail(i, `an environment variable name cannot contain "="`)
		}
		toks, err := parseTokens(pattern, false)
		if err != nil {
			return fail(err.off, "%s", err.msg)
		}
		m.toks = toks
	}
	return m, nil
}

// MustCompile is Compile for patterns written in the program; it panics on an error.
func MustCompile(kind Kind, pattern string) Matcher {
	m, err := Compile(kind, pattern)
	if err != nil {
		panic(err)
	}
	return m
}

// Kind is the kind the pattern was compiled as.
func (m Matcher) Kind() Kind { return m.kind }

// String is the pattern as written.
func (m Matcher) String() string { return m.pattern }

// Match reports whether name matches the pattern. A path is matched as given: the caller
// passes clean absolute paths (the layer does), since "/a/../b" is not "/b" to a glob.
func (m Matcher) Match(name string) bool {
	switch m.kind {
	case Path:
		return matchSegments(m.segs, name)
	case Host:
		return matchTokens(m.toks, strings.TrimSuffix(name, "."), true)
	case Env:
		return matchTokens(m.toks, name, false)
	}
	return false
}

// Set is a list of patterns of one kind, for the usual "does any of these match" question.
type Set []Matcher

// CompileAll compiles every pattern; the error names the first one that fails.
func CompileAll(kind Kind, patterns []string) (Set, error) {
	set := make(Set, 0, len(patterns))
	for _, p := range patterns {
		m, err := Compile(kind, p)
		if err != nil {
			return nil, err
		}
		set = append(set, m)
	}
	return set, nil
}

// Match reports whether any pattern of the set matches name.
func (s Set) Match(name string) bool {
	for _, m := range s {
		if m.Match(name) {
			return true
		}
	}
	return false
}

// Escape returns a pattern that matches exactly s (for any kind whose rules s satisfies),
// for code that builds a rule from a literal name.
func Escape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '*', '?', '[', ']', '\\':
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// endsWithUnescapedDot reports whether a host pattern ends with a root dot ("example.com."),
// as opposed to an escaped one, which is part of the name.
func endsWithUnescapedDot(p string) bool {
	if !strings.HasSuffix(p, ".") {
		return false
	}
	n := 0
	for i := len(p) - 2; i >= 0 && p[i] == '\\'; i-- {
		n++
	}
	return n%2 == 0
}

// doubleStarIn finds an unescaped "**" in a path segment that is not exactly "**".
func doubleStarIn(s string) int {
	inClass := false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\':
			i++
		case c == '[' && !inClass:
			inClass = true
			// a "]" right after "[" or "[^" is not the end; parseTokens rejects it anyway
		case c == ']' && inClass:
			inClass = false
		case c == '*' && !inClass && i+1 < len(s) && s[i+1] == '*':
			return i
		}
	}
	return -1
}

type parseError struct {
	off int
	msg string
}

// parseTokens compiles one unit (a path segment, or a whole host or env pattern). lower folds
// literals and classes to ASCII lower case, for host names.
func parseTokens(s string, lower bool) ([]token, *parseError) {
	var toks []token
	var lit strings.Builder
	flush := func() {
		if lit.Len() > 0 {
			toks = append(toks, token{kind: tLiteral, lit: lit.String()})
			lit.Reset()
		}
	}
	for i := 0; i < len(s); {
		c := s[i]
		switch c {
		case '*':
			flush()
			// consecutive stars mean the same as one; keeping one keeps matching linear
			if len(toks) == 0 || toks[len(toks)-1].kind != tStar {
				toks = append(toks, token{kind: tStar})
			}
			i++
		case '?':
			flush()
			toks = append(toks, token{kind: tOne})
			i++
		case '[':
			flush()
			t, n, err := parseClass(s, i, lower)
			if err != nil {
				return nil, err
			}
			toks = append(toks, t)
			i += n
		case '\\':
			if i+1 >= len(s) {
				return nil, &parseError{i, `it ends with "\", which escapes nothing`}
			}
			_, n := utf8.DecodeRuneInString(s[i+1:])
			lit.WriteString(fold(s[i+1:i+1+n], lower))
			i += 1 + n
		default:
			_, n := utf8.DecodeRuneInString(s[i:])
			lit.WriteString(fold(s[i:i+n], lower))
			i += n
		}
	}
	flush()
	return toks, nil
}

// parseClass reads the class that starts at s[start] == '[' and returns it with its length.
// The grammar is path.Match's, plus "!" as a negation.
func parseClass(s string, start int, lower bool) (token, int, *parseError) {
	t := token{kind: tClass}
	i := start + 1
	if i < len(s) && (s[i] == '^' || s[i] == '!') {
		t.negate = true
		i++
	}
	unclosed := &parseError{start, `"[" starts a character class that is never closed with "]" (write "\[" for a literal "[")`}
	for n := 0; ; n++ {
		if i >= len(s) {
			return t, 0, unclosed
		}
		if s[i] == ']' {
			if n == 0 {
				return t, 0, &parseError{i, `the character class is empty; write "\]" for a literal "]"`}
			}
			return t, i + 1 - start, nil
		}
		lo, w, err := classChar(s, i)
		if err != nil {
			return t, 0, err
		}
		i += w
		hi := lo
		if i < len(s) && s[i] == '-' {
			i++
			if hi, w, err = classChar(s, i); err != nil {
				return t, 0, err
			}
			i += w
			if hi < lo {
				return t, 0, &parseError{i - w, fmt.Sprintf("the range %q-%q is backwards", lo, hi)}
			}
		}
		if lower {
			lo, hi = foldRange(lo, hi, &t)
		}
		t.ranges = append(t.ranges, lo, hi)
	}
}

// classChar reads one possibly escaped character of a class.
func classChar(s string, i int) (rune, int, *parseError) {
	if i >= len(s) {
		return 0, 0, &parseError{i, `"[" starts a character class that is never closed with "]"`}
	}
	switch s[i] {
	case '-', ']':
		return 0, 0, &parseError{i, fmt.Sprintf("%q must be escaped inside a character class", s[i])}
	case '\\':
		if i+1 >= len(s) {
			return 0, 0, &parseError{i, `it ends with "\", which escapes nothing`}
		}
		r, n := utf8.DecodeRuneInString(s[i+1:])
		return r, 1 + n, nil
	}
	r, n := utf8.DecodeRuneInString(s[i:])
	return r, n, nil
}

// foldRange makes a host class case-blind: the part of [lo,hi] in A-Z is added again in a-z.
func foldRange(lo, hi rune, t *token) (rune, rune) {
	a, b := max(lo, 'A'), min(hi, 'Z')
	if a <= b {
		t.ranges = append(t.ranges, a+'a'-'A', b+'a'-'A')
	}
	return lo, hi
}

func fold(s string, lower bool) string {
	if !lower {
		return s
	}
	return asciiLower(s)
}

func asciiLower(s string) string {
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if 'A' <= b[j] && b[j] <= 'Z' {
					b[j] += 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}

func lowerByte(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

func (t *token) inClass(r rune) bool {
	in := false
	for i := 0; i+1 < len(t.ranges); i += 2 {
		if t.ranges[i] <= r && r <= t.ranges[i+1] {
			in = true
			break
		}
	}
	return in != t.negate
}

// hasPrefixAt reports whether lit occurs in s at i; fold compares s in ASCII lower case (lit
// is already lower).
func hasPrefixAt(s string, i int, lit string, fold bool) bool {
	if len(s)-i < len(lit) {
		return false
	}
	if !fold {
		return s[i:i+len(lit)] == lit
	}
	for j := 0; j < len(lit); j++ {
		if lowerByte(s[i+j]) != lit[j] {
			return false
		}
	}
	return true
}

// matchTokens matches one unit. A star remembers where it started; on a mismatch the match
// resumes after the last star with one more character swallowed. One backtrack point is
// enough because a later star can absorb whatever an earlier one would have.
func matchTokens(toks []token, s string, fold bool) bool {
	ti, si := 0, 0
	starT, starS := -1, 0
	for {
		if ti < len(toks) {
			t := &toks[ti]
			switch t.kind {
			case tStar:
				if ti == len(toks)-1 {
					return true // a trailing star takes the rest
				}
				starT, starS = ti, si
				ti++
				continue
			case tLiteral:
				if hasPrefixAt(s, si, t.lit, fold) {
					si += len(t.lit)
					ti++
					continue
				}
			case tOne:
				if si < len(s) {
					_, n := utf8.DecodeRuneInString(s[si:])
					si += n
					ti++
					continue
				}
			case tClass:
				if si < len(s) {
					r, n := utf8.DecodeRuneInString(s[si:])
					if fold && r < utf8.RuneSelf {
						r = rune(lowerByte(byte(r)))
					}
					if t.inClass(r) {
						si += n
						ti++
						continue
					}
				}
			}
		} else if si == len(s) {
			return true
		}
		if starT < 0 || starS >= len(s) {
			return false
		}
		_, n := utf8.DecodeRuneInString(s[starS:])
		starS += n
		ti, si = starT+1, starS
	}
}

// nextSegment returns the segment of path starting at pos and the position after its "/";
// past the last segment the position is len(path)+1.
func nextSegment(path string, pos int) (string, int) {
	if i := strings.IndexByte(path[pos:], '/'); i >= 0 {
		return path[pos : pos+i], pos + i + 1
	}
	return path[pos:], len(path) + 1
}

// matchSegments is matchTokens one level up: "**" is the star, a segment the character.
func matchSegments(segs []segment, path string) bool {
	end := len(path) + 1
	si, pos := 0, 0
	starS, starPos := -1, 0
	for {
		if si < len(segs) {
			if segs[si].doubleStar {
				if si == len(segs)-1 {
					return true
				}
				starS, starPos = si, pos
				si++
				continue
			}
			if pos < end {
				seg, next := nextSegment(path, pos)
				if matchTokens(segs[si].toks, seg, false) {
					si, pos = si+1, next
					continue
				}
			}
		} else if pos == end {
			return true
		}
		if starS < 0 || starPos >= end {
			return false
		}
		_, starPos = nextSegment(path, starPos)
		si, pos = starS+1, starPos
	}
}
