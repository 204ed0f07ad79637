// Package splice copies two connections into each other, the way kwarp carries a TCP
// connection across its hops (the core, the tunnels, the agent): each direction ends on its
// own, so half-closed TCP (send, shut down writing, read the answer) works end to end.
package splice

import (
	"io"
	"sync"
	"time"
)

// Conns copies a and b into each other until both directions have ended, then closes both.
// A direction ends at EOF, which is passed on as a half-close of the other side (CloseWrite);
// an error, or a side that cannot half-close, ends both. aToB and bToA count the bytes.
//
// grace > 0 bounds how long b's direction may go on once a's has ended: then both are
// closed. It is for a b that may never pass a half-close on (a port-forward stream), where a
// finished a would otherwise keep the other end waiting. 0: no bound.
func Conns(a, b io.ReadWriteCloser, grace time.Duration) (aToB, bToA int64) {
	var once sync.Once
	closeBoth := func() {
		once.Do(func() {
			a.Close()
			b.Close()
		})
	}
	defer closeBoth()
	fromA, fromB := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(fromA)
		aToB = copyHalf(b, a, closeBoth)
	}()
	go func() {
		defer close(fromB)
		bToA = copyHalf(a, b, closeBoth)
	}()
	select {
	case <-fromB:
		<-fromA
	case <-fromA:
		if grace <= 0 {
			<-fromB
			break
		}
		select {
		case <-fromB:
		case <-time.After(grace):
			closeBoth()
			<-fromB
		}
	}
	return aToB, bToA
}

// copyHalf copies src to dst and passes src's end on as dst's half-close.
func copyHalf(dst, src io.ReadWriteCloser, closeBoth func()) int64 {
	buf := make([]byte, 64<<10)
	n, err := io.CopyBuffer(dst, src, buf)
	if err != nil {
		closeBoth()
		return n
	}
	if cw, ok := dst.(interface{ CloseWrite() error }); !ok || cw.CloseWrite() != nil {
		closeBoth() // no half-close to pass the end on: the whole connection ends
	}
	return n
}
