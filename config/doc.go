// Package config will read kwarp's HCL policy files (hashicorp/hcl/v2): the core blocks
// (target, agent, process) into Go structs, feature blocks (env, fs, dns, network, steal,
// plugin) with the schema their plugin sends. Every error is a diagnostic with file:line:col and
// the source line.
//
// Nothing is implemented yet: the policy loader arrives with `kwarp exec` and `verify-config`.
package config
