package sdk

import "context"

// NetRules is the outgoing plugin's table: the core decides every connect and datagram with
// it and calls the plugin only for one that goes through the cluster.
type NetRules struct {
	// TCP and UDP switch each transport through the cluster at all.
	TCP, UDP bool
	// Filters are the policy's filter blocks, in order. With any "remote" filter, only
	// matching traffic goes through the pod; "local" filters keep matching traffic here.
	Filters []NetFilter
}

// NetFilter matches a destination when its address is in one of Subnets or its name (as the
// process resolved it) matches one of Hosts — either list empty: any destination — and its
// port is one of Ports (empty: any port).
type NetFilter struct {
	Kind    string // NetFilterRemote or NetFilterLocal
	Hosts   []string
	Subnets []string
	Ports   []int
}

// Kinds of NetFilter.
const (
	NetFilterRemote = "remote"
	NetFilterLocal  = "local"
)

// ConnectResult is the outcome of a connect made in the pod.
type ConnectResult struct {
	// Errno is 0, or what the program's connect returns (ECONNREFUSED, ETIMEDOUT…).
	Errno   int
	Message string
	// LocalAddress and RemoteAddress are the pod side's ends (ip:port).
	LocalAddress, RemoteAddress string
}

// NetPlugin does the control exchange for outgoing connections: it asks its agent capability
// to connect to address ("tcp" or "udp", ip:port or name:port) for the tunnel named token,
// which the core opens to carry the bytes.
type NetPlugin interface {
	Plugin
	Connect(ctx context.Context, network, address string, token []byte) (ConnectResult, error)
}
