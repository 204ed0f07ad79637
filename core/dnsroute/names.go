package dnsroute

import (
	"net/netip"
	"sync"

	"github.com/kwarp-dev/kwarp/sdk/glob"
)

// DefaultNamesCapacity bounds the table: far more addresses than a process resolves in a
// session, small enough (a few MB at worst) not to matter.
const DefaultNamesCapacity = 1 << 16

// namesPerAddr bounds the names kept for one address. Many names can point to one address
// (a shared ingress, a CDN); the most recent ones are the ones the process is about to use.
const namesPerAddr = 8

// Names maps addresses to the names whose answers carried them. Entries are not expired by
// TTL: programs keep addresses well past it (the JVM caches forever by default), and a
// connection to such an address must still be matched by the name it came from. The table
// forgets the oldest addresses when it is full instead.
type Names struct {
	mu    sync.RWMutex
	m     map[netip.Addr][]string
	order []netip.Addr // insertion order, a ring once full
	next  int
	cap   int
}

// NewNames returns an empty table of at most capacity addresses.
func NewNames(capacity int) *Names {
	if capacity < 1 {
		capacity = 1
	}
	return &Names{m: map[netip.Addr][]string{}, cap: capacity}
}

// Record notes that name resolved to addrs. name is canonical (lower case, no root dot).
func (n *Names) Record(name string, addrs ...netip.Addr) {
	if name == "" || len(addrs) == 0 {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, a := range addrs {
		a = a.Unmap()
		names, ok := n.m[a]
		if !ok {
			n.evictFor(a)
		}
		n.m[a] = addName(names, name)
	}
}

// evictFor makes room for a new address a, forgetting the oldest one when the table is full.
func (n *Names) evictFor(a netip.Addr) {
	if len(n.order) < n.cap {
		n.order = append(n.order, a)
		return
	}
	delete(n.m, n.order[n.next])
	n.order[n.next] = a
	n.next = (n.next + 1) % n.cap
}

// addName puts name first, keeping at most namesPerAddr.
func addName(names []string, name string) []string {
	for i, x := range names {
		if x == name {
			copy(names[1:i+1], names[:i])
			names[0] = name
			return names
		}
	}
	if len(names) < namesPerAddr {
		names = append(names, "")
	}
	copy(names[1:], names)
	names[0] = name
	return names
}

// Lookup returns the names recorded for a, most recent first.
func (n *Names) Lookup(a netip.Addr) []string {
	n.mu.RLock()
	defer n.mu.RUnlock()
	return append([]string(nil), n.m[a.Unmap()]...)
}

// Match reports whether a name recorded for a matches one of set. It allocates nothing: it
// runs on every connect a host filter applies to.
func (n *Names) Match(a netip.Addr, set glob.Set) bool {
	if len(set) == 0 {
		return false
	}
	n.mu.RLock()
	defer n.mu.RUnlock()
	for _, name := range n.m[a.Unmap()] {
		if set.Match(name) {
			return true
		}
	}
	return false
}

// Len is the number of addresses in the table.
func (n *Names) Len() int {
	n.mu.RLock()
	defer n.mu.RUnlock()
	return len(n.m)
}
