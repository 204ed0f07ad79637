package dnsroute

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/rs/zerolog"
	"golang.org/x/net/dns/dnsmessage"
)

// fakeResolver answers from a function and remembers what it was asked.
type fakeResolver struct {
	mu    sync.Mutex
	calls []call
	fn    func(server netip.AddrPort, packet []byte, tcp bool) ([]byte, error)
}

type call struct {
	server netip.AddrPort
	name   string
	tcp    bool
}

func (f *fakeResolver) Query(_ context.Context, server netip.AddrPort, packet []byte, tcp bool) ([]byte, error) {
	var p dnsmessage.Parser
	name := ""
	if _, err := p.Start(packet); err == nil {
		if q, err := p.Question(); err == nil {
			name = q.Name.String()
		}
	}
	f.mu.Lock()
	f.calls = append(f.calls, call{server, name, tcp})
	f.mu.Unlock()
	return f.fn(server, packet, tcp)
}

func (f *fakeResolver) called() []call {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

// Query builds a query for name of type t.
func Query(t testing.TB, id uint16, name string, typ dnsmessage.Type) []byte {
	t.Helper()
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: id, RecursionDesired: true})
	must(t, b.StartQuestions())
	must(t, b.Question(dnsmessage.Question{Name: dnsmessage.MustNewName(name), Type: typ, Class: dnsmessage.ClassINET}))
	msg, err := b.Finish()
	must(t, err)
	return msg
}

// rr is one answer record: an A/AAAA address, or a CNAME target.
type rr struct {
	name  string
	addr  netip.Addr
	cname string
}

// Reply builds the answer to query with records.
func Reply(t testing.TB, query []byte, records ...rr) []byte {
	t.Helper()
	var p dnsmessage.Parser
	h, err := p.Start(query)
	must(t, err)
	q, err := p.Question()
	must(t, err)
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: h.ID, Response: true, RecursionDesired: h.RecursionDesired, RecursionAvailable: true})
	must(t, b.StartQuestions())
	must(t, b.Question(q))
	must(t, b.StartAnswers())
	for _, r := range records {
		hdr := dnsmessage.ResourceHeader{Name: dnsmessage.MustNewName(r.name), Class: dnsmessage.ClassINET, TTL: 30}
		switch {
		case r.cname != "":
			must(t, b.CNAMEResource(hdr, dnsmessage.CNAMEResource{CNAME: dnsmessage.MustNewName(r.cname)}))
		case r.addr.Is4():
			must(t, b.AResource(hdr, dnsmessage.AResource{A: r.addr.As4()}))
		default:
			must(t, b.AAAAResource(hdr, dnsmessage.AAAAResource{AAAA: r.addr.As16()}))
		}
	}
	msg, err := b.Finish()
	must(t, err)
	return msg
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

var (
	podNS   = netip.MustParseAddrPort("10.96.0.10:53")
	localNS = netip.MustParseAddrPort("192.0.2.53:53")
)

func newRouter(t testing.TB, remote, local Resolver, localGlobs ...string) *Router {
	t.Helper()
	r, err := New(Config{Remote: remote, LocalResolver: local, LocalServer: localNS, Local: localGlobs, Log: zerolog.Nop()})
	must(t, err)
	return r
}

func answerWith(t testing.TB, addr string) func(netip.AddrPort, []byte, bool) ([]byte, error) {
	return func(_ netip.AddrPort, q []byte, _ bool) ([]byte, error) {
		var p dnsmessage.Parser
		if _, err := p.Start(q); err != nil {
			return nil, err
		}
		qq, err := p.Question()
		if err != nil {
			return nil, err
		}
		return Reply(t, q, rr{name: qq.Name.String(), addr: netip.MustParseAddr(addr)}), nil
	}
}

