// Package core is the broker of a kwarp session, one per `kwarp exec`. It will own the session,
// the agent connection, the plugin host (start, supervise, restart, stop the feature plugins)
// and the routing of the layer's events. It evaluates the rule tables plugins publish without
// calling them and calls a plugin only for an operation with a remote effect; the bytes of files
// and connections are moved here, never through a plugin process.
//
// Nothing is implemented yet: the broker arrives with `kwarp exec` (env and files first).
package core
