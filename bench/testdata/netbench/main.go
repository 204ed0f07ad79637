// Command netbench is the client of BenchmarkOutgoing: it times network work from inside the
// process, so that a benchmark can run it under `kwarp exec` (or on the laptop against a
// port-forward) without the session start or the process start in the figure. It is built
// statically (CGO_ENABLED=0), so names are resolved by Go's own resolver.
//
//	netbench bulk  HOST:PORT BYTES       stream BYTES through a TCP echo server and back
//	netbench http  URL CONC N            N keep-alive GETs of URL from CONC workers
//	netbench dns   NAME N                N lookups of NAME
//	netbench conns HOST:PORT N           N sequential connect + read banner line + close
//
// Each prints "key value" lines, values in plain numbers (ns, bytes, per second):
//
//	bulk:  bytes B, ns T, MBps X (B / T, 1 MB = 10^6 bytes)
//	http:  requests N, ns T, rps X, p50-ns, p99-ns (of each request's latency)
//	dns:   lookups N, mean-ns, p50-ns, p99-ns
//	conns: conns N, ns T, mean-ns
//
// What is timed, and what is not:
//
// bulk connects and reads the echo server's banner line untimed, then writes BYTES (in 64 KiB
// writes, from one goroutine) while another reads them back; the time is from the first write
// to the last byte read. Every byte crosses the path twice, once each way, at the same time:
// MBps is the payload rate of a full-duplex stream, not the sum of both directions.
//
// http makes one untimed request on each of CONC connections first (so the connections and
// the name's resolution are not timed), then the N requests, CONC at a time on those
// connections. It fails on any status but 200.
//
// dns makes one untimed lookup, then N, each timed, with net.Resolver{PreferGo: true}.LookupIP
// "ip" (A and AAAA, the search list applied as the system's resolv.conf says) — exactly what
// `probe dnsbench` does inside the pod.
//
// conns resolves HOST once, untimed, and makes one untimed connection, then times N
// connections to the address it resolved: connect, read up to and including the first
// newline (the echo server's banner), close.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"sync"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	args := os.Args[2:]
	var err error
	switch os.Args[1] {
	case "bulk":
		need(args, 2)
		err = bulk(args[0], atoi(args[1]))
	case "http":
		need(args, 3)
		err = httpLoad(args[0], atoi(args[1]), atoi(args[2]))
	case "dns":
		need(args, 2)
		err = dns(args[0], atoi(args[1]))
	case "conns":
		need(args, 2)
		err = conns(args[0], atoi(args[1]))
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "netbench:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: netbench bulk HOST:PORT BYTES | http URL CONC N | dns NAME N | conns HOST:PORT N")
	os.Exit(2)
}

func need(args []string, n int) {
	if len(args) != n {
		usage()
	}
}

func atoi(s string) int {
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		fmt.Fprintf(os.Stderr, "netbench: %q is not a positive number\n", s)
		os.Exit(2)
	}
	return n
}

const timeout = 2 * time.Minute

// readLine reads until what it read ends with a newline: the echo server's banner line, after
// which the server sends nothing until it is sent something.
func readLine(c net.Conn) (string, error) {
	var line []byte
	b := make([]byte, 512)
	for {
		n, err := c.Read(b)
		line = append(line, b[:n]...)
		if len(line) > 0 && line[len(line)-1] == '\n' {
			return string(line), nil
		}
		if err != nil {
			return string(line), err
		}
	}
}

