// Package dnsroute answers the DNS queries the user's process sends to the pod's nameservers.
// The process reads the pod's resolv.conf, so its resolver (glibc, musl, Go's) asks the pod's
// nameservers, with the pod's search list and ndots; the core's UDP relay or TCP listener for
// such a nameserver hands each query here instead of tunnelling raw datagrams, so that:
//
//   - a name the policy's dns.local globs keep on this machine is asked of this machine's own
//     resolver (the first nameserver of the local /etc/resolv.conf, read once at start);
//   - every other query goes to the pod's nameserver through a Resolver (the dns plugin);
//   - the addresses of every answer (A and AAAA, CNAME chains followed) are recorded against
//     the names that led to them, so that the outgoing rules can match a connection's
//     destination IP with host globs ("*.svc.cluster.local") by the names the process
//     resolved to it;
//   - a query whose resolver fails is answered SERVFAIL at once, with the query's ID, so the
//     program's resolver moves on instead of waiting out its timeout.
//
// Malformed queries are dropped (logged at debug level): a DNS client that sent garbage gets
// the same silence a real server would give it.
package dnsroute

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/net/dns/dnsmessage"

	"github.com/kwarp-dev/kwarp/sdk/glob"
)

// Resolver sends a DNS query to a nameserver and returns its answer.
type Resolver interface {
	// Query sends packet (a DNS message as the process wrote it, without TCP's length
	// prefix) to server and returns the answer message. tcp asks over TCP: the process used
	// TCP, typically after a truncated UDP answer, so asking over UDP again would only give
	// the same truncated answer. An error means no answer (timeout, refused, no route).
	Query(ctx context.Context, server netip.AddrPort, packet []byte, tcp bool) ([]byte, error)
}

// Config is what a Router is built from.
type Config struct {
	// Remote is the pod's resolver: the dns plugin through the agent.
	Remote Resolver
	// Local are the dns.local host globs: names this machine resolves.
	Local []string
	// ResolvConf is this machine's resolver configuration, read once by New when Local is not
	// empty; "" means /etc/resolv.conf.
	ResolvConf string
	// LocalServer, when valid, is used instead of ResolvConf's first nameserver (tests run a
	// server on a port other than 53, which resolv.conf cannot say).
	LocalServer netip.AddrPort
	// LocalResolver asks LocalServer; nil means Upstream (real UDP and TCP sockets).
	LocalResolver Resolver
	// Timeout bounds one query, both ways; 0 means DefaultTimeout.
	Timeout time.Duration
	// Names receives the addresses of every answer; nil makes a table of DefaultNamesCapacity.
	Names *Names
	Log   zerolog.Logger
}

// DefaultTimeout bounds one query. A resolver's own timeout is 5 s per try (glibc's default),
// and answering SERVFAIL before it gives up is what keeps its retries meaningful.
const DefaultTimeout = 4 * time.Second

// Router answers queries to the pod's nameservers.
type Router struct {
	remote      Resolver
	local       Resolver
	localServer netip.AddrPort
	localNames  glob.Set
	timeout     time.Duration
	names       *Names
	log         zerolog.Logger
}

// New builds a Router. It reads this machine's resolv.conf only when some name is resolved
// locally, so that a missing file does not fail sessions that never need it.
func New(cfg Config) (*Router, error) {
	if cfg.Remote == nil {
		return nil, errors.New("dnsroute: no remote resolver")
	}
	local, err := glob.CompileAll(glob.Host, cfg.Local)
	if err != nil {
		return nil, fmt.Errorf("dns.local: %w", err)
	}
	r := &Router{
		remote:      cfg.Remote,
		local:       cfg.LocalResolver,
		localServer: cfg.LocalServer,
		localNames:  local,
		timeout:     cfg.Timeout,
		names:       cfg.Names,
		log:         cfg.Log,
	}
	if r.timeout <= 0 {
		r.timeout = DefaultTimeout
	}
	if r.names == nil {
		r.names = NewNames(DefaultNamesCapacity)
	}
	if r.local == nil {
		r.local = Upstream{}
	}
	if len(local) > 0 && !r.localServer.IsValid() {
		path := cfg.ResolvConf
		if path == "" {
			path = "/etc/resolv.conf"
		}
		if r.localServer, err = ReadResolvConf(path); err != nil {
			return nil, fmt.Errorf("dns.local needs this machine's resolver: %w", err)
		}
	}
	return r, nil
}

// Names is the table of names the answers gave, by address.
func (r *Router) Names() *Names { return r.names }

