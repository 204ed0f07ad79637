// Command probe is the client half of kwarp's end-to-end tests: tests run it inside pods (with
// kubectl exec or client-go exec) to see the cluster from the inside, and compare the answers with
// what a process under kwarp sees on the developer's machine. Output goes to stdout, errors to
// stderr, and the exit status is 0 on success, 1 on failure and 2 on a usage error, so tests can
// assert on all three without parsing messages.
//
// Usage:
//
//	probe dns   [-timeout 5s] [-server HOST:PORT] [-net ip|ip4|ip6] NAME
//	probe dnsbench [-timeout 2m] [-server HOST:PORT] NAME N
//	probe http  [-timeout 5s] [-X METHOD] [-H "K: V"]... [-d BODY] [-h2c] URL
//	probe tcp   [-timeout 5s] HOST:PORT MESSAGE
//	probe udp   [-timeout 3s] HOST:PORT MESSAGE
//	probe sleep [-timeout 0]
//	probe env   NAME
//	probe cat   FILE
//
// Flags may come before or after the positional arguments; use "--" before an argument that
// starts with "-".
//
// dns resolves with Go's own resolver, which honours /etc/resolv.conf (search list, ndots) the
// way a static binary in a pod does, and prints one IP per line. -server sends the queries to
// that server instead of the ones in resolv.conf.
//
// dnsbench times lookups of NAME as dns makes them (Go's resolver, A and AAAA): one untimed,
// then N, each timed, and prints "lookups N", "mean-ns", "p50-ns" and "p99-ns" lines, so a
// benchmark can learn what one lookup costs inside the pod without the cost of getting there.
//
// http sends one request and prints the response body; a non-2xx status is a failure (the body
// is still printed). Proxy environment variables are ignored so the request goes where the URL
// says. -h2c speaks cleartext HTTP/2 with prior knowledge.
//
// tcp connects, writes MESSAGE and a newline, and prints every line it reads until the echo of
// MESSAGE arrives, so a banner line sent first by the server is printed too.
//
// udp sends MESSAGE as one datagram and prints the reply.
//
// env prints the variable's value (exit 1 when it is unset); cat prints a file. Both let a test
// read a pod's context from inside it, where the image has no shell.
//
// sleep blocks until SIGTERM or SIGINT (or -timeout, when not 0), which makes a long-running pod
// to exec into.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// options holds every subcommand's flags; each subcommand registers only the ones it uses.
type options struct {
	timeout time.Duration
	// http
	method  string
	headers headerFlag
	data    string
	h2c     bool
	// dns
	server  string
	network string
}

type command struct {
	name     string
	synopsis string
	// nargs is the exact number of positional arguments.
	nargs          int
	defaultTimeout time.Duration
	flags          func(fs *flag.FlagSet, o *options)
	run            func(ctx context.Context, o *options, args []string, stdout io.Writer) error
}

var commands = []command{
	{
		name: "dns", synopsis: "[-timeout 5s] [-server HOST:PORT] [-net ip|ip4|ip6] NAME",
		nargs: 1, defaultTimeout: 5 * time.Second,
		flags: func(fs *flag.FlagSet, o *options) {
			fs.StringVar(&o.server, "server", "", "DNS server to query instead of those in /etc/resolv.conf")
			fs.StringVar(&o.network, "net", "ip", "address family: ip, ip4 or ip6")
		},
		run: runDNS,
	},
	{
		name: "dnsbench", synopsis: "[-timeout 2m] [-server HOST:PORT] NAME N",
		nargs: 2, defaultTimeout: 2 * time.Minute,
		flags: func(fs *flag.FlagSet, o *options) {
			fs.StringVar(&o.server, "server", "", "DNS server to query instead of those in /etc/resolv.conf")
		},
		run: runDNSBench,
	},
	{
		name: "http", synopsis: `[-timeout 5s] [-X METHOD] [-H "K: V"]... [-d BODY] [-h2c] URL`,
		nargs: 1, defaultTimeout: 5 * time.Second,
		flags: func(fs *flag.FlagSet, o *options) {
			fs.StringVar(&o.method, "X", "", "request method (default GET, or POST with -d)")
			fs.Var(&o.headers, "H", `request header "Key: Value" (repeatable)`)
			fs.StringVar(&o.data, "d", "", "request body")
			fs.BoolVar(&o.h2c, "h2c", false, "use cleartext HTTP/2 with prior knowledge")
		},
		run: runHTTP,
	},
	{
		name: "tcp", synopsis: "[-timeout 5s] HOST:PORT MESSAGE",
		nargs: 2, defaultTimeout: 5 * time.Second,
		run: runTCP,
	},
	{
		name: "udp", synopsis: "[-timeout 3s] HOST:PORT MESSAGE",
		nargs: 2, defaultTimeout: 3 * time.Second,
		run: runUDP,
	},
	{
		name: "env", synopsis: "NAME",
		nargs: 1, run: runEnv,
	},
	{
		name: "cat", synopsis: "FILE",
		nargs: 1, run: runCat,
	},
	{
		name: "sleep", synopsis: "[-timeout 0]",
		nargs: 0, defaultTimeout: 0,
		run: runSleep,
	},
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage:")
	for _, c := range commands {
		fmt.Fprintf(w, "  probe %-8s %s\n", c.name, c.synopsis)
	}
}

