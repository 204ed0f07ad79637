// Package dns will be the name-resolution plugin: names resolve as they would inside the target
// pod (its resolv.conf search list and ndots), except those the policy's dns.local keeps here.
//
// Nothing is implemented yet: it arrives with DNS and outgoing traffic.
package dns
