package splice

import (
	"bytes"
	"io"
	"net"
	"testing"
	"time"
)

func TestSpliceHalfClose(t *testing.T) {
	// a client that sends, half-closes, and still reads the answer
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	backend, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer backend.Close()
	go func() {
		c, err := backend.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		all, _ := io.ReadAll(c) // until the client's half-close travels through
		c.Write(bytes.ToUpper(all))
	}()
	go func() {
		a, err := ln.Accept()
		if err != nil {
			return
		}
		b, err := net.Dial("tcp", backend.Addr().String())
		if err != nil {
			a.Close()
			return
		}
		Conns(a, b, 0)
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("half closed"))
	c.(*net.TCPConn).CloseWrite()
	got, err := io.ReadAll(c)
	if err != nil || string(got) != "HALF CLOSED" {
		t.Fatalf("answer after half-close %q, %v", got, err)
	}
}

// pair is a connected TCP pair on loopback.
func pair(t *testing.T) (a, b net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	a, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	if b, err = ln.Accept(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

// TestSpliceProcessEndsFirst: when the process closes its socket with the agent's side still
// open (a local server that died with a request in flight), the tunnel is closed within the
// grace period, not left for the pod's client to wait on.
func TestSpliceProcessEndsFirst(t *testing.T) {
	proc, local := pair(t)
	agent, tun := pair(t)
	done := make(chan struct{})
	go func() { Conns(local, tun, 200*time.Millisecond); close(done) }()
	proc.Write([]byte("partial"))
	proc.Close()
	agent.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(agent)
	if string(got) != "partial" || err != nil {
		t.Errorf("agent read %q %v, want the bytes then the end", got, err)
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("splice still running after the process closed and the grace passed")
	}
}

// TestSpliceAgentEndsFirst: the agent's end (the pod client finished sending) half-closes the
// process's side; the process may still answer, however long it takes.
func TestSpliceAgentEndsFirst(t *testing.T) {
	proc, local := pair(t)
	agent, tun := pair(t)
	done := make(chan struct{})
	go func() { Conns(local, tun, 50*time.Millisecond); close(done) }()
	agent.Write([]byte("request"))
	agent.(*net.TCPConn).CloseWrite()
	proc.SetReadDeadline(time.Now().Add(5 * time.Second))
	req, err := io.ReadAll(proc)
	if string(req) != "request" || err != nil {
		t.Fatalf("process read %q %v, want the request then EOF", req, err)
	}
	time.Sleep(200 * time.Millisecond) // longer than the grace: it does not apply this way
	proc.Write([]byte("answer"))
	proc.Close()
	agent.SetReadDeadline(time.Now().Add(5 * time.Second))
	if got, _ := io.ReadAll(agent); string(got) != "answer" {
		t.Errorf("agent read %q, want the late answer", got)
	}
	<-done
}
