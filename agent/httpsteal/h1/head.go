// Package h1 reads HTTP/1.x messages off a byte stream the way a forwarding proxy needs
// them: heads found within a size bound, parsed, and kept as the exact bytes received;
// bodies copied to a writer by their framing (Content-Length, chunked with its trailer
// section, until close) as they arrive, never held whole. What is written is byte for byte
// what was read, so the next hop parses the very message the client sent.
//
// Parsing is strict where a lenient reading could frame a message differently from the
// next hop (RFC 9112's request-smuggling cases): Content-Length and Transfer-Encoding
// together, a Transfer-Encoding that does not end in chunked on a request, differing
// Content-Lengths, obs-fold, blanks before a colon, bare CRs and control characters are all
// ErrMalformed, and the caller hands such a connection on untouched instead of guessing.
// Lines may end in CRLF or a bare LF, and empty lines before a request line are skipped, as
// RFC 9112 allows.
package h1

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// ErrMalformed is the error, wrapped with the reason, of a message this package will not
// frame.
var ErrMalformed = errors.New("malformed HTTP/1 message")

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
}

// Field is one header field line.
type Field struct {
	Name, Value string
}

// Fields are a head's field lines in order.
type Fields []Field

// Values are the values of the fields called name, compared case-insensitively.
func (fs Fields) Values(name string) []string {
	var vs []string
	for _, f := range fs {
		if strings.EqualFold(f.Name, name) {
			vs = append(vs, f.Value)
		}
	}
	return vs
}

// Has reports whether a field called name is present.
func (fs Fields) Has(name string) bool {
	for _, f := range fs {
		if strings.EqualFold(f.Name, name) {
			return true
		}
	}
	return false
}

// HasToken reports whether token is an element of the comma-separated lists in the fields
// called name (Connection, Upgrade, Transfer-Encoding), case-insensitively.
func (fs Fields) HasToken(name, token string) bool {
	for _, f := range fs {
		if !strings.EqualFold(f.Name, name) {
			continue
		}
		for v := range strings.SplitSeq(f.Value, ",") {
			if strings.EqualFold(strings.TrimSpace(v), token) {
				return true
			}
		}
	}
	return false
}

// RequestHead is a parsed request line and header section.
type RequestHead struct {
	// Raw is the head exactly as received, empty lines before the request line and the
	// empty line at the end included; the strings below point into it.
	Raw          string
	Method       string
	Target       string
	Major, Minor int
	Fields
}

// ResponseHead is a parsed status line and header section.
type ResponseHead struct {
	Raw          string
	Major, Minor int
	Status       int
	Reason       string
	Fields
}

// ParseRequestHead parses a head that HeadLen delimited (b is the head, blank line
// included). The version may be any HTTP/d.d: whether to handle it is the caller's choice.
func ParseRequestHead(b []byte) (*RequestHead, error) {
	raw := string(b)
	h := &RequestHead{Raw: raw}
	rest := raw
	for len(rest) > 0 && (rest[0] == '\n' || rest[0] == '\r') {
		if rest[0] == '\r' && (len(rest) < 2 || rest[1] != '\n') {
			return nil, malformed("bare CR before the request line")
		}
		_, rest, _ = strings.Cut(rest, "\n")
	}
	line, rest, err := nextLine(rest)
	if err != nil {
		return nil, err
	}
	method, line, ok1 := strings.Cut(line, " ")
	target, version, ok2 := strings.Cut(line, " ")
	if !ok1 || !ok2 || !isToken(method) || target == "" {
		return nil, malformed("request line %q", truncate(line))
	}
	for i := 0; i < len(target); i++ {
		if c := target[i]; c <= ' ' || c == 0x7f {
			return nil, malformed("request target %q", truncate(target))
		}
	}
	if h.Major, h.Minor, ok1 = parseVersion(version); !ok1 {
		return nil, malformed("version %q", truncate(version))
	}
	h.Method, h.Target = method, target
	if h.Fields, err = parseFields(rest); err != nil {
		return nil, err
	}
	return h, nil
}

// ParseResponseHead parses a response head that HeadLen delimited.
func ParseResponseHead(b []byte) (*ResponseHead, error) {
	raw := string(b)
	h := &ResponseHead{Raw: raw}
	line, rest, err := nextLine(raw)
	if err != nil {
		return nil, err
	}
	version, line, _ := strings.Cut(line, " ")
	code, reason, _ := strings.Cut(line, " ")
	var ok bool
	if h.Major, h.Minor, ok = parseVersion(version); !ok || h.Major != 1 {
		return nil, malformed("status line version %q", truncate(version))
	}
	if len(code) != 3 || code[0] < '1' || code[0] > '9' {
		return nil, malformed("status code %q", truncate(code))
	}
	n, err := strconv.Atoi(code)
	if err != nil {
		return nil, malformed("status code %q", code)
	}
	h.Status, h.Reason = n, reason
	if h.Fields, err = parseFields(rest); err != nil {
		return nil, err
	}
	return h, nil
}

