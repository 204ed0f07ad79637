// Command meshproxy is a stand-in for a service-mesh sidecar such as istio-proxy. The sample
// Deployment runs it as its first container so that end-to-end tests prove kwarp skips mesh
// sidecars when it picks a pod's default container. It does no proxying.
//
// Usage:
//
//	meshproxy [-outbound ADDR] [-admin ADDR]
//
// -outbound (default ":15001") accepts TCP connections and closes them at once, like a proxy port
// with no routes. -admin (default ":15090") answers every HTTP request with 200 "meshproxy", so
// it can be told apart from the application. It runs until SIGTERM.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "meshproxy:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("meshproxy", flag.ContinueOnError)
	outbound := fs.String("outbound", ":15001", "TCP address that accepts and closes connections")
	admin := fs.String("admin", ":15090", "HTTP address that answers 200 meshproxy")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	oln, err := net.Listen("tcp", *outbound)
	if err != nil {
		return err
	}
	aln, err := net.Listen("tcp", *admin)
	if err != nil {
		oln.Close()
		return err
	}
	fmt.Fprintf(stdout, "meshproxy: outbound %s admin %s\n", oln.Addr(), aln.Addr())
	return serve(ctx, oln, aln)
}

// serve runs both ports until ctx is done. Either port failing ends both, because a half-alive
// sidecar would make tests flaky in confusing ways.
func serve(ctx context.Context, outbound, admin net.Listener) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	srv := &http.Server{Handler: http.HandlerFunc(adminHandler), ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 2)
	go func() {
		err := srv.Serve(admin)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		errc <- err
	}()
	go func() { errc <- acceptAndClose(ctx, outbound) }()

	// Both goroutines are waited for: acceptAndClose closes its listener from an AfterFunc
	// goroutine, so returning after the first would leave the outbound port open a moment.
	var first error
	pending := 2
	select {
	case first = <-errc:
		pending--
	case <-ctx.Done():
	}
	cancel()
	srv.Close()
	for ; pending > 0; pending-- {
		if err := <-errc; first == nil {
			first = err
		}
	}
	return first
}

func adminHandler(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	io.WriteString(w, "meshproxy")
}

func acceptAndClose(ctx context.Context, ln net.Listener) error {
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	defer ln.Close()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		c.Close()
	}
}