func lookup(name string) *command {
	for i := range commands {
		if commands[i].name == name {
			return &commands[i]
		}
	}
	return nil
}

// parse turns the command line into a subcommand, its options and its positional arguments.
// Every error it returns is a usage error; cmd is set when the subcommand was recognised.
func parse(args []string, stderr io.Writer) (*command, *options, []string, error) {
	if len(args) == 0 {
		return nil, nil, nil, errors.New("missing subcommand")
	}
	cmd := lookup(args[0])
	if cmd == nil {
		if args[0] == "-h" || args[0] == "-help" || args[0] == "--help" || args[0] == "help" {
			return nil, nil, nil, flag.ErrHelp
		}
		return nil, nil, nil, fmt.Errorf("unknown subcommand %q", args[0])
	}
	o := &options{}
	fs := flag.NewFlagSet("probe "+cmd.name, flag.ContinueOnError)
	// The flag package would print its error before our usage; run prints it after, once.
	fs.SetOutput(io.Discard)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: probe %s %s\n", cmd.name, cmd.synopsis)
		fs.SetOutput(stderr)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
	}
	fs.DurationVar(&o.timeout, "timeout", cmd.defaultTimeout, "give up after this long")
	if cmd.flags != nil {
		cmd.flags(fs, o)
	}
	pos, err := parseInterspersed(fs, args[1:])
	if err != nil {
		return cmd, nil, nil, err
	}
	if len(pos) != cmd.nargs {
		fs.Usage()
		return cmd, nil, nil, fmt.Errorf("%s: want %d argument(s), got %d: %q", cmd.name, cmd.nargs, len(pos), pos)
	}
	if o.timeout < 0 {
		return cmd, nil, nil, fmt.Errorf("%s: negative -timeout %s", cmd.name, o.timeout)
	}
	return cmd, o, pos, nil
}

// parseInterspersed lets flags follow positional arguments, as in `probe http URL -H "K: V"`,
// which the flag package alone does not allow. Everything after "--" is positional.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if consumed := len(args) - len(rest); consumed > 0 && args[consumed-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cmd, o, pos, err := parse(args, stderr)
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(stderr, "probe:", err)
		}
		// A known subcommand has already printed its own usage.
		if cmd == nil {
			usage(stderr)
		}
		return exitUsage
	}
	if o.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.timeout)
		defer cancel()
	}
	if err := cmd.run(ctx, o, pos, stdout); err != nil {
		fmt.Fprintf(stderr, "probe %s: %v\n", cmd.name, err)
		return exitFailure
	}
	return exitOK
}

func runDNS(ctx context.Context, o *options, args []string, stdout io.Writer) error {
	switch o.network {
	case "ip", "ip4", "ip6":
	default:
		return fmt.Errorf("-net must be ip, ip4 or ip6, not %q", o.network)
	}
	ips, err := resolver(o.server).LookupIP(ctx, o.network, args[0])
	if err != nil {
		return err
	}
	for _, ip := range ips {
		fmt.Fprintln(stdout, ip)
	}
	return nil
}

// resolver is Go's own resolver, sending its queries to server when it is not "".
func resolver(server string) *net.Resolver {
	// PreferGo matters only when probe is built with cgo; the image's static build always uses
	// the Go resolver, and we want the same behaviour in unit tests.
	r := &net.Resolver{PreferGo: true}
	if server != "" {
		var d net.Dialer
		r.Dial = func(ctx context.Context, network, _ string) (net.Conn, error) {
			return d.DialContext(ctx, network, server)
		}
	}
	return r
}

