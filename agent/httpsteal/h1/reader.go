package h1

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
)

// DefaultMaxHead is the head size limit NewReader takes for 0.
const DefaultMaxHead = 64 << 10

const (
	initialBuffer = 4 << 10
	maxChunkLine  = 4 << 10 // a chunk-size line with its extensions
	copyBuffer    = 64 << 10
)

// ErrHeadTooLarge is PeekHead's error for a head longer than the Reader's limit.
var ErrHeadTooLarge = errors.New("HTTP/1 head too large")

// WriteError is a copy's error that came from the destination, not from the source.
type WriteError struct{ Err error }

func (e *WriteError) Error() string { return "write: " + e.Err.Error() }
func (e *WriteError) Unwrap() error { return e.Err }

var bufPool = sync.Pool{New: func() any { b := make([]byte, copyBuffer); return &b }}

// Reader reads messages from one direction of a connection. Its buffer starts small and
// grows to the head limit only for a head that needs it; bodies pass through it, or
// straight from the source to the destination, never whole.
//
// A Reader is not safe for concurrent use.
type Reader struct {
	src     io.Reader
	buf     []byte
	r, w    int // unread bytes are buf[r:w]
	scan    int // HeadLen's resume point, relative to r
	maxHead int
	limit   int // largest buffer
	err     error

	// during a copy: buf[pend:r] is consumed but not yet written to out
	out  io.Writer
	pend int
}

// NewReader reads from src with a head limit of maxHead bytes (DefaultMaxHead for 0).
func NewReader(src io.Reader, maxHead int) *Reader {
	if maxHead <= 0 {
		maxHead = DefaultMaxHead
	}
	return &Reader{src: src, maxHead: maxHead, limit: max(maxHead, maxChunkLine) + 1}
}

// Buffered is the number of bytes read from the source and not consumed.
func (r *Reader) Buffered() int { return r.w - r.r }

// Bytes are the buffered bytes, valid until the next call on the Reader.
func (r *Reader) Bytes() []byte { return r.buf[r.r:r.w] }

// Discard consumes n buffered bytes.
func (r *Reader) Discard(n int) {
	if n > r.w-r.r {
		panic("h1: Discard past the buffered bytes")
	}
	r.r += n
	r.scan = 0
}

// Read reads the buffered bytes, then from the source.
func (r *Reader) Read(p []byte) (int, error) {
	if r.r < r.w {
		n := copy(p, r.buf[r.r:r.w])
		r.Discard(n)
		return n, nil
	}
	if r.err != nil {
		return 0, r.err
	}
	return r.src.Read(p)
}

// Fill reads once from the source into the buffer; it fails only when nothing was read.
// An error that came with bytes is returned by the next call. A deadline error
// (os.ErrDeadlineExceeded) is returned but not kept: the next call reads again.
func (r *Reader) Fill() error {
	if r.err != nil {
		return r.err
	}
	if err := r.flush(); err != nil {
		return err
	}
	if r.r == r.w {
		r.r, r.w, r.pend = 0, 0, 0
	}
	if r.w == len(r.buf) {
		if r.r > 0 {
			n := copy(r.buf, r.buf[r.r:r.w])
			r.pend -= r.r
			r.r, r.w = 0, n
		}
		if r.w == len(r.buf) {
			if len(r.buf) >= r.limit {
				return ErrHeadTooLarge
			}
			nb := make([]byte, min(max(2*len(r.buf), initialBuffer), r.limit))
			copy(nb, r.buf[:r.w])
			r.buf = nb
		}
	}
	for range 100 {
		n, err := r.src.Read(r.buf[r.w:])
		r.w += n
		if err != nil {
			if n > 0 {
				if !errors.Is(err, os.ErrDeadlineExceeded) {
					r.err = err
				}
				return nil
			}
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				r.err = err // a deadline may be moved: not sticky
			}
			return err
		}
		if n > 0 {
			return nil
		}
	}
	r.err = io.ErrNoProgress
	return r.err
}

