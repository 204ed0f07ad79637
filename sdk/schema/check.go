package schema

import (
	"errors"
	"fmt"
	"math/big"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/zclconf/go-cty/cty"

	"github.com/kwarp-dev/kwarp/sdk/glob"
)

// problem is a failed check, before it knows where in the file it is.
type problem struct {
	summary, detail string
	warning         bool
}

func errorf(summary, format string, args ...any) *problem {
	return &problem{summary: summary, detail: fmt.Sprintf(format, args...)}
}

// forEachElement calls fn with the value itself, or each element of a list or map (with its
// key).
func forEachElement(a *Attribute, v cty.Value, fn func(key string, ev cty.Value)) {
	if v.IsNull() || !v.IsKnown() {
		return
	}
	if !v.Type().IsListType() && !v.Type().IsMapType() {
		fn("", v)
		return
	}
	for it := v.ElementIterator(); it.Next(); {
		k, ev := it.Element()
		key := ""
		if k.Type() == cty.String {
			key = k.AsString()
		}
		fn(key, ev)
	}
}

// checkElement runs the attribute's enum and check on one value of its element type.
func checkElement(a *Attribute, v cty.Value) *problem {
	if v.IsNull() {
		return errorf(fmt.Sprintf("Invalid value for %q", a.Name), "null is not allowed in %q.", a.Name)
	}
	if !v.IsKnown() {
		return nil
	}
	switch v.Type() {
	case cty.String:
		s := v.AsString()
		if len(a.Enum) > 0 && !contains(a.Enum, s) {
			return errorf(fmt.Sprintf("Invalid value for %q", a.Name), "%q is not allowed here: %q must be %s.%s",
				s, a.Name, oneOf(a.Enum), didYouMean(s, a.Enum))
		}
		return checkString(a.Check, s, a.Name)
	case cty.Number:
		return checkNumber(a.Check, v.AsBigFloat(), a.Name)
	}
	return nil
}

func oneOf(values []string) string {
	if len(values) == 1 {
		return fmt.Sprintf("%q", values[0])
	}
	return "one of " + quoteList(values, "or")
}

// checkKey runs a key check on a map key, which is always a string; port checks read it as a
// decimal number.
func checkKey(c Check, key, attr string) *problem {
	if numberCheck(c) {
		n, err := strconv.ParseInt(key, 10, 64)
		if err != nil {
			return errorf("Invalid port", "The key %q of %q is not a port: ports are whole numbers from %d to 65535.", key, attr, minPort(c))
		}
		return checkNumber(c, big.NewFloat(float64(n)), attr)
	}
	return checkString(c, key, attr)
}

func minPort(c Check) int {
	if c == CheckPortOrZero {
		return 0
	}
	return 1
}

func checkNumber(c Check, n *big.Float, attr string) *problem {
	switch c {
	case CheckPort, CheckPortOrZero:
		i, acc := n.Int64()
		if acc != big.Exact || !n.IsInt() || i < int64(minPort(c)) || i > 65535 {
			extra := ""
			if c == CheckPortOrZero {
				extra = ", or 0 to pick a free one"
			}
			return errorf("Invalid port", "%s is not a port: ports are whole numbers from 1 to 65535%s.", n.Text('g', -1), extra)
		}
	}
	return nil
}

