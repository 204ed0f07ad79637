package glob

import (
	"errors"
	"path"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestMatch(t *testing.T) {
	tests := []struct {
		kind    Kind
		pattern string
		yes     []string
		no      []string
	}{
		// paths: the DESIGN.md examples first
		{Path, "/etc/checkout/**", []string{"/etc/checkout", "/etc/checkout/", "/etc/checkout/a", "/etc/checkout/a/b/c.yaml"}, []string{"/etc/checkoutx", "/etc/check", "/etc", "etc/checkout/a"}},
		{Path, "/data/**", []string{"/data", "/data/x", "/data/x/y"}, []string{"/database", "/dat", "/x/data/y"}},
		{Path, "**/.aws/**", []string{"/home/me/.aws/credentials", "/.aws", "/root/.aws", ".aws/config", "/a/b/c/.aws/d/e"}, []string{"/home/me/.awsx/credentials", "/home/me/aws/config", "/home/me/x.aws/c"}},
		{Path, "/srv/cache/**", []string{"/srv/cache/x"}, []string{"/srv/cachex/y"}},
		{Path, "/etc/*.conf", []string{"/etc/a.conf", "/etc/.conf", "/etc/resolv.conf"}, []string{"/etc/a/b.conf", "/etc/a.conf/x", "/etc/a.confx"}},
		{Path, "/etc/ld.so.*", []string{"/etc/ld.so.cache", "/etc/ld.so.conf"}, []string{"/etc/ld.so.conf.d/x"}},
		{Path, "/etc/java*/**", []string{"/etc/java-17/security/x", "/etc/java"}, []string{"/etc/jav/x"}},
		{Path, "/a/**/b", []string{"/a/b", "/a/x/b", "/a/x/y/z/b"}, []string{"/a/b/c", "/a", "/b"}},
		{Path, "/a/**/**/b", []string{"/a/b", "/a/x/b"}, []string{"/a/bb"}},
		{Path, "**", []string{"", "/", "/a/b/c", "x"}, nil},
		{Path, "/*", []string{"/", "/a"}, []string{"/a/b", "a"}},
		{Path, "/a?c", []string{"/abc", "/a.c", "/aéc"}, []string{"/ac", "/a/c", "/abbc"}},
		{Path, "/log[0-9].txt", []string{"/log1.txt"}, []string{"/logx.txt", "/log10.txt"}},
		{Path, "/log[^0-9]", []string{"/logx"}, []string{"/log1"}},
		{Path, "/log[!0-9]", []string{"/logx"}, []string{"/log1"}},
		{Path, `/a\*b`, []string{"/a*b"}, []string{"/axb"}},
		{Path, "/exact/file", []string{"/exact/file"}, []string{"/exact/file/", "/exact/File", "/exact"}},
		{Path, "/a*b*c", []string{"/abc", "/aXbYc", "/abbbbc", "/acbc"}, []string{"/ab", "/acb"}},

		// host names: the DESIGN.md examples
		{Host, "*.svc.cluster.local", []string{"backend.shop.svc.cluster.local", "a.svc.cluster.local", "BACKEND.Shop.SVC.cluster.local.", "x.svc.cluster.local."}, []string{"svc.cluster.local", "backend.shop.svc.cluster.localx", "a.svc.cluster.locals"}},
		{Host, "backend.*", []string{"backend.shop", "backend.shop.svc.cluster.local", "Backend.x."}, []string{"backend", "backendx.shop", "x.backend.y"}},
		{Host, "*.corp.example.com", []string{"git.corp.example.com", "a.b.corp.example.com"}, []string{"corp.example.com", "example.com"}},
		{Host, "Example.COM.", []string{"example.com", "EXAMPLE.com."}, []string{"example.co", "www.example.com"}},
		{Host, "db-[0-9].internal", []string{"db-1.internal", "DB-7.INTERNAL"}, []string{"db-x.internal"}},
		{Host, "db-[A-C].internal", []string{"db-a.internal", "db-B.internal"}, []string{"db-d.internal"}},
		{Host, "*", []string{"anything", "a.b.c", ""}, nil},

		// env names
		{Env, "DATABASE_*", []string{"DATABASE_URL", "DATABASE_", "DATABASE_A_B"}, []string{"database_url", "MY_DATABASE_URL", "DATABASE"}},
		{Env, "REDIS_URL", []string{"REDIS_URL"}, []string{"REDIS_URL2", "redis_url"}},
		{Env, "*_TOKEN", []string{"GITHUB_TOKEN", "_TOKEN"}, []string{"TOKEN"}},
		{Env, "A*B*C", []string{"ABC", "AxxBxxC"}, []string{"AxxB", "ACB"}},
	}
	for _, tt := range tests {
		m, err := Compile(tt.kind, tt.pattern)
		if err != nil {
			t.Fatalf("Compile(%s, %q): %v", tt.kind, tt.pattern, err)
		}
		for _, s := range tt.yes {
			if !m.Match(s) {
				t.Errorf("%s %q should match %q", tt.kind, tt.pattern, s)
			}
			if got := reference(tt.kind, tt.pattern, s); !got {
				t.Errorf("reference: %s %q should match %q", tt.kind, tt.pattern, s)
			}
		}
		for _, s := range tt.no {
			if m.Match(s) {
				t.Errorf("%s %q should not match %q", tt.kind, tt.pattern, s)
			}
			if got := reference(tt.kind, tt.pattern, s); got {
				t.Errorf("reference: %s %q should not match %q", tt.kind, tt.pattern, s)
			}
		}
	}
}

func TestCompileErrors(t *testing.T) {
	tests := []struct {
		kind    Kind
		pattern string
		offset  int
		reason  string
	}{
		{Path, "", 0, "empty"},
		{Path, "/a**b", 2, `"**" must be a whole path segment`},
		{Path, "/x/**.log", 3, `"**" must be a whole path segment`},
		{Path, "/x/***", 3, `"**" must be a whole path segment`},
		{Path, "/a/[bc", 3, "never closed"},
		{Path, "/a/[]", 4, "empty"},
		{Path, "/a/[^]", 5, "empty"},
		{Path, "/a/[z-a]", 6, "backwards"},
		{Path, "/a/[-a]", 4, "must be escaped"},
		{Path, "/a/[a-]", 6, "must be escaped"},
		{Path, `/a\`, 2, "escapes nothing"},
		{Path, "/a\x00b", 2, "NUL"},
		{Path, "/a/[b/c]", 3, "never closed"}, // a class cannot hold "/"
		{Host, ".", 0, "needs a name"},
		{Host, "example.com:443", 11, "DNS name only"},
		{Host, "https://example.com", 5, "DNS name only"},
		{Host, "10.0.0.0/8", 8, "DNS name only"},
		{Host, "db[", 2, "never closed"},
		{Env, "A=B", 1, `cannot contain "="`},
		{Env, "A[", 1, "never closed"},
		{Kind(0), "x", 0, "unknown pattern kind"},
	}
	for _, tt := range tests {
		_, err := Compile(tt.kind, tt.pattern)
		var ge *Error
		if !errors.As(err, &ge) {
			t.Errorf("Compile(%s, %q) = %v, want an *Error", tt.kind, tt.pattern, err)
			continue
		}
		if ge.Offset != tt.offset || !strings.Contains(ge.Reason, tt.reason) {
			t.Errorf("Compile(%s, %q): offset %d reason %q; want offset %d reason containing %q", tt.kind, tt.pattern, ge.Offset, ge.Reason, tt.offset, tt.reason)
		}
		if !strings.Contains(err.Error(), strconv.Quote(tt.pattern)) {
			t.Errorf("error %q does not quote the pattern", err)
		}
	}
	if _, err := Compile(Path, ""); !errors.Is(err, ErrEmpty) {
		t.Errorf("empty pattern error %v is not ErrEmpty", err)
	}
}

func TestHostAndEnvDoubleStarIsStar(t *testing.T) {
	// Only paths give "**" a meaning of its own; elsewhere "*" already crosses everything.
	for _, k := range []Kind{Host, Env} {
		m := MustCompile(k, "a**b")
		if !m.Match("axyzb") || m.Match("axyz") {
			t.Errorf("%s a**b should act as a*b", k)
		}
	}
}

func TestZeroMatcherMatchesNothing(t *testing.T) {
	var m Matcher
	if m.Match("") || m.Match("x") {
		t.Fatal("zero Matcher matched")
	}
}

func TestSet(t *testing.T) {
	s, err := CompileAll(Path, []string{"/a/**", "/b/*"})
	if err != nil {
		t.Fatal(err)
	}
	if !s.Match("/a/x/y") || !s.Match("/b/x") || s.Match("/b/x/y") {
		t.Error("Set.Match is wrong")
	}
	if _, err := CompileAll(Path, []string{"/ok", "/bad**"}); err == nil || !strings.Contains(err.Error(), "/bad**") {
		t.Errorf("CompileAll error %v does not name the bad pattern", err)
	}
}

func TestEscape(t *testing.T) {
	for _, s := range []string{"/a*b/[x]/c?d", `/back\slash`, "/plain"} {
		m := MustCompile(Path, Escape(s))
		if !m.Match(s) {
			t.Errorf("Escape(%q) = %q does not match itself", s, Escape(s))
		}
	}
	if MustCompile(Path, Escape("/a*")).Match("/ab") {
		t.Error("escaped star still a wildcard")
	}
}

func TestMatchDoesNotAllocate(t *testing.T) {
	m := MustCompile(Host, "*.svc.cluster.local")
	p := MustCompile(Path, "**/.aws/**")
	allocs := testing.AllocsPerRun(100, func() {
		m.Match("Backend.Shop.svc.cluster.local.")
		p.Match("/home/me/.aws/credentials")
	})
	if allocs != 0 {
		t.Fatalf("Match allocates %v times", allocs)
	}
}

func BenchmarkMatch(b *testing.B) {
	cases := []struct {
		kind       Kind
		pattern, s string
	}{
		{Path, "**/.aws/**", "/home/developer/projects/checkout/node_modules/.bin/tsc"},
		{Path, "/usr/**", "/usr/lib/x86_64-linux-gnu/libc.so.6"},
		{Host, "*.svc.cluster.local", "backend.shop.svc.cluster.local"},
		{Env, "DATABASE_*", "DATABASE_URL"},
	}
	for _, c := range cases {
		m := MustCompile(c.kind, c.pattern)
		b.Run(c.kind.String()+"/"+c.pattern, func(b *testing.B) {
			for range b.N {
				m.Match(c.s)
			}
		})
	}
}

// FuzzGlob checks that Compile never panics, that its errors point inside the pattern, and
// that a compiled pattern matches exactly what an independent, slow reference matcher
// (and, where the syntax is the same, path.Match) says it should.
func FuzzGlob(f *testing.F) {
	seeds := []struct {
		kind    uint8
		pattern string
		name    string
	}{
		{1, "/etc/checkout/**", "/etc/checkout/a/b"},
		{1, "**/.aws/**", "/home/me/.aws/credentials"},
		{1, "/a/**/b/*.c", "/a/x/y/b/z.c"},
		{1, "/[a-c]?/x", "/b1/x"},
		{1, `/\*/[^x]`, "/*/y"},
		{2, "*.svc.cluster.local", "backend.shop.svc.cluster.local"},
		{2, "backend.*", "Backend.x."},
		{2, "db-[!0-9]", "DB-x"},
		{3, "DATABASE_*", "DATABASE_URL"},
		{3, "*A*B*", "xxAyyBzz"},
		{1, "/a**b", "/ab"},
		{1, "[", ""},
	}
	for _, s := range seeds {
		f.Add(s.kind, s.pattern, s.name)
	}
	f.Fuzz(func(t *testing.T, k uint8, pattern, name string) {
		kind := Kind(k%3 + 1)
		m, err := Compile(kind, pattern)
		if err != nil {
			var ge *Error
			if !errors.As(err, &ge) || ge.Offset < 0 || ge.Offset > len(pattern) {
				t.Fatalf("Compile(%s, %q) error %#v does not point inside the pattern", kind, pattern, err)
			}
			return
		}
		if m.String() != pattern || m.Kind() != kind {
			t.Fatalf("Compile(%s, %q) lost its pattern or kind", kind, pattern)
		}
		got := m.Match(name)
		if want := reference(kind, pattern, name); got != want {
			t.Fatalf("%s %q Match(%q) = %v, reference says %v", kind, pattern, name, got, want)
		}
		if got != m.Match(name) {
			t.Fatal("Match is not deterministic")
		}
		// path.Match lets a class match "/" ("[^x]" matches "/"), which a segment-wise
		// matcher never does, so classes are left to the reference alone
		if kind == Path && !strings.Contains(pattern, "**") && !strings.Contains(pattern, "[") && utf8.ValidString(pattern) && utf8.ValidString(name) {
			if want, err := path.Match(pattern, name); err == nil && got != want {
				t.Fatalf("path %q Match(%q) = %v, path.Match says %v", pattern, name, got, want)
			}
		}
		// a literal name always matches its own escaped pattern
		if e, err := Compile(kind, Escape(name)); err == nil && !(kind == Host && strings.Contains(name, `\`)) {
			if !e.Match(name) {
				t.Fatalf("%s Escape(%q) = %q does not match its name", kind, name, Escape(name))
			}
		}
	})
}

// reference is a slow, independent matcher: memoised recursion straight over the pattern's
// text, with none of Compile's tokens.
func reference(kind Kind, pattern, name string) bool {
	switch kind {
	case Path:
		return refSegs(strings.Split(pattern, "/"), strings.Split(name, "/"))
	case Host:
		if endsWithUnescapedDot(pattern) {
			pattern = pattern[:len(pattern)-1]
		}
		return refUnit(pattern, strings.TrimSuffix(name, "."), true)
	default:
		return refUnit(pattern, name, false)
	}
}

func refSegs(ps, ns []string) bool {
	if len(ps) == 0 {
		return len(ns) == 0
	}
	if ps[0] == "**" {
		for k := 0; k <= len(ns); k++ {
			if refSegs(ps[1:], ns[k:]) {
				return true
			}
		}
		return false
	}
	return len(ns) > 0 && refUnit(ps[0], ns[0], false) && refSegs(ps[1:], ns[1:])
}

func refUnit(p, s string, fold bool) bool {
	memo := map[[2]int]bool{}
	seen := map[[2]int]bool{}
	var rec func(pi, si int) bool
	// lit compares one literal pattern character, byte for byte (ASCII case folded for hosts)
	lit := func(pi, si, n int) bool {
		if len(s)-si < n {
			return false
		}
		for j := 0; j < n; j++ {
			a, b := p[pi+j], s[si+j]
			if fold {
				a, b = byte(refLower(rune(a))), byte(refLower(rune(b)))
			}
			if a != b {
				return false
			}
		}
		return true
	}
	rec = func(pi, si int) bool {
		key := [2]int{pi, si}
		if seen[key] {
			return memo[key]
		}
		seen[key] = true
		r := func() bool {
			if pi == len(p) {
				return si == len(s)
			}
			switch p[pi] {
			case '*':
				for k := si; ; {
					if rec(pi+1, k) {
						return true
					}
					if k >= len(s) {
						return false
					}
					_, n := utf8.DecodeRuneInString(s[k:])
					k += n
				}
			case '?':
				if si >= len(s) {
					return false
				}
				_, n := utf8.DecodeRuneInString(s[si:])
				return rec(pi+1, si+n)
			case '[':
				if si >= len(s) {
					return false
				}
				r, n := utf8.DecodeRuneInString(s[si:])
				in, end := refClass(p, pi, r, fold)
				return in && rec(end, si+n)
			case '\\':
				_, n := utf8.DecodeRuneInString(p[pi+1:])
				return lit(pi+1, si, n) && rec(pi+1+n, si+n)
			default:
				_, n := utf8.DecodeRuneInString(p[pi:])
				return lit(pi, si, n) && rec(pi+n, si+n)
			}
		}()
		memo[key] = r
		return r
	}
	return rec(0, 0)
}

func refEq(a, b rune, fold bool) bool {
	if fold {
		return refLower(a) == refLower(b)
	}
	return a == b
}

func refLower(r rune) rune {
	if 'A' <= r && r <= 'Z' {
		return r + 'a' - 'A'
	}
	return r
}

// refClass tests r against the class at p[start] and returns where the class ends.
func refClass(p string, start int, r rune, fold bool) (bool, int) {
	i := start + 1
	negate := false
	if p[i] == '^' || p[i] == '!' {
		negate, i = true, i+1
	}
	in := false
	readChar := func() rune {
		if p[i] == '\\' {
			i++
		}
		c, n := utf8.DecodeRuneInString(p[i:])
		i += n
		return c
	}
	for p[i] != ']' {
		lo := readChar()
		hi := lo
		if p[i] == '-' {
			i++
			hi = readChar()
		}
		for _, c := range []rune{r, refLower(r), refUpper(r)} {
			if (c == r || fold) && lo <= c && c <= hi {
				in = true
			}
		}
	}
	return in != negate, i + 1
}

func refUpper(r rune) rune {
	if 'a' <= r && r <= 'z' {
		return r - 'a' + 'A'
	}
	return r
}
