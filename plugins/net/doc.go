// Package net will be the outgoing-traffic plugin: it publishes the host, subnet and port filter
// table and asks the agent's outgoing capability to open connections from the target pod; the
// core splices the connection's bytes.
//
// So far only its policy block is here (schema.go): Schema, which kwarp loads and checks the
// network block with, and Config, the decoded block. The plugin itself arrives with DNS and
// outgoing traffic.
package net