func checkString(c Check, s, attr string) *problem {
	switch c {
	case CheckNonEmpty:
		if s == "" {
			return errorf(fmt.Sprintf("Empty value for %q", attr), "%q needs a value that is not empty.", attr)
		}
	case CheckPathGlob:
		if _, err := glob.Compile(glob.Path, s); err != nil {
			return globProblem("Invalid path pattern", s, err)
		}
		if strings.HasPrefix(s, "~") {
			return errorf("Invalid path pattern", "%q starts with \"~\", which kwarp does not expand: write the absolute path, such as \"/home/me/...\", or start with \"**/\".", s)
		}
		if !strings.HasPrefix(s, "/") && !strings.HasPrefix(s, "**") {
			return errorf("Invalid path pattern", "%q is relative. Path patterns are matched against the absolute paths the process opens, so they start with \"/\" (\"/etc/app/**\") or with \"**\" (\"**/.aws/**\").", s)
		}
		if strings.Contains(s, "{") && strings.Contains(s, ",") && strings.Contains(s, "}") {
			return &problem{warning: true, summary: "Braces in a path pattern",
				detail: fmt.Sprintf("%q: kwarp globs have no {a,b} alternatives, so the braces match themselves; write one pattern per alternative.", s)}
		}
	case CheckHostGlob:
		if _, err := glob.Compile(glob.Host, s); err != nil {
			return globProblem("Invalid host pattern", s, err)
		}
	case CheckEnvGlob:
		if _, err := glob.Compile(glob.Env, s); err != nil {
			return globProblem("Invalid environment variable pattern", s, err)
		}
	case CheckEnvName:
		switch {
		case s == "":
			return errorf("Invalid environment variable name", "An environment variable name cannot be empty.")
		case strings.ContainsAny(s, "=\x00"):
			return errorf("Invalid environment variable name", "%q: an environment variable name cannot contain \"=\" or NUL.", s)
		}
	case CheckCIDR:
		return checkCIDR(s)
	case CheckDuration:
		d, err := time.ParseDuration(s)
		if err != nil {
			return errorf("Invalid duration", "%q is not a duration: write a number with a unit, such as \"30s\", \"5m\" or \"1h30m\" (\"0\" alone is allowed).", s)
		}
		if d < 0 {
			return errorf("Invalid duration", "%q is negative; a duration here is how long to wait, so it is 0 or more.", s)
		}
	case CheckRegex:
		if _, err := regexp.Compile(s); err != nil {
			return errorf("Invalid regular expression", "%q does not compile as a regular expression (Go RE2 syntax): %v.", s, err)
		}
	case CheckSHA256:
		if len(s) != 64 || strings.Trim(strings.ToLower(s), "0123456789abcdef") != "" {
			return errorf("Invalid SHA-256 checksum", "%q is not a SHA-256 checksum: it must be 64 hexadecimal digits, as sha256sum prints them.", s)
		}
	}
	return nil
}

func globProblem(summary, s string, err error) *problem {
	var ge *glob.Error
	if errors.As(err, &ge) {
		return errorf(summary, "%q is not a valid %s pattern: %s.", s, ge.Kind, ge.Reason)
	}
	return errorf(summary, "%q: %v.", s, err)
}

func checkCIDR(s string) *problem {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		if a, aerr := netip.ParseAddr(s); aerr == nil {
			return errorf("Invalid subnet", "%q is an address, not a subnet: write %q for that address alone.", s, netip.PrefixFrom(a, a.BitLen()).String())
		}
		return errorf("Invalid subnet", "%q is not a subnet in CIDR notation, such as \"10.96.0.0/12\" or \"fd00::/8\".", s)
	}
	if m := p.Masked(); m != p {
		return &problem{warning: true, summary: "Subnet has host bits set",
			detail: fmt.Sprintf("%q has bits set after its /%d prefix, so it means %q; write that to say what you mean.", s, p.Bits(), m.String())}
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// didYouMean returns ` Did you mean "x"?` for the closest candidate within two edits
// (transpositions count once, case is ignored), or "".
func didYouMean(given string, candidates []string) string {
	best, bestDist := "", 3
	g := strings.ToLower(given)
	for _, c := range candidates {
		d := editDistance(g, strings.ToLower(c))
		if d < bestDist && d < utf8.RuneCountInString(given) {
			best, bestDist = c, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" Did you mean %q?", best)
}

// editDistance is the optimal string alignment distance: Levenshtein plus adjacent
// transpositions, the typos people make ("moed" for "mode").
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	if len(ra) > 64 || len(rb) > 64 {
		return 1 << 30 // nothing that long is a typo of a keyword
	}
	d := make([][]int, len(ra)+1)
	for i := range d {
		d[i] = make([]int, len(rb)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(ra); i++ {
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && ra[i-1] == rb[j-2] && ra[i-2] == rb[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(ra)][len(rb)]
}
