package dnsserver

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"

	"github.com/kwarp-dev/kwarp/agent/netns"
	"github.com/kwarp-dev/kwarp/agent/target"
	"golang.org/x/net/dns/dnsmessage"
)

// ErrNotFound is wrapped by every answer "this name has no address": the name does not exist
// under any of the tried names, has no address records, or no server answered. A program in
// the pod would get an EAI_* error from getaddrinfo; the Outgoing service says ENOENT.
var ErrNotFound = errors.New("name does not resolve")

// Resolver finds addresses for names the way a program in the target does through the C
// library: /etc/hosts first, then the nameservers of the target's resolv.conf with its search
// list and ndots, the queries sent from the target's network namespace.
type Resolver struct {
	loc target.Locator // nil: targetless, the agent's own files
	d   Dialer
}

// NewResolver returns the resolver of loc's target, querying through d.
func NewResolver(loc target.Locator, d Dialer) *Resolver {
	return &Resolver{loc: loc, d: d}
}

// LookupHost returns host's addresses in the order to try them: /etc/hosts's order, or from
// DNS IPv4 before IPv6 (an IP literal is returned as is). Errors wrap ErrNotFound when the
// name does not resolve; others are gRPC statuses or errors of the agent's own trouble.
func (r *Resolver) LookupHost(ctx context.Context, host string) ([]netip.Addr, error) {
	if ip, err := netip.ParseAddr(host); err == nil {
		return []netip.Addr{ip}, nil
	}
	rc, hf, err := ReadFiles(r.loc)
	if err != nil {
		return nil, err
	}
	return lookup(ctx, r.d, ParseResolvConf(rc), ParseHosts(hf), host)
}

// lookup resolves host with conf and hosts; see LookupHost.
func lookup(ctx context.Context, d Dialer, conf Conf, hosts Hosts, host string) ([]netip.Addr, error) {
	if host == "" || len(host) > 254 {
		return nil, fmt.Errorf("%w: %q is not a host name", ErrNotFound, host)
	}
	if addrs := hosts[canonical(host)]; len(addrs) > 0 {
		return addrs, nil
	}
	var tried []string
	servfail := false
	for _, name := range candidates(conf, host) {
		tried = append(tried, name)
		addrs, res, err := lookupName(ctx, d, conf, name)
		if err != nil {
			return nil, err
		}
		switch res {
		case resFound:
			return addrs, nil
		case resServFail:
			servfail = true // the C library moves on to the next search domain
		case resTimeout:
			// …but not after a timeout: the servers are down for every name.
			return nil, fmt.Errorf("%w: %s: no DNS server answered (%s)", ErrNotFound, host, servers(conf))
		}
	}
	why := "no such name"
	if servfail {
		why = "no such name, or the server failed"
	}
	return nil, fmt.Errorf("%w: %s: %s (tried %s)", ErrNotFound, host, why, strings.Join(tried, ", "))
}

func servers(conf Conf) string {
	s := make([]string, len(conf.Nameservers))
	for i, ns := range conf.Nameservers {
		s[i] = ns.String()
	}
	return strings.Join(s, ", ")
}

// candidates are the absolute names to query for host, in glibc's order: a name with a
// trailing dot is only itself; one with at least ndots dots is tried as is first, then with
// the search domains; a shorter one with the search domains first and as is last.
func candidates(conf Conf, host string) []string {
	if strings.HasSuffix(host, ".") {
		return []string{host}
	}
	var names []string
	for _, dom := range conf.Search {
		if n := host + "." + dom + "."; len(n) <= 254 {
			names = append(names, n)
		}
	}
	if strings.Count(host, ".") >= conf.Ndots {
		return append([]string{host + "."}, names...)
	}
	return append(names, host+".")
}

type result int

const (
	resNotFound result = iota // NXDOMAIN, or no address records
	resFound
	resServFail // every server answered with a failure (SERVFAIL, REFUSED…)
	resTimeout  // no server answered
)

// lookupName asks for A and AAAA records of one absolute name, the two queries at once as
// glibc sends them.
func lookupName(ctx context.Context, d Dialer, conf Conf, name string) ([]netip.Addr, result, error) {
	qn, err := dnsmessage.NewName(name)
	if err != nil {
		return nil, resNotFound, nil // not a valid DNS name (a label over 63 bytes): no such host
	}
	type reply struct {
		addrs []netip.Addr
		res   result
		err   error
	}
	aaaa := make(chan reply, 1)
	go func() {
		addrs, res, err := query(ctx, d, conf, qn, dnsmessage.TypeAAAA)
		aaaa <- reply{addrs, res, err}
	}()
	addrs, res, err := query(ctx, d, conf, qn, dnsmessage.TypeA)
	six := <-aaaa
	if err != nil {
		return nil, 0, err
	}
	if six.err != nil {
		return nil, 0, six.err
	}
	addrs = append(addrs, six.addrs...)
	switch {
	case len(addrs) > 0:
		return addrs, resFound, nil
	case res == resTimeout || six.res == resTimeout:
		return nil, resTimeout, nil
	case res == resServFail || six.res == resServFail:
		return nil, resServFail, nil
	}
	return nil, resNotFound, nil
}

