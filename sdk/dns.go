package sdk

import "context"

// DnsRules is the DNS plugin's table.
type DnsRules struct {
	// Enabled: names resolve in the pod. Off, /etc/resolv.conf and /etc/hosts are this
	// machine's and no query is carried.
	Enabled bool
	// Local are host globs resolved by this machine's resolver instead.
	Local []string
	// Nameservers are the pod's (ip:port): queries to them are DNS and go to the plugin.
	Nameservers []string
	// ResolvConf and Hosts are the pod's files, which the process reads instead of this
	// machine's whatever the fs mode (targetless sessions included), so its resolver applies
	// the pod's search list and ndots.
	ResolvConf, Hosts []byte
}

// DnsAnswer is the answer to one query, or Errno (ETIMEDOUT, ECONNREFUSED) when the server
// did not give one.
type DnsAnswer struct {
	Packet  []byte
	Errno   int
	Message string
}

// DnsPlugin answers DNS queries the table sent through the cluster.
type DnsPlugin interface {
	Plugin
	Query(ctx context.Context, server string, packet []byte, tcp bool) (DnsAnswer, error)
}
