// Package dnsserver is the agent's dns capability (agentv1.Dns): DNS as the target pod has it.
//
// Query forwards a DNS message the user's process sent, unchanged, to the nameserver it was
// sent to (or the pod's first), from the target's network namespace (package netns): the
// cluster's DNS service answers as it would answer the pod, with the pod's source address.
// The agent does not interpret the query, so the process gets exactly the answer the pod would
// get, search-list expansion and all done by its own resolver. Config hands the target's
// resolv.conf and hosts files to the CLI, so the process's resolver reads the pod's settings
// even where the files layer does not serve the target's files (targetless sessions).
//
// A server that does not answer is the process's problem and comes back as an errno
// (ETIMEDOUT, ECONNREFUSED), never as a gRPC error: gRPC errors are for the agent's own
// trouble (no target, a malformed request).
//
// The package also resolves names for the agent itself (Resolver, used by the Outgoing
// service for "name:port" addresses) the way the C library in the pod would.
package dnsserver

import (
	"context"
	"net/netip"
	"time"

	agentv1 "github.com/kwarp-dev/kwarp/agent/api/v1"
	"github.com/kwarp-dev/kwarp/agent/netns"
	"github.com/kwarp-dev/kwarp/agent/sessionserver"
	"github.com/kwarp-dev/kwarp/agent/target"
	"github.com/kwarp-dev/kwarp/logging"
	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Options tune Query; zero values are the defaults.
type Options struct {
	// Timeout bounds one exchange with the server (default 5 s, glibc's).
	Timeout time.Duration
	// Attempts is how many times a query that timed out is sent (default 2: one retry).
	Attempts int
}

// Server is the Dns service of the target loc gives; a nil loc is a targetless agent.
type Server struct {
	agentv1.UnimplementedDnsServer
	log  zerolog.Logger
	loc  target.Locator
	d    Dialer
	opts Options
}

// New returns the dns service, sending queries through d (the target's namespace).
func New(log zerolog.Logger, loc target.Locator, d Dialer, opts Options) *Server {
	if opts.Timeout <= 0 {
		opts.Timeout = defaultTimeout
	}
	if opts.Attempts <= 0 {
		opts.Attempts = defaultAttempts
	}
	return &Server{log: log, loc: loc, d: d, opts: opts}
}

// Query sends the packet to the server over UDP (TCP when asked) and returns its answer.
func (s *Server) Query(ctx context.Context, req *agentv1.DnsQuery) (*agentv1.DnsAnswer, error) {
	if len(req.Packet) < headerLen || len(req.Packet) > maxMessage {
		return nil, status.Errorf(codes.InvalidArgument, "Query: a DNS message of %d bytes (want %d to %d)", len(req.Packet), headerLen, maxMessage)
	}
	server, err := s.server(req.Server)
	if err != nil {
		return nil, err
	}
	var ans []byte
	for range s.opts.Attempts {
		ans, err = exchange(ctx, s.d, server, req.Packet, req.Tcp, s.opts.Timeout)
		if !isTimeout(err) {
			break
		}
	}
	errno, serr := netns.Classify(err)
	log := logging.WithSession(s.log, sessionserver.SessionID(ctx))
	log.Debug().Str("server", server.String()).Bool("tcp", req.Tcp).Int("bytes", len(ans)).Err(err).Msg("dns query")
	if serr != nil {
		return nil, serr
	}
	if errno != 0 {
		return &agentv1.DnsAnswer{Errno: int32(errno), Message: err.Error()}, nil
	}
	return &agentv1.DnsAnswer{Packet: ans}, nil
}

func isTimeout(err error) bool {
	errno, _ := netns.Classify(err)
	return errno == unix.ETIMEDOUT
}

// server is where a query goes: the address the process used, or the pod's first nameserver.
func (s *Server) server(addr string) (netip.AddrPort, error) {
	if addr != "" {
		ap, err := netip.ParseAddrPort(addr)
		if err != nil {
			return netip.AddrPort{}, status.Errorf(codes.InvalidArgument, "Query: server %q is not ip:port", addr)
		}
		return ap, nil
	}
	rc, _, err := ReadFiles(s.loc)
	if err != nil {
		return netip.AddrPort{}, err
	}
	return ParseResolvConf(rc).Nameservers[0], nil
}

// Config returns the target's resolv.conf and hosts (targetless: the agent's).
func (s *Server) Config(ctx context.Context, _ *agentv1.DnsConfigRequest) (*agentv1.DnsConfigResponse, error) {
	rc, hosts, err := ReadFiles(s.loc)
	if err != nil {
		return nil, err
	}
	return &agentv1.DnsConfigResponse{ResolvConf: rc, Hosts: hosts}, nil
}