// nextLine splits off the first line, which must end in LF (CRLF or bare LF).
func nextLine(s string) (line, rest string, err error) {
	line, rest, ok := strings.Cut(s, "\n")
	if !ok {
		return "", "", malformed("unterminated line")
	}
	line = strings.TrimSuffix(line, "\r")
	if strings.IndexByte(line, '\r') >= 0 {
		return "", "", malformed("bare CR")
	}
	return line, rest, nil
}

func parseFields(s string) (Fields, error) {
	var fs Fields
	for {
		line, rest, err := nextLine(s)
		if err != nil {
			return nil, err
		}
		if line == "" {
			if rest != "" {
				return nil, malformed("bytes after the head")
			}
			return fs, nil
		}
		s = rest
		name, value, ok := strings.Cut(line, ":")
		if !ok {
			return nil, malformed("field line without a colon %q", truncate(line))
		}
		if !isToken(name) {
			// also catches obs-fold (a line that starts with a blank) and blanks before
			// the colon
			return nil, malformed("field name %q", truncate(name))
		}
		value = strings.Trim(value, " \t")
		for i := 0; i < len(value); i++ {
			if c := value[i]; c < ' ' && c != '\t' || c == 0x7f {
				return nil, malformed("control character in field %q", name)
			}
		}
		fs = append(fs, Field{Name: name, Value: value})
	}
}

func parseVersion(v string) (major, minor int, ok bool) {
	if len(v) != 8 || !strings.HasPrefix(v, "HTTP/") || v[6] != '.' || !isDigit(v[5]) || !isDigit(v[7]) {
		return 0, 0, false
	}
	return int(v[5] - '0'), int(v[7] - '0'), true
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// isToken reports whether s is an RFC 9110 token (methods, field names).
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x80 || !tchar[c] {
			return false
		}
	}
	return true
}

var tchar = func() (t [128]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-'a'+'A'] = true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()

func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

// maxLeadingBlanks bounds the empty lines skipped before a start line.
const maxLeadingBlanks = 1024

// HeadLen is the length of the head at the start of b — through the empty line that ends
// it, empty lines before the start line included — or -1 when b does not hold a whole head
// yet. from is where a previous call on a shorter b stopped (its second result); pass 0 the
// first time. The search never reads a byte twice, however the head arrives.
func HeadLen(b []byte, from int) (n, next int) {
	i := from
	if i == 0 {
		for i < len(b) && (b[i] == '\r' || b[i] == '\n') {
			i++
		}
		if i == len(b) {
			if i > maxLeadingBlanks {
				return i, 0 // not a head: ParseRequestHead says so
			}
			return -1, 0 // only empty lines so far: start over when more comes
		}
	}
	for {
		j := bytes.IndexByte(b[i:], '\n')
		if j < 0 {
			return -1, max(len(b), from)
		}
		k := i + j + 1 // just past the LF
		switch {
		case k < len(b) && b[k] == '\n':
			return k + 1, 0
		case k+1 < len(b) && b[k] == '\r' && b[k+1] == '\n':
			return k + 2, 0
		case k == len(b) || k+1 == len(b) && b[k] == '\r':
			return -1, i + j // resume at this LF
		}
		i = k
	}
}

// Kind is how a body is delimited.
type Kind uint8

// The kinds of body framing.
const (
	// None: no body.
	None Kind = iota
	// Length: Framing.N bytes.
	Length
	// Chunked: chunked transfer coding, trailer section included.
	Chunked
	// UntilClose: everything up to the end of the stream (a response without length).
	UntilClose
	// Tunnel: after the head the connection is no longer HTTP (a 2xx answer to CONNECT).
	Tunnel
)

// Framing is how a message's body is delimited.
type Framing struct {
	Kind Kind
	N    int64 // for Length
}

