// Package net will be the outgoing-traffic plugin: it publishes the host, subnet and port filter
// table and asks the agent's outgoing capability to open connections from the target pod; the
// core splices the connection's bytes.
//
// Nothing is implemented yet: it arrives with DNS and outgoing traffic.
package net