func bulk(addr string, size int) error {
	c, err := net.DialTimeout("tcp", addr, 30*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	if _, err := readLine(c); err != nil {
		return fmt.Errorf("banner: %w", err)
	}
	chunk := make([]byte, 64<<10)
	for i := range chunk {
		chunk[i] = byte(i)
	}
	werr := make(chan error, 1)
	start := time.Now()
	go func() {
		for left := size; left > 0; {
			n, err := c.Write(chunk[:min(left, len(chunk))])
			if err != nil {
				werr <- err
				return
			}
			left -= n
		}
		werr <- nil
	}()
	buf := make([]byte, 256<<10)
	got := 0
	for got < size {
		n, err := c.Read(buf)
		got += n
		if err != nil {
			return fmt.Errorf("read back %d of %d bytes: %w", got, size, err)
		}
	}
	took := time.Since(start)
	if err := <-werr; err != nil {
		return fmt.Errorf("write: %w", err)
	}
	if got != size {
		return fmt.Errorf("read back %d bytes, sent %d", got, size)
	}
	fmt.Printf("bytes %d\nns %d\nMBps %.2f\n", size, took.Nanoseconds(), float64(size)/took.Seconds()/1e6)
	return nil
}

func httpLoad(url string, conc, n int) error {
	tr := &http.Transport{
		Proxy:               nil, // the request goes where the URL says
		MaxIdleConnsPerHost: conc,
		MaxConnsPerHost:     conc,
		DisableCompression:  true,
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	get := func() error {
		resp, err := client.Get(url)
		if err != nil {
			return err
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err == nil && resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("GET %s: %s", url, resp.Status)
		}
		return err
	}
	// one untimed request on each connection, all at once so that CONC connections open
	var wg sync.WaitGroup
	errs := make([]error, conc)
	for w := range conc {
		wg.Go(func() { errs[w] = get() })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("warm-up: %w", err)
	}
	lat := make([]time.Duration, n)
	var next sync.Mutex
	i := 0
	start := time.Now()
	for w := range conc {
		wg.Go(func() {
			for {
				next.Lock()
				k := i
				i++
				next.Unlock()
				if k >= n {
					return
				}
				t := time.Now()
				if err := get(); err != nil {
					errs[w] = err
					return
				}
				lat[k] = time.Since(t)
			}
		})
	}
	wg.Wait()
	took := time.Since(start)
	if err := errors.Join(errs...); err != nil {
		return err
	}
	slices.Sort(lat)
	fmt.Printf("requests %d\nns %d\nrps %.1f\np50-ns %d\np99-ns %d\n", n, took.Nanoseconds(),
		float64(n)/took.Seconds(), pct(lat, 50).Nanoseconds(), pct(lat, 99).Nanoseconds())
	return nil
}

// pct is the p-th percentile of sorted (nearest rank).
func pct(sorted []time.Duration, p int) time.Duration {
	k := (len(sorted)*p + 99) / 100
	return sorted[max(k-1, 0)]
}

func dns(name string, n int) error {
	r := &net.Resolver{PreferGo: true}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if _, err := r.LookupIP(ctx, "ip", name); err != nil {
		return err
	}
	lat := make([]time.Duration, n)
	var total time.Duration
	for k := range n {
		t := time.Now()
		if _, err := r.LookupIP(ctx, "ip", name); err != nil {
			return err
		}
		lat[k] = time.Since(t)
		total += lat[k]
	}
	slices.Sort(lat)
	fmt.Printf("lookups %d\nmean-ns %d\np50-ns %d\np99-ns %d\n", n, total.Nanoseconds()/int64(n),
		pct(lat, 50).Nanoseconds(), pct(lat, 99).Nanoseconds())
	return nil
}

func conns(addr string, n int) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	ips, err := net.DefaultResolver.LookupHost(context.Background(), host)
	if err != nil {
		return err
	}
	addr = net.JoinHostPort(ips[0], port)
	one := func() error {
		c, err := net.DialTimeout("tcp", addr, 30*time.Second)
		if err != nil {
			return err
		}
		c.SetDeadline(time.Now().Add(30 * time.Second))
		line, err := readLine(c)
		c.Close()
		if err != nil {
			return fmt.Errorf("banner from %s: %q, %w", addr, line, err)
		}
		return nil
	}
	if err := one(); err != nil {
		return err
	}
	start := time.Now()
	for range n {
		if err := one(); err != nil {
			return err
		}
	}
	took := time.Since(start)
	fmt.Printf("conns %d\nns %d\nmean-ns %d\n", n, took.Nanoseconds(), took.Nanoseconds()/int64(n))
	return nil
}
