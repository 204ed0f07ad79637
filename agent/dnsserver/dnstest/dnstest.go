// Package dnstest is a tiny authoritative DNS server for tests: it answers A, AAAA and CNAME
// records from a table, NXDOMAIN for every other name, over UDP and TCP, and records the
// questions it was asked. The test brings the sockets, so the server can live in a network
// namespace the test made (a stand-in for the cluster's DNS as a pod sees it).
package dnstest

import (
	"encoding/binary"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"golang.org/x/net/dns/dnsmessage"
)

// Server answers from Records. Set its fields before Serve.
type Server struct {
	// Records maps a lower-case absolute name ("backend.shop.svc.cluster.local.") to its
	// addresses; an entry in CNAMEs makes the name an alias instead.
	Records map[string][]netip.Addr
	CNAMEs  map[string]string
	// Truncate names whose UDP answers are sent empty with the TC bit, so the client must
	// ask again over TCP.
	Truncate map[string]bool
	// ServFail names answered with SERVFAIL.
	ServFail map[string]bool
	// Silent: read queries and never answer.
	Silent bool

	mu    sync.Mutex
	asked []string // "udp A name." in arrival order
}

// Asked returns the questions received so far, each as "udp A name." or "tcp AAAA name.".
func (s *Server) Asked() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.asked...)
}

// ServeUDP answers on pc until it is closed.
func (s *Server) ServeUDP(pc net.PacketConn) {
	buf := make([]byte, 65535)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			return
		}
		if ans := s.answer(buf[:n], "udp"); ans != nil {
			pc.WriteTo(ans, from)
		}
	}
}

// ServeTCP answers on l's connections until l is closed.
func (s *Server) ServeTCP(l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			for {
				var h [2]byte
				if _, err := io.ReadFull(c, h[:]); err != nil {
					return
				}
				q := make([]byte, binary.BigEndian.Uint16(h[:]))
				if _, err := io.ReadFull(c, q); err != nil {
					return
				}
				ans := s.answer(q, "tcp")
				if ans == nil {
					continue
				}
				out := binary.BigEndian.AppendUint16(nil, uint16(len(ans)))
				if _, err := c.Write(append(out, ans...)); err != nil {
					return
				}
			}
		}()
	}
}

// answer builds the reply to one query; nil for no reply.
func (s *Server) answer(query []byte, transport string) []byte {
	var p dnsmessage.Parser
	h, err := p.Start(query)
	if err != nil {
		return nil
	}
	q, err := p.Question()
	if err != nil {
		return nil
	}
	name := strings.ToLower(q.Name.String())
	s.mu.Lock()
	s.asked = append(s.asked, transport+" "+strings.TrimPrefix(q.Type.String(), "Type")+" "+name)
	s.mu.Unlock()
	if s.Silent {
		return nil
	}
	rh := dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true, RecursionDesired: h.RecursionDesired}
	var answers []dnsmessage.Resource
	switch {
	case s.ServFail[name]:
		rh.RCode = dnsmessage.RCodeServerFailure
	case s.Truncate[name] && transport == "udp":
		rh.Truncated = true
	case s.CNAMEs[name] != "":
		target := s.CNAMEs[name]
		tn, err := dnsmessage.NewName(target)
		if err != nil {
			return nil
		}
		answers = append(answers, dnsmessage.Resource{
			Header: dnsmessage.ResourceHeader{Name: q.Name, Type: dnsmessage.TypeCNAME, Class: dnsmessage.ClassINET, TTL: 30},
			Body:   &dnsmessage.CNAMEResource{CNAME: tn},
		})
		answers = append(answers, s.records(target, q.Type)...)
	case s.Records[name] != nil:
		answers = s.records(name, q.Type)
	default:
		rh.RCode = dnsmessage.RCodeNameError
	}
	b := dnsmessage.NewBuilder(nil, rh)
	b.EnableCompression()
	b.StartQuestions()
	b.Question(q)
	b.StartAnswers()
	for _, a := range answers {
		switch body := a.Body.(type) {
		case *dnsmessage.AResource:
			b.AResource(a.Header, *body)
		case *dnsmessage.AAAAResource:
			b.AAAAResource(a.Header, *body)
		case *dnsmessage.CNAMEResource:
			b.CNAMEResource(a.Header, *body)
		}
	}
	out, err := b.Finish()
	if err != nil {
		return nil
	}
	return out
}

func (s *Server) records(name string, typ dnsmessage.Type) []dnsmessage.Resource {
	var rs []dnsmessage.Resource
	n, err := dnsmessage.NewName(name)
	if err != nil {
		return nil
	}
	for _, ip := range s.Records[name] {
		hdr := dnsmessage.ResourceHeader{Name: n, Class: dnsmessage.ClassINET, TTL: 30}
		switch {
		case ip.Is4() && typ == dnsmessage.TypeA:
			hdr.Type = dnsmessage.TypeA
			rs = append(rs, dnsmessage.Resource{Header: hdr, Body: &dnsmessage.AResource{A: ip.As4()}})
		case ip.Is6() && typ == dnsmessage.TypeAAAA:
			hdr.Type = dnsmessage.TypeAAAA
			rs = append(rs, dnsmessage.Resource{Header: hdr, Body: &dnsmessage.AAAAResource{AAAA: ip.As16()}})
		}
	}
	return rs
}

// Query builds a query for name and typ, for tests that send raw packets.
func Query(t testing.TB, id uint16, name string, typ dnsmessage.Type) []byte {
	t.Helper()
	n, err := dnsmessage.NewName(name)
	if err != nil {
		t.Fatalf("query for %q: %v", name, err)
	}
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: id, RecursionDesired: true})
	b.StartQuestions()
	b.Question(dnsmessage.Question{Name: n, Type: typ, Class: dnsmessage.ClassINET})
	out, err := b.Finish()
	if err != nil {
		t.Fatalf("query for %q: %v", name, err)
	}
	return out
}

// Addrs reads the A and AAAA records of an answer, and its rcode.
func Addrs(ans []byte) ([]netip.Addr, dnsmessage.RCode, error) {
	var m dnsmessage.Message
	if err := m.Unpack(ans); err != nil {
		return nil, 0, err
	}
	var addrs []netip.Addr
	for _, a := range m.Answers {
		switch body := a.Body.(type) {
		case *dnsmessage.AResource:
			addrs = append(addrs, netip.AddrFrom4(body.A))
		case *dnsmessage.AAAAResource:
			addrs = append(addrs, netip.AddrFrom16(body.AAAA))
		}
	}
	return addrs, m.RCode, nil
}
