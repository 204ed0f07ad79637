// Package portforward is `kwarp port-forward`'s local side: listeners on this machine whose
// connections (or datagrams) the agent opens from the pod to any HOST:PORT the pod reaches — a
// Service name, a pod IP, an external host — not only the pod's own ports.
package portforward

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// Spec is one -L: [[BIND:]LOCAL:]HOST:PORT[/udp].
type Spec struct {
	Bind      netip.Addr // where the listener binds; 127.0.0.1 unless given
	LocalPort int        // 0: a free port, said at start
	Host      string     // a name (resolved in the pod) or an IP
	Port      int
	UDP       bool
}

// Remote is HOST:PORT as the agent is asked for it.
func (s Spec) Remote() string { return net.JoinHostPort(s.Host, strconv.Itoa(s.Port)) }

// Network is "tcp" or "udp".
func (s Spec) Network() string {
	if s.UDP {
		return "udp"
	}
	return "tcp"
}

func (s Spec) String() string {
	return fmt.Sprintf("%s → %s/%s", netip.AddrPortFrom(s.Bind, uint16(s.LocalPort)), s.Remote(), s.Network())
}

// ParseSpec reads one -L value. Without LOCAL the local port is PORT, as kubectl's
// port-forward does; IPv6 addresses are written in brackets ([::1]:8080:[fd00::5]:80).
func ParseSpec(v string) (Spec, error) {
	s := Spec{Bind: netip.AddrFrom4([4]byte{127, 0, 0, 1})}
	fail := func(format string, args ...any) (Spec, error) {
		return Spec{}, fmt.Errorf("-L %q: "+format+"; write [[BIND:]LOCAL:]HOST:PORT[/udp], e.g. 8080:backend:80", append([]any{v}, args...)...)
	}
	body := v
	if i := strings.LastIndexByte(body, '/'); i >= 0 {
		switch body[i+1:] {
		case "udp":
			s.UDP = true
		case "tcp":
		default:
			return fail("unknown protocol %q (tcp or udp)", body[i+1:])
		}
		body = body[:i]
	}
	parts, err := splitColons(body)
	if err != nil {
		return fail("%v", err)
	}
	local := true
	switch len(parts) {
	case 2:
		local = false
	case 3:
		if s.LocalPort, err = port(parts[0], true); err != nil {
			return fail("local port: %v", err)
		}
		parts = parts[1:]
	case 4:
		if s.Bind, err = netip.ParseAddr(parts[0]); err != nil {
			return fail("bind address %q is not an IP address", parts[0])
		}
		if s.LocalPort, err = port(parts[1], true); err != nil {
			return fail("local port: %v", err)
		}
		parts = parts[2:]
	default:
		return fail("%d fields", len(parts))
	}
	if parts[0] == "" {
		return fail("no host")
	}
	s.Host = parts[0]
	if s.Port, err = port(parts[1], false); err != nil {
		return fail("port: %v", err)
	}
	if !local {
		s.LocalPort = s.Port
	}
	return s, nil
}

// splitColons splits on ':' outside brackets and drops the brackets.
func splitColons(s string) ([]string, error) {
	var parts []string
	var cur strings.Builder
	depth := 0
	for _, r := range s {
		switch {
		case r == '[':
			depth++
			if depth > 1 {
				return nil, fmt.Errorf("nested '['")
			}
		case r == ']':
			if depth == 0 {
				return nil, fmt.Errorf("']' without '['")
			}
			depth--
		case r == ':' && depth == 0:
			parts = append(parts, cur.String())
			cur.Reset()
		default:
			cur.WriteRune(r)
		}
	}
	if depth != 0 {
		return nil, fmt.Errorf("'[' without ']'")
	}
	return append(parts, cur.String()), nil
}

func port(s string, zeroOK bool) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 || n > 65535 || (n == 0 && !zeroOK) {
		return 0, fmt.Errorf("%q is not a port (1-65535)", s)
	}
	return n, nil
}
