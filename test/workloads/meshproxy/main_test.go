package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

func TestPorts(t *testing.T) {
	oln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	aln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, oln, aln) }()

	tests := []struct {
		name  string
		check func(t *testing.T)
	}{
		{"outbound accepts then closes", func(t *testing.T) {
			c, err := net.Dial("tcp", oln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetReadDeadline(time.Now().Add(3 * time.Second))
			if n, err := c.Read(make([]byte, 1)); err != io.EOF {
				t.Errorf("read = %d, %v; want EOF", n, err)
			}
		}},
		{"admin answers 200 meshproxy on any path", func(t *testing.T) {
			for _, p := range []string{"/", "/stats/prometheus"} {
				resp, err := http.Get("http://" + aln.Addr().String() + p)
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 || string(body) != "meshproxy" {
					t.Errorf("%s: %d %q", p, resp.StatusCode, body)
				}
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, tt.check)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("serve: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("serve did not return after cancel")
	}
	for _, ln := range []net.Listener{oln, aln} {
		if c, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second); err == nil {
			c.Close()
			t.Errorf("%s still accepting after shutdown", ln.Addr())
		}
	}
}

func TestRunRejectsBadFlags(t *testing.T) {
	tests := []struct {
		name string
		args []string
	}{
		{"stray argument", []string{"x"}},
		{"unknown flag", []string{"-nope"}},
		{"bad address", []string{"-outbound", "127.0.0.1:0", "-admin", "127.0.0.1:notaport"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := run(ctx, tt.args, io.Discard); err == nil {
				t.Error("run succeeded")
			}
		})
	}
}
