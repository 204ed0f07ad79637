package h1

import (
	"bytes"
	"io"
	"testing"
	"testing/iotest"
)

func seeds(f *testing.F) {
	for _, m := range requestMessages {
		f.Add([]byte(m.in))
	}
	f.Add([]byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"))
	f.Add([]byte("GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"))
	f.Add([]byte("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"))
}

// FuzzParseRequestHead: any bytes, no panic; a head that parses is its own Raw.
func FuzzParseRequestHead(f *testing.F) {
	seeds(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		n, _ := HeadLen(b, 0)
		if n < 0 {
			n = len(b)
		}
		h, err := ParseRequestHead(b[:n])
		if err != nil {
			return
		}
		if h.Raw != string(b[:n]) {
			t.Fatalf("Raw %q != input %q", h.Raw, b[:n])
		}
		_, _ = h.Framing()
		_ = h.KeepAlive()
		_ = h.HasToken("Connection", "upgrade")
		_ = h.Values("host")
	})
}

// FuzzReader runs a stream of requests through PeekHead and CopyMessage as the router
// does: no panic, and what is written is exactly the input's start.
func FuzzReader(f *testing.F) {
	seeds(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		r := NewReader(iotest.HalfReader(bytes.NewReader(b)), 256)
		var out bytes.Buffer
		for range 100 {
			head, err := r.PeekHead()
			if err != nil {
				break
			}
			h, err := ParseRequestHead(head)
			if err != nil {
				break
			}
			fr, err := h.Framing()
			if err != nil {
				break
			}
			if err := r.CopyMessage(&out, len(head), fr); err != nil {
				break
			}
		}
		rest, _ := io.ReadAll(r)
		if got := append(out.Bytes(), rest...); !bytes.HasPrefix(b, out.Bytes()) || len(got) > len(b) {
			t.Fatalf("wrote %q, input %q", out.Bytes(), b)
		}
	})
}