// query asks the servers for one record type of one name: each server in turn, conf.Attempts
// rounds, over TCP when the UDP answer is truncated (or the conf says use-vc). The error is
// for the agent's own trouble (the target's namespace out of reach, the call ended); the
// servers' silence or failure is a result.
func query(ctx context.Context, d Dialer, conf Conf, name dnsmessage.Name, typ dnsmessage.Type) ([]netip.Addr, result, error) {
	id := uint16(rand.Uint32())
	msg, err := newQuery(id, name, typ)
	if err != nil {
		return nil, 0, fmt.Errorf("build a DNS query for %s: %w", name, err)
	}
	res := resTimeout
	for range conf.Attempts {
		for _, server := range conf.Nameservers {
			ans, err := exchange(ctx, d, server, msg, conf.UseTCP, conf.Timeout)
			if err == nil && !conf.UseTCP && truncated(ans) {
				ans, err = exchange(ctx, d, server, msg, true, conf.Timeout)
			}
			if err != nil {
				if _, serr := netns.Classify(err); serr != nil {
					return nil, 0, err // the agent's own trouble, or the call ended
				}
				continue // an errno: this server did not answer (timeout, refused, unreachable)
			}
			addrs, rcode, err := parseAnswer(ans, id, name, typ)
			if err != nil {
				continue // garbage from this server: as if it had not answered
			}
			switch rcode {
			case dnsmessage.RCodeSuccess:
				if len(addrs) > 0 {
					return addrs, resFound, nil
				}
				return nil, resNotFound, nil
			case dnsmessage.RCodeNameError:
				return nil, resNotFound, nil
			default:
				res = resServFail
			}
		}
	}
	return nil, res, nil
}

func truncated(ans []byte) bool {
	var p dnsmessage.Parser
	h, err := p.Start(ans)
	return err == nil && h.Truncated
}

func newQuery(id uint16, name dnsmessage.Name, typ dnsmessage.Type) ([]byte, error) {
	b := dnsmessage.NewBuilder(make([]byte, 0, 512), dnsmessage.Header{ID: id, RecursionDesired: true})
	if err := b.StartQuestions(); err != nil {
		return nil, err
	}
	if err := b.Question(dnsmessage.Question{Name: name, Type: typ, Class: dnsmessage.ClassINET}); err != nil {
		return nil, err
	}
	return b.Finish()
}

// maxCNAMEs bounds a CNAME chain inside one answer, as resolvers do against loops.
const maxCNAMEs = 10

// parseAnswer reads a server's answer to query id for name and typ: its rcode and the
// addresses of name, following CNAME records inside the answer.
func parseAnswer(ans []byte, id uint16, name dnsmessage.Name, typ dnsmessage.Type) ([]netip.Addr, dnsmessage.RCode, error) {
	var p dnsmessage.Parser
	h, err := p.Start(ans)
	if err != nil {
		return nil, 0, err
	}
	if !h.Response || h.ID != id {
		return nil, 0, errors.New("not the answer to this query")
	}
	q, err := p.Question()
	if err != nil {
		return nil, 0, err
	}
	if q.Type != typ || !strings.EqualFold(q.Name.String(), name.String()) {
		return nil, 0, errors.New("the answer is to another question")
	}
	if err := p.SkipAllQuestions(); err != nil {
		return nil, 0, err
	}
	if h.RCode != dnsmessage.RCodeSuccess {
		return nil, h.RCode, nil
	}
	cnames := map[string]string{}
	addrs := map[string][]netip.Addr{}
	for {
		rh, err := p.AnswerHeader()
		if errors.Is(err, dnsmessage.ErrSectionDone) {
			break
		}
		if err != nil {
			return nil, 0, err
		}
		owner := canonical(rh.Name.String())
		switch {
		case rh.Type == dnsmessage.TypeCNAME && rh.Class == dnsmessage.ClassINET:
			r, err := p.CNAMEResource()
			if err != nil {
				return nil, 0, err
			}
			cnames[owner] = canonical(r.CNAME.String())
		case rh.Type == typ && typ == dnsmessage.TypeA && rh.Class == dnsmessage.ClassINET:
			r, err := p.AResource()
			if err != nil {
				return nil, 0, err
			}
			addrs[owner] = append(addrs[owner], netip.AddrFrom4(r.A))
		case rh.Type == typ && typ == dnsmessage.TypeAAAA && rh.Class == dnsmessage.ClassINET:
			r, err := p.AAAAResource()
			if err != nil {
				return nil, 0, err
			}
			addrs[owner] = append(addrs[owner], netip.AddrFrom16(r.AAAA))
		default:
			if err := p.SkipAnswer(); err != nil {
				return nil, 0, err
			}
		}
	}
	cur := canonical(name.String())
	for range maxCNAMEs {
		if a := addrs[cur]; len(a) > 0 {
			return a, dnsmessage.RCodeSuccess, nil
		}
		next, ok := cnames[cur]
		if !ok {
			break
		}
		cur = next
	}
	return nil, dnsmessage.RCodeSuccess, nil
}
