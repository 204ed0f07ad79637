// Package config reads kwarp's HCL policy files (hashicorp/hcl/v2), the language DESIGN.md
// fixes as a contract: `kwarp exec -f` and `kwarp verify-config` load a policy with Load or
// LoadFile and print what is wrong with Print.
//
// A policy has two kinds of block. The core blocks (target, agent, process, plugin) belong to
// kwarp itself and decode into the Go structs of this package. The feature blocks (env, fs,
// dns, network, steal, and any a third-party plugin registers) belong to plugins: the caller
// passes each block type's sdk/schema.Block, and the block is decoded and checked with it, so
// the loader never learns what a feature means. A feature block ends up as a cty value and as
// the JSON the plugin receives. A plugin block's `config { ... }` body is kept raw, since only
// the plugin (running, later) can say what its schema is.
//
// Core blocks are declared with sdk/schema too, so every diagnostic, core or feature, has the
// same shape: a summary, a detail that says what is allowed (and "Did you mean" when a name or
// value is close), and a subject range on the offending value, which Print turns into
//
//	kwarp.hcl:12:10: error: Invalid value for "mode"
//
//	  on kwarp.hcl line 12, in fs:
//	  12:   mode = "raed"
//	               ^^^^^^
//
//	"raed" is not allowed here: "mode" must be one of "local", "localwithoverrides", "read"
//	or "write". Did you mean "read"?
package config
