// Package dns will be the name-resolution plugin: names resolve as they would inside the target
// pod (its resolv.conf search list and ndots), except those the policy's dns.local keeps here.
//
// So far only its policy block is here (schema.go): Schema, which kwarp loads and checks the dns
// block with, and Config, the decoded block. The plugin itself arrives with DNS and outgoing
// traffic.
package dns
