// Package net is the outgoing-traffic plugin (`kwarp plugin net`): it publishes the network
// block's tcp/udp switches and host, subnet and port filters as the table the core routes
// every connect and datagram with, and for a connection that goes through the pod it asks the
// agent's Outgoing capability to connect under the token of the tunnel the core opens. The
// core splices the connection's bytes; they never pass through this process.
package net