// Peek returns the next n bytes without consuming them, reading as needed; n must not be
// larger than the head limit.
func (r *Reader) Peek(n int) ([]byte, error) {
	for r.w-r.r < n {
		if err := r.Fill(); err != nil {
			return r.buf[r.r:r.w], err
		}
	}
	return r.buf[r.r : r.r+n], nil
}

// PeekHead returns the next head — the start line, the fields and the empty line, after
// any empty lines — without consuming it; the bytes are valid until the next call on the
// Reader. It returns io.EOF when the source ended cleanly before a head began,
// io.ErrUnexpectedEOF when it ended inside one, and ErrHeadTooLarge for a head longer than
// the limit; the bytes read stay buffered (Bytes) in every case.
func (r *Reader) PeekHead() ([]byte, error) {
	return r.PeekHeadChecked(nil)
}

// PeekHeadChecked is PeekHead that, each time it must wait for more bytes, first passes the
// bytes of the incomplete head to check (CheckRequestStart) and returns its error.
func (r *Reader) PeekHeadChecked(check func([]byte) error) ([]byte, error) {
	for {
		n, next := HeadLen(r.buf[r.r:r.w], r.scan)
		r.scan = next
		if n >= 0 {
			if n > r.maxHead {
				return nil, ErrHeadTooLarge
			}
			return r.buf[r.r : r.r+n], nil
		}
		if r.w-r.r >= r.maxHead {
			return nil, ErrHeadTooLarge
		}
		if check != nil && r.w > r.r {
			if err := check(r.buf[r.r:r.w]); err != nil {
				return nil, err
			}
		}
		if err := r.Fill(); err != nil {
			if err == io.EOF && r.w > r.r {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
	}
}

// CopyMessage writes to w the n bytes of a head that PeekHead returned and the body that
// follows it by f, exactly as read, and consumes them. Small messages go out in one write;
// bytes are written before the Reader waits for more, so a slow stream flows as it comes.
// For UntilClose and Tunnel it copies until the source ends, which is then no error.
//
// Errors: a *WriteError when w failed; ErrMalformed for a chunked body that does not
// parse (what came before the fault has been written); io.ErrUnexpectedEOF when the source
// ended before the body did; else the source's error.
func (r *Reader) CopyMessage(w io.Writer, n int, f Framing) error {
	r.out, r.pend = w, r.r
	r.Discard(n)
	err := r.copyBody(f)
	if ferr := r.flush(); err == nil {
		err = ferr
	}
	r.out = nil
	return err
}

// CopyBody is CopyMessage for a body whose head was consumed or replaced.
func (r *Reader) CopyBody(w io.Writer, f Framing) error {
	return r.CopyMessage(w, 0, f)
}

func (r *Reader) copyBody(f Framing) error {
	switch f.Kind {
	case None:
		return nil
	case Length:
		return r.copyN(f.N)
	case Chunked:
		return r.copyChunked()
	case UntilClose, Tunnel:
		err := r.copyN(-1)
		if err == io.ErrUnexpectedEOF {
			return nil
		}
		return err
	}
	return fmt.Errorf("h1: unknown framing %d", f.Kind)
}

// flush writes the consumed bytes not written yet.
func (r *Reader) flush() error {
	if r.out == nil || r.pend == r.r {
		return nil
	}
	p := r.buf[r.pend:r.r]
	r.pend = r.r
	if _, err := r.out.Write(p); err != nil {
		return &WriteError{err}
	}
	return nil
}

// copyN copies n bytes (n < 0: until the source ends) of body: the buffered ones, then
// straight from the source.
func (r *Reader) copyN(n int64) error {
	if b := int64(r.w - r.r); b > 0 {
		take := b
		if n >= 0 {
			take = min(b, n)
			n -= take
		}
		r.r += int(take)
	}
	if n == 0 {
		return nil
	}
	if err := r.flush(); err != nil {
		return err
	}
	if r.err != nil {
		return unexpected(r.err)
	}
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	for n != 0 {
		p := buf
		if n > 0 && int64(len(p)) > n {
			p = p[:n]
		}
		m, err := r.src.Read(p)
		if m > 0 {
			if _, werr := r.out.Write(p[:m]); werr != nil {
				return &WriteError{werr}
			}
			if n > 0 {
				n -= int64(m)
			}
		}
		if err != nil {
			if n == 0 && err == io.EOF {
				err = nil
			}
			r.err = err
			return unexpected(err)
		}
	}
	return nil
}

func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// line returns the length of the next line, LF included, reading as needed; a line longer
// than limit is malformed.
func (r *Reader) line(limit int) (int, error) {
	for i := r.r; ; {
		for ; i < r.w; i++ {
			if r.buf[i] == '\n' {
				return i + 1 - r.r, nil
			}
		}
		if i-r.r >= limit {
			return 0, malformed("line longer than %d bytes in a chunked body", limit)
		}
		off := i - r.r
		if err := r.Fill(); err != nil {
			return 0, unexpected(err)
		}
		i = r.r + off
	}
}

func (r *Reader) copyChunked() error {
	for {
		n, err := r.line(maxChunkLine)
		if err != nil {
			return err
		}
		size, err := chunkSize(r.buf[r.r : r.r+n])
		if err != nil {
			return err
		}
		r.r += n
		if size == 0 {
			return r.copyTrailers()
		}
		if err := r.copyN(size); err != nil {
			return err
		}
		if n, err = r.line(2); err != nil {
			return err
		}
		if l := r.buf[r.r : r.r+n]; !(n == 1 || n == 2 && l[0] == '\r') {
			return malformed("chunk data not followed by CRLF")
		}
		r.r += n
	}
}

// copyTrailers copies the trailer section after the last chunk, up to its empty line.
func (r *Reader) copyTrailers() error {
	total := 0
	for {
		n, err := r.line(r.maxHead - total)
		if err != nil {
			return err
		}
		l := r.buf[r.r : r.r+n]
		r.r += n
		total += n
		if n == 1 || n == 2 && l[0] == '\r' {
			return nil
		}
		if n > 2 && l[n-2] == '\r' {
			l = l[:n-2]
		} else {
			l = l[:n-1]
		}
		if _, err := parseFields(string(l) + "\n\n"); err != nil {
			return err
		}
		if total >= r.maxHead {
			return malformed("trailer section too large")
		}
	}
}

// chunkSize parses a chunk-size line: hex digits, optional extensions, CRLF or LF.
func chunkSize(l []byte) (int64, error) {
	var n int64
	i := 0
	for ; i < len(l); i++ {
		c := l[i]
		var d byte
		switch {
		case '0' <= c && c <= '9':
			d = c - '0'
		case 'a' <= c && c <= 'f':
			d = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			d = c - 'A' + 10
		default:
			goto rest
		}
		if i >= 15 {
			return 0, malformed("chunk size too large")
		}
		n = n<<4 | int64(d)
	}
rest:
	if i == 0 {
		return 0, malformed("chunk size %q", truncate(string(l)))
	}
	tail := l[i:]
	for len(tail) > 0 && (tail[0] == ' ' || tail[0] == '\t') {
		tail = tail[1:]
	}
	switch {
	case len(tail) > 0 && tail[0] == ';':
		ext := bytes.TrimSuffix(tail[:len(tail)-1], []byte{'\r'})
		for _, c := range ext {
			if c < ' ' && c != '\t' || c == 0x7f {
				return 0, malformed("control character in a chunk extension")
			}
		}
	case string(tail) == "\r\n" || string(tail) == "\n":
	default:
		return 0, malformed("chunk size line %q", truncate(string(l)))
	}
	return n, nil
}
