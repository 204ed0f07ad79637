// Command httpecho is an HTTP test workload: it answers every request with a JSON description of
// the request and remembers recent requests at /_received, so end-to-end tests can see exactly
// what reached it through kwarp. It speaks HTTP/1.1 and cleartext HTTP/2 (h2c, prior knowledge).
//
// Usage:
//
//	httpecho [-listen ADDR]
//
// -listen defaults to $HTTPECHO_LISTEN, or ":8080" when that is unset. The pod name in answers is
// $POD_NAME (or the hostname) and the namespace is $POD_NAMESPACE.
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
	listen, err := parseFlags(args)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	h := server.New(server.Config{Pod: podName(), Namespace: os.Getenv("POD_NAMESPACE"), Log: stdout})
	fmt.Fprintf(stdout, "httpecho: listening on %s\n", ln.Addr())
	return serve(ctx, ln, h)
}

func parseFlags(args []string) (listen string, err error) {
	fs := flag.NewFlagSet("httpecho", flag.ContinueOnError)
	fs.StringVar(&listen, "listen", envOr("HTTPECHO_LISTEN", ":8080"), "address to listen on")
	if err := fs.Parse(args); err != nil {
		return "", err
	}
	if fs.NArg() > 0 {
		return "", fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	return listen, nil
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
	// net/http serves h2c itself since Go 1.24, so no x/net dependency is needed. It accepts
	// prior-knowledge HTTP/2 only, not the "Upgrade: h2c" dance, which is what gRPC and Go
	// clients use.
	var protos http.Protocols
	protos.SetHTTP1(true)
	protos.SetUnencryptedHTTP2(true)
	return &http.Server{
		Handler:           h,
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