// Answer answers one query the process sent to server (one of the pod's nameservers) and
// returns the answer to send back. An error means the query is not one (malformed, or a
// response): the caller drops it. A resolver's failure is not an error: the answer is then a
// SERVFAIL with the query's ID.
func (r *Router) Answer(ctx context.Context, server netip.AddrPort, query []byte, tcp bool) ([]byte, error) {
	var p dnsmessage.Parser
	h, err := p.Start(query)
	if err != nil {
		return nil, fmt.Errorf("malformed DNS query to %s: %w", server, err)
	}
	if h.Response {
		return nil, fmt.Errorf("DNS message to %s is a response, not a query", server)
	}
	q, err := p.Question()
	hasQuestion := err == nil
	if err != nil && !errors.Is(err, dnsmessage.ErrSectionDone) {
		return nil, fmt.Errorf("malformed DNS question to %s: %w", server, err)
	}

	res, dst, where := r.remote, server, "pod"
	if hasQuestion && r.localNames.Match(q.Name.String()) {
		res, dst, where = r.local, r.localServer, "local"
	}
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	start := time.Now()
	ans, err := res.Query(ctx, dst, query, tcp)
	if err != nil {
		r.log.Debug().Err(err).Str("server", dst.String()).Str("resolver", where).Str("name", nameOf(q, hasQuestion)).
			Msg("dns: query failed; the process gets SERVFAIL")
		return servfail(h, q, hasQuestion)
	}
	r.log.Trace().Str("server", dst.String()).Str("resolver", where).Str("name", nameOf(q, hasQuestion)).
		Dur("took", time.Since(start)).Msg("dns: answered")
	if err := r.record(ans); err != nil {
		// The process's resolver judges the answer for itself; only the names are lost.
		r.log.Debug().Err(err).Str("name", nameOf(q, hasQuestion)).Msg("dns: answer not understood; its addresses are not recorded")
	}
	return ans, nil
}

func nameOf(q dnsmessage.Question, ok bool) string {
	if !ok {
		return ""
	}
	return q.Name.String()
}

// servfail builds the failure answer to a query: same ID and question, so the process's
// resolver pairs it with its query and gives up on this server now.
func servfail(h dnsmessage.Header, q dnsmessage.Question, hasQuestion bool) ([]byte, error) {
	b := dnsmessage.NewBuilder(make([]byte, 0, 512), dnsmessage.Header{
		ID:                 h.ID,
		Response:           true,
		OpCode:             h.OpCode,
		RecursionDesired:   h.RecursionDesired,
		RecursionAvailable: true,
		RCode:              dnsmessage.RCodeServerFailure,
	})
	if hasQuestion {
		if err := b.StartQuestions(); err != nil {
			return nil, fmt.Errorf("build SERVFAIL: %w", err)
		}
		if err := b.Question(q); err != nil {
			return nil, fmt.Errorf("build SERVFAIL: %w", err)
		}
	}
	msg, err := b.Finish()
	if err != nil {
		return nil, fmt.Errorf("build SERVFAIL: %w", err)
	}
	return msg, nil
}

// maxChain bounds a CNAME chain walk: real chains are a few links, a loop is an attack or a
// broken zone.
const maxChain = 16

// record notes the addresses of a successful answer under every name that leads to them:
// the owner of each A/AAAA record and every alias whose CNAME chain reaches it (the
// question's name first of all, which is what the process will connect by).
func (r *Router) record(ans []byte) error {
	var p dnsmessage.Parser
	h, err := p.Start(ans)
	if err != nil {
		return fmt.Errorf("parse answer header: %w", err)
	}
	if !h.Response || h.RCode != dnsmessage.RCodeSuccess {
		return nil
	}
	if err := p.SkipAllQuestions(); err != nil {
		return fmt.Errorf("parse answer questions: %w", err)
	}
	addrs := map[string][]netip.Addr{}
	cname := map[string]string{}
	for {
		rh, err := p.AnswerHeader()
		if errors.Is(err, dnsmessage.ErrSectionDone) {
			break
		}
		if err != nil {
			return fmt.Errorf("parse answer record: %w", err)
		}
		if rh.Class != dnsmessage.ClassINET {
			if err := p.SkipAnswer(); err != nil {
				return fmt.Errorf("parse answer record: %w", err)
			}
			continue
		}
		owner := canonical(rh.Name.String())
		switch rh.Type {
		case dnsmessage.TypeA:
			a, err := p.AResource()
			if err != nil {
				return fmt.Errorf("parse A record of %s: %w", owner, err)
			}
			addrs[owner] = append(addrs[owner], netip.AddrFrom4(a.A))
		case dnsmessage.TypeAAAA:
			a, err := p.AAAAResource()
			if err != nil {
				return fmt.Errorf("parse AAAA record of %s: %w", owner, err)
			}
			addrs[owner] = append(addrs[owner], netip.AddrFrom16(a.AAAA).Unmap())
		case dnsmessage.TypeCNAME:
			c, err := p.CNAMEResource()
			if err != nil {
				return fmt.Errorf("parse CNAME record of %s: %w", owner, err)
			}
			cname[owner] = canonical(c.CNAME.String())
		default:
			if err := p.SkipAnswer(); err != nil {
				return fmt.Errorf("parse answer record: %w", err)
			}
		}
	}
	if len(addrs) == 0 {
		return nil
	}
	for name := range addrs {
		r.names.Record(name, addrs[name]...)
	}
	for alias := range cname {
		n := alias
		for range maxChain {
			next, ok := cname[n]
			if !ok {
				break
			}
			n = next
			r.names.Record(alias, addrs[n]...)
		}
	}
	return nil
}

// canonical is the form names are recorded in: lower case, no root dot.
func canonical(name string) string {
	return strings.ToLower(strings.TrimSuffix(name, "."))
}