func runDNSBench(ctx context.Context, o *options, args []string, stdout io.Writer) error {
	name := args[0]
	n, err := strconv.Atoi(args[1])
	if err != nil || n < 1 {
		return fmt.Errorf("N must be a positive number, not %q", args[1])
	}
	r := resolver(o.server)
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
	// nearest rank
	pct := func(p int) time.Duration { return lat[max((n*p+99)/100-1, 0)] }
	_, err = fmt.Fprintf(stdout, "lookups %d\nmean-ns %d\np50-ns %d\np99-ns %d\n", n, total.Nanoseconds()/int64(n),
		pct(50).Nanoseconds(), pct(99).Nanoseconds())
	return err
}

// headerFlag collects repeated -H flags.
type headerFlag []string

func (h *headerFlag) String() string { return strings.Join(*h, ", ") }

func (h *headerFlag) Set(v string) error {
	if k, _, ok := strings.Cut(v, ":"); !ok || strings.TrimSpace(k) == "" {
		return fmt.Errorf("header %q is not \"Key: Value\"", v)
	}
	*h = append(*h, v)
	return nil
}

func runHTTP(ctx context.Context, o *options, args []string, stdout io.Writer) error {
	method := o.method
	var body io.Reader
	if o.data != "" {
		body = strings.NewReader(o.data)
		if method == "" {
			method = http.MethodPost
		}
	}
	if method == "" {
		method = http.MethodGet
	}
	req, err := http.NewRequestWithContext(ctx, method, args[0], body)
	if err != nil {
		return err
	}
	for _, h := range o.headers {
		k, v, _ := strings.Cut(h, ":")
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		// net/http sends req.Host, not a Host entry in the header map.
		if strings.EqualFold(k, "Host") {
			req.Host = v
			continue
		}
		req.Header.Add(k, v)
	}
	// Unlike http.DefaultTransport, no ProxyFromEnvironment: the request must go where the URL says.
	tr := &http.Transport{}
	if o.h2c {
		tr.Protocols = new(http.Protocols)
		tr.Protocols.SetUnencryptedHTTP2(true)
	}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(stdout, resp.Body); err != nil {
		return fmt.Errorf("reading body: %w", err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("%s %s: %s", method, args[0], resp.Status)
	}
	return nil
}

func runTCP(ctx context.Context, o *options, args []string, stdout io.Writer) error {
	addr, msg := args[0], args[1]
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	// Closing the connection is what interrupts a blocked read when ctx ends (SIGTERM without a
	// timeout, for example).
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	if _, err := io.WriteString(c, msg+"\n"); err != nil {
		return err
	}
	want := msg + "\n"
	var got strings.Builder
	r := bufio.NewReader(c)
	for {
		line, err := r.ReadString('\n')
		// Partial lines are printed too, so a failure still shows what did arrive.
		io.WriteString(stdout, line)
		got.WriteString(line)
		if err == nil {
			s := got.String()
			if s == want || strings.HasSuffix(s, "\n"+want) {
				return nil
			}
			continue
		}
		if ctx.Err() != nil || errors.Is(err, os.ErrDeadlineExceeded) {
			return fmt.Errorf("no echo of %q from %s within %s (read %q)", msg, addr, o.timeout, got.String())
		}
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("%s closed the connection before echoing %q (read %q)", addr, msg, got.String())
		}
		return err
	}
}

func runUDP(ctx context.Context, o *options, args []string, stdout io.Writer) error {
	addr, msg := args[0], args[1]
	var d net.Dialer
	c, err := d.DialContext(ctx, "udp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	if _, err := io.WriteString(c, msg); err != nil {
		return err
	}
	buf := make([]byte, 65535)
	n, err := c.Read(buf)
	if err != nil {
		if ctx.Err() != nil || errors.Is(err, os.ErrDeadlineExceeded) {
			return fmt.Errorf("no reply from %s within %s", addr, o.timeout)
		}
		return err
	}
	reply := buf[:n]
	stdout.Write(reply)
	if n == 0 || reply[n-1] != '\n' {
		io.WriteString(stdout, "\n")
	}
	return nil
}

func runSleep(ctx context.Context, _ *options, _ []string, _ io.Writer) error {
	<-ctx.Done()
	// Being told to stop (or reaching -timeout) is the expected way for sleep to end.
	return nil
}

func runEnv(_ context.Context, _ *options, args []string, stdout io.Writer) error {
	v, ok := os.LookupEnv(args[0])
	if !ok {
		return fmt.Errorf("%s is not set", args[0])
	}
	_, err := fmt.Fprintln(stdout, v)
	return err
}

func runCat(_ context.Context, _ *options, args []string, stdout io.Writer) error {
	f, err := os.Open(args[0])
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(stdout, f)
	return err
}
