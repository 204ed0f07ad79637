// Package tunnel is the framing of the agent's data tunnels: the raw port-forward streams that
// carry an outgoing connection's bytes (see the Outgoing service in agent.proto). A tunnel
// arrives at the agent's one port, like its gRPC connections; the agent tells them apart by
// the first four bytes (Magic; gRPC starts with the HTTP/2 preface "PRI ").
//
//	client → agent: Magic, Token (16 bytes)
//	agent → client: one status byte (StatusOK, or why the tunnel was refused)
//	then TCP: the connection's bytes, both ways, until either side closes;
//	     UDP: datagrams, both ways, each a 2-byte big-endian length and the payload.
//
// The client may write right after the header, without waiting for the status: the agent
// reads nothing more until the tunnel is paired with its Connect.
//
// # Incoming tunnels
//
// An incoming connection (the Incoming service's IncomingConnection event) travels the other
// way on the same kind of tunnel. The agent picks the token and sends it in the event; the
// client opens a tunnel with it exactly as above, then writes one more byte saying whether it
// could hand the connection to the local process:
//
//	client → agent: Magic, Token (the event's), Delivered or NotDelivered
//	agent → client: StatusOK when it still wants the tunnel (else it closes it)
//	then the connection's bytes: agent → client what the pod's client sent,
//	     client → agent what the local process answers, until either side closes.
//
// Delivered means the client connected to the local process's listener; NotDelivered that
// nothing listens there, and the agent gives the connection to the deployed app instead (a
// steal) or drops the copy (a mirror). A tunnel that does not come within a few seconds
// counts as NotDelivered. For a mirrored copy the agent reads and discards what the local
// process answers: the deployed app answers the real client.
package tunnel

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
)

// Magic starts every tunnel.
var Magic = [4]byte{'K', 'W', 'T', '1'}

// Token names one connection: the client picks it, sends it in ConnectRequest and on the
// tunnel, and the agent pairs the two.
type Token [16]byte

// NewToken returns a random token.
func NewToken() Token {
	var t Token
	_, _ = rand.Read(t[:]) // crypto/rand.Read never fails (Go 1.24+)
	return t
}

func (t Token) String() string { return hex.EncodeToString(t[:4]) }

// ParseToken reads a token from ConnectRequest.token.
func ParseToken(b []byte) (Token, error) {
	var t Token
	if len(b) != len(t) {
		return t, fmt.Errorf("tunnel token of %d bytes, want %d", len(b), len(t))
	}
	copy(t[:], b)
	return t, nil
}

// Status is the agent's answer to a tunnel header.
type Status byte

const (
	StatusOK Status = iota
	// StatusUnknown: no Connect with this token arrived in time, or it failed.
	StatusUnknown
	// StatusRefused: the session is not allowed this connection (closed, or another
	// session's token).
	StatusRefused
)

func (s Status) Error() string {
	switch s {
	case StatusOK:
		return "ok"
	case StatusUnknown:
		return "the agent has no connection for this tunnel (its connect failed or timed out)"
	case StatusRefused:
		return "the agent refused the tunnel"
	}
	return fmt.Sprintf("tunnel status %d", byte(s))
}

// The byte a client writes after the header of an incoming tunnel.
const (
	// Delivered: the client connected to the local process; the bytes may flow.
	Delivered byte = 0
	// NotDelivered: nothing listens locally; the agent sends the connection to the app.
	NotDelivered byte = 1
)

// HeaderSize is the length of the client's header.
const HeaderSize = len(Magic) + len(Token{})

// WriteHeader writes the client's header.
func WriteHeader(w io.Writer, t Token) error {
	var b [HeaderSize]byte
	copy(b[:], Magic[:])
	copy(b[len(Magic):], t[:])
	_, err := w.Write(b[:])
	return err
}

// ReadToken reads the rest of a header whose magic the caller has already read and checked.
func ReadToken(r io.Reader) (Token, error) {
	var t Token
	if _, err := io.ReadFull(r, t[:]); err != nil {
		return t, fmt.Errorf("read tunnel token: %w", err)
	}
	return t, nil
}

// ReadStatus reads the agent's answer; a status other than StatusOK is returned as the error.
func ReadStatus(r io.Reader) error {
	var b [1]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return fmt.Errorf("read tunnel status: %w", err)
	}
	if s := Status(b[0]); s != StatusOK {
		return s
	}
	return nil
}

// MaxDatagram is the largest payload a UDP tunnel frame carries.
const MaxDatagram = 65535

// ErrDatagramTooLarge is returned for a payload that does not fit a frame.
var ErrDatagramTooLarge = errors.New("tunnel: datagram larger than 65535 bytes")

// WriteDatagram writes one datagram as a frame, in a single Write so that frames from
// concurrent writers do not interleave when w serialises its writes.
func WriteDatagram(w io.Writer, p []byte) error {
	if len(p) > MaxDatagram {
		return ErrDatagramTooLarge
	}
	b := make([]byte, 2+len(p))
	binary.BigEndian.PutUint16(b, uint16(len(p)))
	copy(b[2:], p)
	_, err := w.Write(b)
	return err
}

// ReadDatagram reads one frame into buf (which must hold MaxDatagram bytes to take any
// frame) and returns the payload's length. io.EOF means the tunnel ended between frames.
func ReadDatagram(r io.Reader, buf []byte) (int, error) {
	var h [2]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return 0, err
	}
	n := int(binary.BigEndian.Uint16(h[:]))
	if n > len(buf) {
		if _, err := io.CopyN(io.Discard, r, int64(n)); err != nil {
			return 0, noEOF(err)
		}
		return 0, fmt.Errorf("tunnel: datagram of %d bytes does not fit a %d-byte buffer", n, len(buf))
	}
	if _, err := io.ReadFull(r, buf[:n]); err != nil {
		return 0, noEOF(err)
	}
	return n, nil
}

// noEOF turns an EOF inside a frame into ErrUnexpectedEOF: the tunnel was cut mid-datagram.
func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}
