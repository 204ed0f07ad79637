// Package fs will be the files plugin: it publishes the path rule table (local, read_only,
// read_write, not_found globs and the mode) and, for a remote open, does the control exchange
// with the agent's fs capability. The file's bytes are moved by the core, not here.
//
// Nothing is implemented yet: it arrives with `kwarp exec`.
package fs
