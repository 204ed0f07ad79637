package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"golang.org/x/net/websocket"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"

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

func TestFlags(t *testing.T) {
	host, _ := os.Hostname()
	tests := []struct {
		name       string
		env        string
		podEnv     string
		args       []string
		wantListen string
		wantName   string
	}{
		{"default", "", "", nil, ":8080", host},
		{"env", "127.0.0.1:9999", "", nil, "127.0.0.1:9999", host},
		{"flag beats env", "127.0.0.1:9999", "", []string{"-listen", "127.0.0.1:1"}, "127.0.0.1:1", host},
		{"pod name from env", "", "sample-abc", nil, ":8080", "sample-abc"},
		// Under kwarp the developer's copy sees the pod's POD_NAME; -name tells them apart.
		{"name flag beats pod env", "", "sample-abc", []string{"-name", "local"}, ":8080", "local"},
	}
	if _, err := parseFlags([]string{"stray"}); err == nil {
		t.Error("stray argument accepted")
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("HTTPECHO_LISTEN", tt.env)
			t.Setenv("POD_NAME", tt.podEnv)
			got, err := parseFlags(tt.args)
			if err != nil {
				t.Fatal(err)
			}
			if got.listen != tt.wantListen || got.name != tt.wantName {
				t.Errorf("listen, name = %q, %q, want %q, %q", got.listen, got.name, tt.wantListen, tt.wantName)
			}
		})
	}
}

// TestRunAnswersWithName runs httpecho as main does and checks that -name reaches the answers.
func TestRunAnswersWithName(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	t.Setenv("POD_NAME", "sample-abc")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"-listen", addr, "-name", "local-copy"}, io.Discard) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	}()
	var resp *http.Response
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if resp, err = http.Get("http://" + addr + "/x"); err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r server.Record
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		t.Fatal(err)
	}
	if r.Pod != "local-copy" || resp.Header.Get("X-Served-By") != "local-copy" {
		t.Errorf("pod = %q, X-Served-By = %q, want local-copy", r.Pod, resp.Header.Get("X-Served-By"))
	}
}

// TestH2CUpgrade speaks the HTTP/1.1 "Upgrade: h2c" exchange by hand, since Go's clients cannot,
// and checks that the request is answered on HTTP/2 stream 1 and recorded.
func TestH2CUpgrade(t *testing.T) {
	s := server.New(server.Config{Pod: "p"})
	addr, stop := startServe(t, s)
	defer stop()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, "POST /up HTTP/1.1\r\nHost: svc.example\r\nConnection: Upgrade, HTTP2-Settings\r\n"+
		"Upgrade: h2c\r\nHTTP2-Settings: \r\nContent-Length: 5\r\n\r\nhello")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("Upgrade") != "h2c" {
		t.Fatalf("answer to the upgrade: %s %v", resp.Status, resp.Header)
	}
	io.WriteString(c, http2.ClientPreface)
	fr := http2.NewFramer(c, br)
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	fr.WriteSettings()
	var status string
	var body []byte
	for done := false; !done; {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatal(err)
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				fr.WriteSettingsAck()
			}
		case *http2.MetaHeadersFrame:
			if f.StreamID == 1 {
				status = f.PseudoValue("status")
				done = f.StreamEnded()
			}
		case *http2.DataFrame:
			if f.StreamID == 1 {
				body = append(body, f.Data()...)
				done = f.StreamEnded()
			}
		}
	}
	var r server.Record
	if err := json.Unmarshal(body, &r); err != nil {
		t.Fatalf("body %q: %v", body, err)
	}
	if status != "200" || r.BodyBytes != 5 || r.Host != "svc.example" || r.Headers["Upgrade"][0] != "h2c" {
		t.Errorf("status %s, record %+v", status, r)
	}
	if n := len(s.Received()); n != 1 {
		t.Errorf("recorded %d requests, want 1", n)
	}
}

// TestGRPCAndWebSocket checks that the gRPC and WebSocket servers inside package server work
// through httpecho's own HTTP server, with the h2c handler in front.
func TestGRPCAndWebSocket(t *testing.T) {
	addr, stop := startServe(t, server.New(server.Config{Pod: "p"}))
	defer stop()
	conn, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var hdr metadata.MD
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Header(&hdr))
	if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING || len(hdr.Get(server.ServedByKey)) != 1 {
		t.Errorf("grpc health: %v %v, header %v", resp, err, hdr)
	}

	ws, err := websocket.Dial("ws://"+addr+server.WSPath, "", "http://"+addr)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	ws.SetDeadline(time.Now().Add(5 * time.Second))
	var reply string
	if err := websocket.Message.Send(ws, "hi"); err != nil {
		t.Fatal(err)
	}
	if err := websocket.Message.Receive(ws, &reply); err != nil || reply != "p: hi" {
		t.Errorf("websocket reply %q (%v)", reply, err)
	}
}
