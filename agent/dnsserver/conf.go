package dnsserver

import (
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/kwarp-dev/kwarp/agent/internal/inroot"
	"github.com/kwarp-dev/kwarp/agent/target"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Size limits of the files read from the target: far above any real file, small enough that a
// strange one cannot exhaust the agent or exceed a gRPC message.
const (
	maxResolvConf = 64 << 10
	maxHosts      = 1 << 20
)

// ReadFiles returns the target's /etc/resolv.conf and /etc/hosts, read inside its root (an
// absolute symlink there resolves in the container, as for its own processes); targetless
// (nil loc), the agent's own. A missing file is empty, as the C library treats it. Errors are
// gRPC statuses: a file the agent cannot read is its own trouble (FailedPrecondition), never
// an errno for the user's process, although one is wrapped.
func ReadFiles(loc target.Locator) (resolvConf, hosts []byte, err error) {
	resolvConf, hosts, err = readFiles(loc)
	if err == nil {
		return resolvConf, hosts, nil
	}
	if _, ok := status.FromError(err); ok {
		return nil, nil, err
	}
	return nil, nil, status.Error(codes.FailedPrecondition, err.Error())
}

func readFiles(loc target.Locator) (resolvConf, hosts []byte, err error) {
	if loc == nil {
		if resolvConf, err = readOwn("/etc/resolv.conf", maxResolvConf); err != nil {
			return nil, nil, err
		}
		hosts, err = readOwn("/etc/hosts", maxHosts)
		return resolvConf, hosts, err
	}
	p, err := target.Current(loc)
	if err != nil {
		return nil, nil, err
	}
	root, err := p.OpenRoot()
	if err != nil {
		return nil, nil, err
	}
	defer root.Close()
	if resolvConf, err = readIn(int(root.Fd()), "/etc/resolv.conf", maxResolvConf); err != nil {
		return nil, nil, err
	}
	hosts, err = readIn(int(root.Fd()), "/etc/hosts", maxHosts)
	return resolvConf, hosts, err
}

func readOwn(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read the agent's %s: %w", path, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit))
	if err != nil {
		return nil, fmt.Errorf("read the agent's %s: %w", path, err)
	}
	return b, nil
}

func readIn(root int, path string, limit int64) ([]byte, error) {
	b, err := inroot.ReadFile(root, path, limit)
	if errors.Is(err, unix.ENOENT) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read the target's %s: %w", path, err)
	}
	return b, nil
}

// Conf is what a resolv.conf says, read the way glibc reads it.
type Conf struct {
	Nameservers []netip.AddrPort // at most 3 (glibc's MAXNS), port 53
	Search      []string         // without trailing dots
	Ndots       int
	Timeout     time.Duration // per query and server
	Attempts    int           // rounds over the servers
	UseTCP      bool          // options use-vc
}

// Defaults of glibc when resolv.conf does not say.
const (
	defaultNdots    = 1
	defaultTimeout  = 5 * time.Second
	defaultAttempts = 2
	maxNameservers  = 3
)

// ParseResolvConf reads a resolv.conf. Lines it does not understand are ignored, as by the C
// library; with no nameserver line it queries the loopback, as glibc does.
func ParseResolvConf(b []byte) Conf {
	c := Conf{Ndots: defaultNdots, Timeout: defaultTimeout, Attempts: defaultAttempts}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || strings.HasPrefix(f[0], "#") || strings.HasPrefix(f[0], ";") {
			continue
		}
		switch f[0] {
		case "nameserver":
			if len(f) < 2 || len(c.Nameservers) >= maxNameservers {
				continue
			}
			if ip, err := netip.ParseAddr(f[1]); err == nil {
				c.Nameservers = append(c.Nameservers, netip.AddrPortFrom(ip, 53))
			}
		case "domain":
			c.Search = nil
			if len(f) >= 2 {
				c.Search = searchList(f[1:2])
			}
		case "search":
			c.Search = searchList(f[1:])
		case "options":
			for _, o := range f[1:] {
				c.option(o)
			}
		}
	}
	if len(c.Nameservers) == 0 {
		c.Nameservers = []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:53")}
	}
	return c
}

func searchList(f []string) []string {
	var s []string
	for _, d := range f {
		if strings.HasPrefix(d, "#") || strings.HasPrefix(d, ";") {
			break
		}
		if d = strings.TrimSuffix(d, "."); d != "" {
			s = append(s, d)
		}
	}
	return s
}

// option applies one "options" word; the bounds are glibc's.
func (c *Conf) option(o string) {
	name, val, _ := strings.Cut(o, ":")
	n, err := strconv.Atoi(val)
	num := err == nil && n >= 0
	switch {
	case name == "ndots" && num:
		c.Ndots = min(n, 15)
	case name == "timeout" && num:
		c.Timeout = time.Duration(max(min(n, 30), 1)) * time.Second
	case name == "attempts" && num:
		c.Attempts = max(min(n, 5), 1)
	case name == "use-vc" || name == "tcp":
		c.UseTCP = true
	}
}

// Hosts maps a lower-case name (no trailing dot) to its addresses in file order.
type Hosts map[string][]netip.Addr

// ParseHosts reads an /etc/hosts file; lines with an address that does not parse are skipped.
func ParseHosts(b []byte) Hosts {
	h := Hosts{}
	for _, line := range strings.Split(string(b), "\n") {
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		ip, err := netip.ParseAddr(f[0])
		if err != nil {
			continue
		}
		for _, name := range f[1:] {
			name = canonical(name)
			if name == "" || strings.HasSuffix(name, ".") {
				continue // "." or "a..": no name a program could look up
			}
			h[name] = append(h[name], ip)
		}
	}
	return h
}

// canonical is how names compare: case-insensitively and without a trailing dot.
func canonical(name string) string {
	return strings.ToLower(strings.TrimSuffix(name, "."))
}
