package outgoing

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/kwarp-dev/kwarp/core/dnsroute"
	"github.com/kwarp-dev/kwarp/layer"
	"github.com/kwarp-dev/kwarp/sdk/glob"
)

// Rules is the outgoing policy as the net and dns plugins publish it. The field types are the
// published tables' own (sdk.NetRules, sdk.NetFilter, sdk.DnsRules.Nameservers), so that
// filling it is a copy; Compile checks every value.
type Rules struct {
	// TCP and UDP switch each transport through the pod at all.
	TCP, UDP bool
	// Filters are the policy's filter blocks, in order.
	Filters []Filter
	// Nameservers are the pod's nameservers ("ip:port"), as the process read them from the
	// pod's resolv.conf. Queries to them are answered by the DNS router, whatever the
	// switches and filters say: they are how the process resolves names at all.
	Nameservers []string
}

// Filter is one filter block: it matches a destination whose address is in one of Subnets or
// whose name matches one of Hosts (both lists empty: any destination) and whose port is one
// of Ports (empty: any port). Kind is FilterRemote or FilterLocal.
type Filter struct {
	Kind    string
	Hosts   []string
	Subnets []string
	Ports   []int
}

// Kinds of Filter, as the policy writes them.
const (
	FilterRemote = "remote"
	FilterLocal  = "local"
)

// Table is compiled Rules: it decides a destination's route without I/O or allocation.
//
// The order of the decision:
//  1. the pod's nameservers go through the pod (to the DNS router);
//  2. loopback, unspecified, multicast and broadcast addresses and this machine's own
//     addresses stay here: they can only mean this machine (or its link);
//  3. a transport switched off stays here;
//  4. a destination some "local" filter matches stays here;
//  5. with "remote" filters, a destination goes through the pod only when one matches;
//     without any, everything left goes through the pod.
//
// Local filters win over remote ones because that is the only reading under which both
// blocks mean what they say: "these stay here" and "only these go via the pod".
type Table struct {
	tcp, udp    bool
	local       []filter
	remote      []filter
	nameservers map[netip.AddrPort]struct{}
	own         map[netip.Addr]struct{}
	names       *dnsroute.Names
}

type filter struct {
	hosts   glob.Set
	subnets []netip.Prefix
	ports   []uint16
}

// Compile checks rules and builds the table. names is where host filters look up the names
// an address was resolved from (nil: host filters match nothing); own are this machine's
// addresses.
func Compile(r Rules, names *dnsroute.Names, own []netip.Addr) (*Table, error) {
	t := &Table{
		tcp:         r.TCP,
		udp:         r.UDP,
		nameservers: map[netip.AddrPort]struct{}{},
		own:         map[netip.Addr]struct{}{},
		names:       names,
	}
	for i, f := range r.Filters {
		cf, err := compileFilter(f)
		if err != nil {
			return nil, fmt.Errorf("outgoing filter %d (%q): %w", i+1, f.Kind, err)
		}
		switch f.Kind {
		case FilterRemote:
			t.remote = append(t.remote, cf)
		case FilterLocal:
			t.local = append(t.local, cf)
		default:
			return nil, fmt.Errorf("outgoing filter %d: kind %q is neither %q nor %q", i+1, f.Kind, FilterRemote, FilterLocal)
		}
	}
	for _, s := range r.Nameservers {
		ap, err := netip.ParseAddrPort(s)
		if err != nil {
			return nil, fmt.Errorf("pod nameserver %q: %w", s, err)
		}
		t.nameservers[normalize(ap)] = struct{}{}
	}
	for _, a := range own {
		t.own[a.Unmap().WithZone("")] = struct{}{}
	}
	return t, nil
}

func compileFilter(f Filter) (filter, error) {
	var cf filter
	for _, h := range f.Hosts {
		// An address written as a host means that address: nothing resolves to it by name.
		if a, err := netip.ParseAddr(h); err == nil {
			cf.subnets = append(cf.subnets, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
			continue
		}
		m, err := glob.Compile(glob.Host, h)
		if err != nil {
			return cf, err
		}
		cf.hosts = append(cf.hosts, m)
	}
	for _, s := range f.Subnets {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return cf, fmt.Errorf("subnet: %w", err)
		}
		// ::ffff:10.0.0.0/104 is how an IPv6 socket writes 10.0.0.0/8; addresses are matched
		// unmapped, so the prefix must be too.
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		cf.subnets = append(cf.subnets, p.Masked())
	}
	for _, port := range f.Ports {
		if port < 1 || port > 65535 {
			return cf, fmt.Errorf("port %d is not between 1 and 65535", port)
		}
		cf.ports = append(cf.ports, uint16(port))
	}
	return cf, nil
}

// Route decides where traffic of transport p to dst goes.
func (t *Table) Route(p layer.Proto, dst netip.AddrPort) layer.Route {
	a := dst.Addr().Unmap().WithZone("")
	if _, ok := t.nameservers[netip.AddrPortFrom(a, dst.Port())]; ok {
		return layer.Remote
	}
	if alwaysLocal(a) {
		return layer.Local
	}
	if _, ok := t.own[a]; ok {
		return layer.Local
	}
	switch p {
	case layer.TCP:
		if !t.tcp {
			return layer.Local
		}
	case layer.UDP:
		if !t.udp {
			return layer.Local
		}
	default:
		return layer.Local
	}
	for i := range t.local {
		if t.local[i].match(a, dst.Port(), t.names) {
			return layer.Local
		}
	}
	if len(t.remote) == 0 {
		return layer.Remote
	}
	for i := range t.remote {
		if t.remote[i].match(a, dst.Port(), t.names) {
			return layer.Remote
		}
	}
	return layer.Local
}

// IsNameserver says whether dst is one of the pod's nameservers.
func (t *Table) IsNameserver(dst netip.AddrPort) bool {
	_, ok := t.nameservers[normalize(dst)]
	return ok
}

var broadcast4 = netip.AddrFrom4([4]byte{255, 255, 255, 255})

func alwaysLocal(a netip.Addr) bool {
	return !a.IsValid() || a.IsLoopback() || a.IsUnspecified() || a.IsMulticast() || a == broadcast4
}

func (f *filter) match(a netip.Addr, port uint16, names *dnsroute.Names) bool {
	if len(f.ports) > 0 {
		found := false
		for _, p := range f.ports {
			if p == port {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	if len(f.hosts) == 0 && len(f.subnets) == 0 {
		return true
	}
	for _, p := range f.subnets {
		if p.Contains(a) {
			return true
		}
	}
	return names != nil && names.Match(a, f.hosts)
}

// normalize is the form addresses are keyed by: IPv4-mapped IPv6 as IPv4, no zone.
func normalize(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap().WithZone(""), ap.Port())
}

// InterfaceAddrs returns this machine's addresses, for Compile.
func InterfaceAddrs() ([]netip.Addr, error) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, fmt.Errorf("list this machine's addresses: %w", err)
	}
	var out []netip.Addr
	for _, a := range addrs {
		var ip net.IP
		switch v := a.(type) {
		case *net.IPNet:
			ip = v.IP
		case *net.IPAddr:
			ip = v.IP
		}
		if na, ok := netip.AddrFromSlice(ip); ok {
			out = append(out, na.Unmap())
		}
	}
	return out, nil
}
