// Package net is the network plugin (`kwarp plugin net`). For outgoing traffic it publishes the
// network block's tcp/udp switches and host, subnet and port filters as the table the core
// routes every connect and datagram with ("net"), and for a connection that goes through the
// pod it asks the agent's Outgoing capability to connect under the token of the tunnel the
// core opens. The core splices the connection's bytes; they never pass through this process.
// For incoming traffic it only publishes the incoming block — mode, ignored ports, port
// mapping — as the "incoming" table; the steal plugin holds the subscriptions.
package net