func TestLocalAndRemoteRouting(t *testing.T) {
	remote := &fakeResolver{fn: answerWith(t, "10.1.0.1")}
	local := &fakeResolver{fn: answerWith(t, "192.0.2.80")}
	r := newRouter(t, remote, local, "*.corp.example.com", "intranet")
	tests := []struct {
		name      string
		wantLocal bool
	}{
		{"api.corp.example.com.", true},
		{"API.Corp.EXAMPLE.com.", true},
		{"intranet.", true},
		{"a.b.corp.example.com.", true},
		{"corp.example.com.", false},
		{"backend.shop.svc.cluster.local.", false},
		{"api.corp.example.com.shop.svc.cluster.local.", false}, // a search-list expansion
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			nl, nr := len(local.called()), len(remote.called())
			ans, err := r.Answer(context.Background(), podNS, Query(t, uint16(i+1), tt.name, dnsmessage.TypeA), tt.name == "intranet.")
			must(t, err)
			h := header(t, ans)
			if h.ID != uint16(i+1) || h.RCode != dnsmessage.RCodeSuccess {
				t.Fatalf("answer header %+v", h)
			}
			gotLocal := len(local.called()) > nl
			if gotLocal != tt.wantLocal || len(remote.called()) > nr == tt.wantLocal {
				t.Fatalf("local asked %v, remote asked %v; want local %v", gotLocal, len(remote.called()) > nr, tt.wantLocal)
			}
		})
	}
	for _, c := range local.called() {
		if c.server != localNS {
			t.Errorf("local resolver asked %v, want %v", c.server, localNS)
		}
	}
	for _, c := range remote.called() {
		if c.server != podNS || c.tcp {
			t.Errorf("remote resolver asked %v tcp=%v, want %v over UDP", c.server, c.tcp, podNS)
		}
	}
	if c := local.called(); len(c) < 3 || !c[2].tcp {
		t.Errorf("the TCP query was not asked over TCP: %+v", c)
	}
	// Answers from both resolvers teach the names table.
	if got := r.Names().Lookup(netip.MustParseAddr("192.0.2.80")); !slices.Contains(got, "api.corp.example.com") {
		t.Errorf("names of the local answer: %v", got)
	}
	if got := r.Names().Lookup(netip.MustParseAddr("10.1.0.1")); !slices.Contains(got, "backend.shop.svc.cluster.local") {
		t.Errorf("names of the pod's answer: %v", got)
	}
}

func header(t testing.TB, msg []byte) dnsmessage.Header {
	t.Helper()
	var p dnsmessage.Parser
	h, err := p.Start(msg)
	must(t, err)
	return h
}

func TestServfailOnResolverError(t *testing.T) {
	for _, localName := range []bool{false, true} {
		remote := &fakeResolver{fn: func(netip.AddrPort, []byte, bool) ([]byte, error) { return nil, errors.New("agent gone") }}
		local := &fakeResolver{fn: func(netip.AddrPort, []byte, bool) ([]byte, error) { return nil, context.DeadlineExceeded }}
		r := newRouter(t, remote, local, "*.local.test")
		name := "db.shop.svc.cluster.local."
		if localName {
			name = "x.local.test."
		}
		ans, err := r.Answer(context.Background(), podNS, Query(t, 4242, name, dnsmessage.TypeAAAA), false)
		must(t, err)
		var p dnsmessage.Parser
		h, err := p.Start(ans)
		must(t, err)
		if h.ID != 4242 || !h.Response || h.RCode != dnsmessage.RCodeServerFailure || !h.RecursionDesired {
			t.Fatalf("header %+v, want a SERVFAIL response with ID 4242", h)
		}
		q, err := p.Question()
		must(t, err)
		if q.Name.String() != name || q.Type != dnsmessage.TypeAAAA {
			t.Fatalf("question %v, want %s AAAA", q, name)
		}
	}
}

func TestCNAMEChainsAreRecorded(t *testing.T) {
	q := Query(t, 1, "www.Example.com.", dnsmessage.TypeA)
	remote := &fakeResolver{fn: func(netip.AddrPort, []byte, bool) ([]byte, error) {
		return Reply(t, q,
			rr{name: "www.Example.com.", cname: "edge.cdn.net."},
			rr{name: "edge.cdn.net.", cname: "e1.cdn.net."},
			rr{name: "e1.cdn.net.", addr: netip.MustParseAddr("203.0.113.7")},
			rr{name: "e1.cdn.net.", addr: netip.MustParseAddr("2001:db8::7")},
			rr{name: "loop.a.", cname: "loop.b."}, // a broken zone must not hang the walk
			rr{name: "loop.b.", cname: "loop.a."},
		), nil
	}}
	r := newRouter(t, remote, nil)
	_, err := r.Answer(context.Background(), podNS, q, false)
	must(t, err)
	for _, a := range []string{"203.0.113.7", "2001:db8::7"} {
		got := r.Names().Lookup(netip.MustParseAddr(a))
		slices.Sort(got)
		if want := []string{"e1.cdn.net", "edge.cdn.net", "www.example.com"}; !slices.Equal(got, want) {
			t.Errorf("names of %s = %v, want %v", a, got, want)
		}
	}
}

