package dnsroute

import (
	"fmt"
	"net/netip"
	"slices"
	"testing"

	"github.com/kwarp-dev/kwarp/sdk/glob"
)

func TestNamesMostRecentFirstAndBounded(t *testing.T) {
	n := NewNames(16)
	a := netip.MustParseAddr("10.0.0.1")
	for i := range namesPerAddr + 3 {
		n.Record(fmt.Sprintf("n%d", i), a)
	}
	n.Record("n5", a) // again: moves to the front, no duplicate
	got := n.Lookup(a)
	if len(got) != namesPerAddr || got[0] != "n5" || got[1] != fmt.Sprintf("n%d", namesPerAddr+2) {
		t.Fatalf("names %v", got)
	}
	seen := map[string]bool{}
	for _, s := range got {
		if seen[s] {
			t.Fatalf("duplicate %q in %v", s, got)
		}
		seen[s] = true
	}
	if slices.Contains(got, "n0") {
		t.Fatalf("the oldest name was kept: %v", got)
	}
}

func TestNamesEvictOldestAddress(t *testing.T) {
	n := NewNames(3)
	addr := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, 0, 0, byte(i)}) }
	for i := range 5 {
		n.Record("x", addr(i))
	}
	if n.Len() != 3 {
		t.Fatalf("len %d, want 3", n.Len())
	}
	for i := range 5 {
		if got := len(n.Lookup(addr(i))) > 0; got != (i >= 2) {
			t.Errorf("address %d kept = %v", i, got)
		}
	}
	// Mapped and plain IPv4 are one address.
	n.Record("mapped", netip.MustParseAddr("::ffff:10.0.0.4"))
	if got := n.Lookup(addr(4)); !slices.Equal(got, []string{"mapped", "x"}) {
		t.Errorf("names of 10.0.0.4: %v", got)
	}
}

func TestNamesMatchAllocatesNothing(t *testing.T) {
	n := NewNames(DefaultNamesCapacity)
	a := netip.MustParseAddr("10.96.3.4")
	n.Record("backend.shop.svc.cluster.local", a)
	n.Record("other.example", a)
	set, err := glob.CompileAll(glob.Host, []string{"*.corp.example.com", "*.SVC.cluster.local"})
	if err != nil {
		t.Fatal(err)
	}
	if !n.Match(a, set) || n.Match(netip.MustParseAddr("10.96.3.5"), set) {
		t.Fatal("wrong match")
	}
	if allocs := testing.AllocsPerRun(100, func() { n.Match(a, set) }); allocs != 0 {
		t.Fatalf("Match allocates %v times", allocs)
	}
}
