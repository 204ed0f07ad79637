package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

func startTCP(t *testing.T, banner string) (addr string, cancel func()) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serveTCP(ctx, ln, banner) }()
	return ln.Addr().String(), func() {
		stop()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("serveTCP: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("serveTCP did not return after cancel")
		}
	}
}

func TestTCP(t *testing.T) {
	tests := []struct {
		name   string
		banner string
		send   []string
		want   string
	}{
		{"pure echo", "", []string{"hello\n", "world\n"}, "hello\nworld\n"},
		{"banner first", "echo-7d9f-abc", []string{"hello\n"}, "echo-7d9f-abc\nhello\n"},
		{"binary and no newline", "", []string{"\x00\xff\x01"}, "\x00\xff\x01"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr, stop := startTCP(t, tt.banner)
			defer stop()
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			for _, s := range tt.send {
				if _, err := io.WriteString(c, s); err != nil {
					t.Fatal(err)
				}
			}
			// Half-close so the server finishes echoing and closes, letting ReadAll end.
			c.(*net.TCPConn).CloseWrite()
			got, err := io.ReadAll(c)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

// TestTCPConcurrentAndShutdown holds many connections open at once, then checks that cancelling
// closes them rather than waiting for clients to leave.
func TestTCPConcurrentAndShutdown(t *testing.T) {
	addr, stop := startTCP(t, "b")
	const n = 50
	conns := make([]net.Conn, n)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range conns {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns[i] = c
		wg.Go(func() {
			c.SetDeadline(time.Now().Add(5 * time.Second))
			r := bufio.NewReader(c)
			msg := fmt.Sprintf("conn-%d", i)
			fmt.Fprintf(c, "%s\n", msg)
			var lines []string
			for range 2 {
				l, err := r.ReadString('\n')
				if err != nil {
					errs <- err
					return
				}
				lines = append(lines, strings.TrimSuffix(l, "\n"))
			}
			if lines[0] != "b" || lines[1] != msg {
				errs <- fmt.Errorf("conn %d got %q", i, lines)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	stop()
	for _, c := range conns {
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err != io.EOF && !isReset(err) {
			t.Fatalf("after shutdown read = %v, want EOF", err)
		}
	}
}

func isReset(err error) bool { return err != nil && strings.Contains(err.Error(), "reset") }

func TestUDP(t *testing.T) {
	tests := []struct {
		name   string
		banner string
		send   []byte
		want   []byte
	}{
		{"pure echo", "", []byte("ping"), []byte("ping")},
		{"banner prefix", "echo-pod", []byte("ping"), []byte("echo-pod ping")},
		{"large datagram", "", bytes.Repeat([]byte{7}, 60000), bytes.Repeat([]byte{7}, 60000)},
		{"empty datagram", "x", []byte{}, []byte("x ")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pc, err := net.ListenPacket("udp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- serveUDP(ctx, pc, tt.banner) }()
			defer func() {
				cancel()
				if err := <-done; err != nil {
					t.Errorf("serveUDP: %v", err)
				}
			}()

			c, err := net.Dial("udp", pc.LocalAddr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(3 * time.Second))
			if _, err := c.Write(tt.send); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, maxDatagram)
			n, err := c.Read(buf)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(buf[:n], tt.want) {
				t.Errorf("got %d bytes %q..., want %d bytes", n, buf[:min(n, 20)], len(tt.want))
			}
		})
	}
}

func TestParseFlags(t *testing.T) {
	tests := []struct {
		name    string
		env     string
		args    []string
		want    config
		wantErr bool
	}{
		{"defaults", "", nil, config{tcp: ":7000", udp: ":7001"}, false},
		{"env banner", "from-env", nil, config{tcp: ":7000", udp: ":7001", banner: "from-env"}, false},
		{"flag banner wins", "from-env", []string{"-banner", "pod-1"}, config{tcp: ":7000", udp: ":7001", banner: "pod-1"}, false},
		{"udp disabled", "", []string{"-udp", ""}, config{tcp: ":7000"}, false},
		{"both disabled", "", []string{"-udp=", "-tcp="}, config{}, true},
		{"stray arg", "", []string{"x"}, config{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("ECHO_BANNER", tt.env)
			got, err := parseFlags(tt.args)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if !tt.wantErr && got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

// TestRunBadAddress makes sure a broken UDP address fails startup rather than leaving TCP up.
func TestRunBadAddress(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := run(ctx, []string{"-tcp", "127.0.0.1:0", "-udp", "127.0.0.1:notaport"}, io.Discard)
	if err == nil {
		t.Fatal("run succeeded with a bad -udp address")
	}
}

// TestRunStopsOnCancel is what SIGTERM does in a pod: run must return promptly and cleanly.
func TestRunStopsOnCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"-tcp", "127.0.0.1:0", "-udp", "127.0.0.1:0"}, io.Discard) }()
	time.Sleep(50 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("run: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("run did not return after cancel")
	}
}