func TestFailedAnswersAreNotRecorded(t *testing.T) {
	q := Query(t, 1, "gone.example.", dnsmessage.TypeA)
	remote := &fakeResolver{fn: func(netip.AddrPort, []byte, bool) ([]byte, error) {
		ans := Reply(t, q, rr{name: "gone.example.", addr: netip.MustParseAddr("198.51.100.1")})
		ans[3] |= byte(dnsmessage.RCodeNameError) // an NXDOMAIN that carries records anyway
		return ans, nil
	}}
	r := newRouter(t, remote, nil)
	_, err := r.Answer(context.Background(), podNS, q, false)
	must(t, err)
	if n := r.Names().Len(); n != 0 {
		t.Fatalf("%d addresses recorded from a failed answer", n)
	}
}

func TestMalformedQueriesAreDropped(t *testing.T) {
	remote := &fakeResolver{fn: answerWith(t, "10.0.0.1")}
	r := newRouter(t, remote, nil)
	resp := Reply(t, Query(t, 7, "a.example.", dnsmessage.TypeA))
	for name, msg := range map[string][]byte{
		"empty":     nil,
		"short":     {1, 2, 3},
		"response":  resp,
		"truncated": Query(t, 1, "truncated.example.", dnsmessage.TypeA)[:20],
	} {
		if _, err := r.Answer(context.Background(), podNS, msg, false); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if c := remote.called(); len(c) != 0 {
		t.Errorf("malformed queries reached the resolver: %v", c)
	}
	// A query without a question is the server's to refuse; it goes through.
	noQ := make([]byte, 12)
	noQ[1] = 9
	remote.fn = func(netip.AddrPort, []byte, bool) ([]byte, error) { return nil, errors.New("formerr") }
	ans, err := r.Answer(context.Background(), podNS, noQ, false)
	must(t, err)
	if h := header(t, ans); h.ID != 9 || h.RCode != dnsmessage.RCodeServerFailure {
		t.Fatalf("answer to a query without a question: %+v", h)
	}
}

func TestNewReadsResolvConfOnlyWhenNeeded(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nope")
	if _, err := New(Config{Remote: &fakeResolver{}, ResolvConf: missing}); err != nil {
		t.Fatalf("without dns.local the local resolver is not needed: %v", err)
	}
	if _, err := New(Config{Remote: &fakeResolver{}, ResolvConf: missing, Local: []string{"*.corp"}}); err == nil {
		t.Fatal("dns.local without a readable resolv.conf: no error")
	}
	path := filepath.Join(t.TempDir(), "resolv.conf")
	must(t, os.WriteFile(path, []byte("nameserver 192.0.2.9\n"), 0o644))
	local := &fakeResolver{fn: answerWith(t, "192.0.2.10")}
	r, err := New(Config{Remote: &fakeResolver{}, LocalResolver: local, ResolvConf: path, Local: []string{"*.corp"}})
	must(t, err)
	_, err = r.Answer(context.Background(), podNS, Query(t, 1, "x.corp.", dnsmessage.TypeA), false)
	must(t, err)
	if c := local.called(); len(c) != 1 || c[0].server != netip.MustParseAddrPort("192.0.2.9:53") {
		t.Fatalf("local resolver calls %v, want one to 192.0.2.9:53", c)
	}
	if _, err := New(Config{Remote: &fakeResolver{}, Local: []string{"a/b"}}); err == nil {
		t.Fatal("a bad dns.local glob compiled")
	}
}

func TestReadResolvConf(t *testing.T) {
	dir := t.TempDir()
	for name, tt := range map[string]struct {
		text string
		want string
	}{
		"first":    {"# comment\nsearch corp\noptions ndots:2\nnameserver 10.0.0.2 # primary\nnameserver 1.1.1.1\n", "10.0.0.2:53"},
		"skip bad": {"nameserver not-an-ip\nnameserver fd00::53\n", "[fd00::53]:53"},
		"none":     {"search corp\n", "127.0.0.1:53"},
		"mapped":   {"nameserver ::ffff:10.0.0.3\n", "10.0.0.3:53"},
	} {
		path := filepath.Join(dir, name)
		must(t, os.WriteFile(path, []byte(tt.text), 0o644))
		got, err := ReadResolvConf(path)
		must(t, err)
		if got.String() != tt.want {
			t.Errorf("%s: %v, want %s", name, got, tt.want)
		}
	}
	if _, err := ReadResolvConf(filepath.Join(dir, "missing")); err == nil {
		t.Error("missing file: no error")
	}
}
