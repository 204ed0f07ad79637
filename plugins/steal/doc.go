// Package steal is the incoming-traffic plugin (`kwarp plugin steal`) and its policy block.
//
// Schema is the steal block — `steal "http" "NAME" { port = …; match { … } }`, as many as the
// user likes, several even on one port — and Config the decoded block, which the agent's HTTP
// filter (agent/httpsteal) compiles too.
//
// Plugin publishes the blocks as the core's "steal" table (sdk.StealRules: each block's name
// and port) and does the control exchange for incoming traffic (sdk.StealPlugin): for a pod
// port and a mode it holds a subscription with the agent's Incoming capability — mirror (the
// command gets a copy), whole-port steal, or, in steal mode with blocks on that port, an
// HTTP-filtered steal whose filters are those blocks — and relays the agent's events: the
// subscription is in place, a connection has arrived (the core opens a tunnel with its
// token), or the agent refused because another session holds the port or an overlapping
// filter (sdk.RefusedError). The connections' bytes never pass through this process.
package steal
