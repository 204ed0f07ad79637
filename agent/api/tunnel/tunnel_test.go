package tunnel

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

func TestHeaderRoundTrip(t *testing.T) {
	tok := NewToken()
	var b bytes.Buffer
	if err := WriteHeader(&b, tok); err != nil {
		t.Fatal(err)
	}
	if b.Len() != HeaderSize {
		t.Fatalf("header is %d bytes, want %d", b.Len(), HeaderSize)
	}
	var m [4]byte
	_, _ = io.ReadFull(&b, m[:])
	if m != Magic {
		t.Fatalf("magic %q", m)
	}
	got, err := ReadToken(&b)
	if err != nil || got != tok {
		t.Fatalf("token %v, %v; want %v", got, err, tok)
	}
	if NewToken() == tok {
		t.Fatal("two tokens are equal")
	}
}

func TestParseToken(t *testing.T) {
	tok := NewToken()
	if got, err := ParseToken(tok[:]); err != nil || got != tok {
		t.Fatalf("ParseToken = %v, %v", got, err)
	}
	if _, err := ParseToken([]byte{1, 2, 3}); err == nil {
		t.Fatal("a 3-byte token was accepted")
	}
}

func TestStatus(t *testing.T) {
	if err := ReadStatus(bytes.NewReader([]byte{byte(StatusOK)})); err != nil {
		t.Fatalf("OK status: %v", err)
	}
	err := ReadStatus(bytes.NewReader([]byte{byte(StatusUnknown)}))
	if !errors.Is(err, StatusUnknown) {
		t.Fatalf("unknown status: %v", err)
	}
	if err := ReadStatus(bytes.NewReader(nil)); err == nil {
		t.Fatal("no status byte was accepted")
	}
}

func TestDatagrams(t *testing.T) {
	var b bytes.Buffer
	msgs := [][]byte{[]byte("one"), {}, bytes.Repeat([]byte{7}, MaxDatagram)}
	for _, m := range msgs {
		if err := WriteDatagram(&b, m); err != nil {
			t.Fatal(err)
		}
	}
	if err := WriteDatagram(&b, make([]byte, MaxDatagram+1)); !errors.Is(err, ErrDatagramTooLarge) {
		t.Fatalf("oversized datagram: %v", err)
	}
	buf := make([]byte, MaxDatagram)
	for i, m := range msgs {
		n, err := ReadDatagram(&b, buf)
		if err != nil || !bytes.Equal(buf[:n], m) {
			t.Fatalf("datagram %d: %d bytes, %v", i, n, err)
		}
	}
	if _, err := ReadDatagram(&b, buf); err != io.EOF {
		t.Fatalf("after the last frame: %v, want EOF", err)
	}
	// cut mid-frame
	_ = WriteDatagram(&b, []byte("hello"))
	b.Truncate(b.Len() - 2)
	if _, err := ReadDatagram(&b, buf); err != io.ErrUnexpectedEOF {
		t.Fatalf("cut frame: %v", err)
	}
	// a frame larger than the buffer is skipped with an error, and the next one still reads
	_ = WriteDatagram(&b, []byte("0123456789"))
	_ = WriteDatagram(&b, []byte("ok"))
	if _, err := ReadDatagram(&b, make([]byte, 4)); err == nil {
		t.Fatal("a frame larger than the buffer was accepted")
	}
	if n, err := ReadDatagram(&b, buf); err != nil || string(buf[:n]) != "ok" {
		t.Fatalf("frame after a skipped one: %q, %v", buf[:n], err)
	}
}
