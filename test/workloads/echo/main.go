// Command echo is a TCP and UDP echo server used as an end-to-end test workload.
//
// Usage:
//
//	echo [-tcp ADDR] [-udp ADDR] [-banner TEXT]
//
// -tcp defaults to ":7000" and -udp to ":7001"; an empty address turns that side off. With a
// banner (from -banner, or $ECHO_BANNER when the flag is not given) every TCP connection starts
// with "TEXT\n" and every UDP reply is prefixed with "TEXT ". Tests set the banner to the pod name
// so they can tell whether the pod or a process on the developer's machine answered.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"sync"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "echo:", err)
		os.Exit(1)
	}
}

type config struct {
	tcp, udp, banner string
}

func parseFlags(args []string) (config, error) {
	var c config
	fs := flag.NewFlagSet("echo", flag.ContinueOnError)
	fs.StringVar(&c.tcp, "tcp", ":7000", "TCP address to echo on (empty disables)")
	fs.StringVar(&c.udp, "udp", ":7001", "UDP address to echo on (empty disables)")
	fs.StringVar(&c.banner, "banner", os.Getenv("ECHO_BANNER"), "text sent first on each TCP connection and before each UDP reply")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if c.tcp == "" && c.udp == "" {
		return c, errors.New("both -tcp and -udp are empty; nothing to do")
	}
	return c, nil
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	c, err := parseFlags(args)
	if err != nil {
		return err
	}
	// Listen on both before serving either, so a bad address fails startup instead of leaving a
	// half-working server that passes a TCP readiness probe.
	var ln net.Listener
	var pc net.PacketConn
	if c.tcp != "" {
		if ln, err = net.Listen("tcp", c.tcp); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "echo: tcp on %s banner=%q\n", ln.Addr(), c.banner)
	}
	if c.udp != "" {
		if pc, err = net.ListenPacket("udp", c.udp); err != nil {
			if ln != nil {
				ln.Close()
			}
			return err
		}
		fmt.Fprintf(stdout, "echo: udp on %s banner=%q\n", pc.LocalAddr(), c.banner)
	}

	var wg sync.WaitGroup
	errc := make(chan error, 2)
	if ln != nil {
		wg.Go(func() { errc <- serveTCP(ctx, ln, c.banner) })
	}
	if pc != nil {
		wg.Go(func() { errc <- serveUDP(ctx, pc, c.banner) })
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		if err != nil {
			return err
		}
	}
	return nil
}

// serveTCP echoes every connection on ln until ctx is done, then closes ln and every open
// connection so that exit is not held up by idle clients.
func serveTCP(ctx context.Context, ln net.Listener, banner string) error {
	var (
		mu    sync.Mutex
		conns = map[net.Conn]struct{}{}
		wg    sync.WaitGroup
	)
	stop := context.AfterFunc(ctx, func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for c := range conns {
			c.Close()
		}
	})
	defer stop()
	defer wg.Wait()

	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return err
		}
		mu.Lock()
		if ctx.Err() != nil {
			mu.Unlock()
			c.Close()
			return nil
		}
		conns[c] = struct{}{}
		mu.Unlock()
		wg.Go(func() {
			defer func() {
				mu.Lock()
				delete(conns, c)
				mu.Unlock()
				c.Close()
			}()
			if banner != "" {
				if _, err := io.WriteString(c, banner+"\n"); err != nil {
					return
				}
			}
			// Errors here are the client's business (reset, timeout); the server carries on.
			io.Copy(c, c)
		})
	}
}

// maxDatagram is the largest UDP payload; a smaller buffer would silently truncate.
const maxDatagram = 65535

// serveUDP answers each datagram with its content, prefixed by "banner " when banner is set.
func serveUDP(ctx context.Context, pc net.PacketConn, banner string) error {
	stop := context.AfterFunc(ctx, func() { pc.Close() })
	defer stop()
	prefix := ""
	if banner != "" {
		prefix = banner + " "
	}
	buf := make([]byte, maxDatagram)
	out := make([]byte, 0, len(prefix)+maxDatagram)
	for {
		n, addr, err := pc.ReadFrom(buf)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, net.ErrClosed) {
				return err
			}
			// Transient errors (e.g. an ICMP error queued by an earlier reply) must not stop the
			// server.
			continue
		}
		out = append(append(out[:0], prefix...), buf[:n]...)
		// The client may be gone already; that is no reason to stop answering others.
		pc.WriteTo(out, addr)
	}
}
