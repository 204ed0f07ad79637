// Package steal will be the incoming-traffic plugin: mirror, whole-port steal and HTTP-filtered
// steal, subscribed through the agent's incoming capability when the local process listens.
//
// So far only its policy block is here (schema.go): Schema, which kwarp loads and checks the
// steal block with, and Config, the decoded block. The plugin itself arrives with incoming
// traffic.
package steal