// Framing is how the request's body is delimited (RFC 9112 section 6.3). Transfer-Encoding
// with Content-Length, a Transfer-Encoding that does not end in chunked, a
// Transfer-Encoding on HTTP/1.0, and an invalid or ambiguous Content-Length are
// ErrMalformed.
func (h *RequestHead) Framing() (Framing, error) {
	if h.Has("Transfer-Encoding") {
		if h.Has("Content-Length") {
			return Framing{}, malformed("both Transfer-Encoding and Content-Length")
		}
		if h.Major == 1 && h.Minor == 0 {
			return Framing{}, malformed("Transfer-Encoding in an HTTP/1.0 request")
		}
		chunked, err := h.chunkedLast()
		if err != nil {
			return Framing{}, err
		}
		if !chunked {
			return Framing{}, malformed("request Transfer-Encoding does not end in chunked")
		}
		return Framing{Kind: Chunked}, nil
	}
	n, ok, err := h.contentLength()
	switch {
	case err != nil:
		return Framing{}, err
	case !ok || n == 0:
		return Framing{Kind: None}, nil
	}
	return Framing{Kind: Length, N: n}, nil
}

// KeepAlive reports whether the client may send another request after this one: HTTP/1.1
// without "Connection: close", or HTTP/1.0 with "Connection: keep-alive".
func (h *RequestHead) KeepAlive() bool { return keepAlive(h.Fields, h.Major, h.Minor) }

// KeepAlive reports whether the server keeps the connection open after this response.
func (h *ResponseHead) KeepAlive() bool { return keepAlive(h.Fields, h.Major, h.Minor) }

func keepAlive(fs Fields, major, minor int) bool {
	if fs.HasToken("Connection", "close") {
		return false
	}
	if major == 1 && minor == 0 {
		return fs.HasToken("Connection", "keep-alive")
	}
	return true
}

// Framing is how the response's body is delimited, for a response to a request with
// method (RFC 9112 section 6.3).
func (h *ResponseHead) Framing(method string) (Framing, error) {
	switch {
	case h.Status < 200 || h.Status == 204 || h.Status == 304 || method == "HEAD":
		return Framing{Kind: None}, nil
	case method == "CONNECT" && h.Status < 300:
		return Framing{Kind: Tunnel}, nil
	}
	if h.Has("Transfer-Encoding") {
		chunked, err := h.chunkedLast()
		if err != nil {
			return Framing{}, err
		}
		if chunked {
			return Framing{Kind: Chunked}, nil
		}
		return Framing{Kind: UntilClose}, nil
	}
	n, ok, err := h.contentLength()
	switch {
	case err != nil:
		return Framing{}, err
	case !ok:
		return Framing{Kind: UntilClose}, nil
	case n == 0:
		return Framing{Kind: None}, nil
	}
	return Framing{Kind: Length, N: n}, nil
}

// chunkedLast reports whether the transfer codings end in chunked; chunked anywhere else
// is malformed.
func (fs Fields) chunkedLast() (bool, error) {
	var codings []string
	for _, v := range fs.Values("Transfer-Encoding") {
		for c := range strings.SplitSeq(v, ",") {
			if c = strings.TrimSpace(c); c != "" {
				codings = append(codings, c)
			}
		}
	}
	for i, c := range codings {
		if strings.EqualFold(c, "chunked") && i != len(codings)-1 {
			return false, malformed("chunked is not the last transfer coding")
		}
	}
	return len(codings) > 0 && strings.EqualFold(codings[len(codings)-1], "chunked"), nil
}

// contentLength reads the Content-Length fields: one value, or the same value repeated.
func (fs Fields) contentLength() (n int64, ok bool, err error) {
	for _, v := range fs.Values("Content-Length") {
		for e := range strings.SplitSeq(v, ",") {
			e = strings.TrimSpace(e)
			if e == "" || len(e) > 18 {
				return 0, false, malformed("Content-Length %q", truncate(v))
			}
			var m int64
			for i := 0; i < len(e); i++ {
				if !isDigit(e[i]) {
					return 0, false, malformed("Content-Length %q", truncate(v))
				}
				m = m*10 + int64(e[i]-'0')
			}
			if ok && m != n {
				return 0, false, malformed("differing Content-Lengths")
			}
			n, ok = m, true
		}
	}
	return n, ok, nil
}

// CheckRequestStart looks at the start of a request head that may not be complete yet and
// returns an ErrMalformed error as soon as its first line cannot be a request line: bytes that
// are not HTTP then go to the app at once, as a server would answer them, instead of waiting
// for a blank line that never comes. nil means it may still become a request.
func CheckRequestStart(b []byte) error {
	s := string(b)
	for len(s) > 0 && (s[0] == '\n' || s[0] == '\r') {
		s = s[1:]
	}
	line, _, complete := strings.Cut(s, "\n")
	if complete {
		_, err := ParseRequestHead([]byte(line + "\n\r\n"))
		return err
	}
	method, _, spaced := strings.Cut(line, " ")
	if method == "" && !spaced {
		return nil
	}
	if !isToken(method) {
		return malformed("request line %q", truncate(line))
	}
	return nil
}
