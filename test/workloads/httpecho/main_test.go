package main

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/kwarp-dev/kwarp/test/workloads/httpecho/server"
)

func startServe(t *testing.T, h http.Handler) (addr string, cancel func() error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, ln, h) }()
	return ln.Addr().String(), func() error {
		stop()
		select {
		case err := <-done:
			return err
		case <-time.After(10 * time.Second):
			t.Fatal("serve did not return after cancel")
			return nil
		}
	}
}

func TestProtocols(t *testing.T) {
	addr, stop := startServe(t, server.New(server.Config{Pod: "p"}))
	defer stop()

	h2c := new(http.Protocols)
	h2c.SetUnencryptedHTTP2(true)
	h1 := new(http.Protocols)
	h1.SetHTTP1(true)
	tests := []struct {
		name      string
		protocols *http.Protocols
		wantProto string
	}{
		{"http1", h1, "HTTP/1.1"},
		{"h2c prior knowledge", h2c, "HTTP/2.0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := &http.Transport{Protocols: tt.protocols}
			defer tr.CloseIdleConnections()
			c := &http.Client{Transport: tr}
			// Two requests so that keep-alive (or stream reuse) is exercised: the second must come
			// from the same client port.
			var remotes []string
			for range 2 {
				resp, err := c.Post("http://"+addr+"/x", "text/plain", strings.NewReader("hello"))
				if err != nil {
					t.Fatal(err)
				}
				var r server.Record
				err = json.NewDecoder(resp.Body).Decode(&r)
				resp.Body.Close()
				if err != nil {
					t.Fatal(err)
				}
				if r.Proto != tt.wantProto || r.BodyBytes != 5 {
					t.Errorf("proto=%q body_bytes=%d, want %q 5", r.Proto, r.BodyBytes, tt.wantProto)
				}
				remotes = append(remotes, r.RemoteAddr)
			}
			if remotes[0] != remotes[1] {
				t.Errorf("connection not reused: %v", remotes)
			}
		})
	}
}

// TestGracefulShutdown checks that a request in flight when SIGTERM arrives still gets its answer.
func TestGracefulShutdown(t *testing.T) {
	entered := make(chan struct{})
	release := make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-release
		w.Write([]byte("done"))
	})
	addr, stop := startServe(t, h)

	type result struct {
		status int
		err    error
	}
	resc := make(chan result, 1)
	go func() {
		resp, err := http.Get("http://" + addr + "/")
		if err != nil {
			resc <- result{err: err}
			return
		}
		resp.Body.Close()
		resc <- result{status: resp.StatusCode}
	}()
	<-entered
	stopped := make(chan error, 1)
	go func() { stopped <- stop() }()
	// Give Shutdown time to close the listener before the handler finishes.
	time.Sleep(100 * time.Millisecond)
	if _, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		t.Error("listener still accepting after shutdown began")
	}
	close(release)
	if r := <-resc; r.err != nil || r.status != 200 {
		t.Errorf("in-flight request: status=%d err=%v", r.status, r.err)
	}
	if err := <-stopped; err != nil {
		t.Errorf("serve returned %v", err)
	}
}

func TestListenDefault(t *testing.T) {
	tests := []struct {
		name string
		env  string
		args []string
		want string
	}{
		{"default", "", nil, ":8080"},
		{"env", "127.0.0.1:9999", nil, "127.0.0.1:9999"},
		{"flag beats env", "127.0.0.1:9999", []string{"-listen", "127.0.0.1:1"}, "127.0.0.1:1"},
	}
	if _, err := parseFlags([]string{"stray"}); err == nil {
		t.Error("stray argument accepted")
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("HTTPECHO_LISTEN", tt.env)
			got, err := parseFlags(tt.args)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("listen = %q, want %q", got, tt.want)
			}
		})
	}
}
