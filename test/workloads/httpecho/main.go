// Command httpecho is an HTTP test workload: it answers every request with a JSON description of
// the request (including the body's length and SHA-256) and remembers recent requests at
// /_received, so end-to-end tests can see exactly what reached it through kwarp. It speaks
// HTTP/1.1 and cleartext HTTP/2 (h2c, both with prior knowledge and by "Upgrade: h2c"), and on
// the same port serves gRPC (the standard health service, with "x-served-by" header metadata)
// and a WebSocket echo at /ws; see package server.
//
// Usage:
//
//	httpecho [-listen ADDR] [-name NAME]
//
// -listen defaults to $HTTPECHO_LISTEN, or ":8080" when that is unset. The pod name in answers is
// -name, else $POD_NAME (or the hostname), and the namespace is $POD_NAMESPACE. -name matters
// when httpecho runs on a developer's machine under kwarp: it gets the pod's environment there,
// so without -name its answers could not be told from the pod's.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/h2c"

	"github.com/kwarp-dev/kwarp/test/workloads/httpecho/server"
)

// shutdownGrace bounds how long in-flight requests may delay exit. In a pod the kubelet kills us
// after terminationGracePeriodSeconds anyway; this matters when httpecho runs on a developer's
// machine or in a unit test.
const shutdownGrace = 5 * time.Second

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "httpecho:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	f, err := parseFlags(args)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", f.listen)
	if err != nil {
		return err
	}
	h := server.New(server.Config{Pod: f.name, Namespace: os.Getenv("POD_NAMESPACE"), Log: stdout})
	fmt.Fprintf(stdout, "httpecho: %s listening on %s\n", f.name, ln.Addr())
	return serve(ctx, ln, h)
}

type flags struct {
	listen string
	// name is the pod name in answers.
	name string
}

func parseFlags(args []string) (flags, error) {
	var f flags
	fs := flag.NewFlagSet("httpecho", flag.ContinueOnError)
	fs.StringVar(&f.listen, "listen", envOr("HTTPECHO_LISTEN", ":8080"), "address to listen on")
	fs.StringVar(&f.name, "name", "", "name to answer with (default $POD_NAME, or the hostname)")
	if err := fs.Parse(args); err != nil {
		return flags{}, err
	}
	if fs.NArg() > 0 {
		return flags{}, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if f.name == "" {
		f.name = podName()
	}
	return f, nil
}

// serve runs until ctx is done, then lets in-flight requests finish for up to shutdownGrace.
func serve(ctx context.Context, ln net.Listener, h http.Handler) error {
	srv := newHTTPServer(h)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	err := srv.Shutdown(sctx)
	if serr := <-errc; !errors.Is(serr, http.ErrServerClosed) {
		return serr
	}
	return err
}

func newHTTPServer(h http.Handler) *http.Server {
	// net/http serves h2c with prior knowledge itself since Go 1.24 (what gRPC and Go clients
	// use), but not the HTTP/1.1 "Upgrade: h2c" dance; h2c.NewHandler adds that. It takes over
	// the connection, so upgraded connections are not drained by Shutdown. The request that
	// asked for the upgrade reaches h as HTTP/1.1 (with its Upgrade header) and is answered on
	// HTTP/2 stream 1; later requests on that connection are HTTP/2.
	var protos http.Protocols
	protos.SetHTTP1(true)
	protos.SetUnencryptedHTTP2(true)
	return &http.Server{
		Handler:           h2c.NewHandler(h, &http2.Server{}),
		Protocols:         &protos,
		ReadHeaderTimeout: 30 * time.Second,
		ErrorLog:          log.New(os.Stderr, "httpecho: ", log.LstdFlags),
	}
}

func podName() string {
	if p := os.Getenv("POD_NAME"); p != "" {
		return p
	}
	h, _ := os.Hostname()
	return h
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}
