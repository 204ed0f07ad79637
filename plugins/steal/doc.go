// Package steal will be the incoming-traffic plugin: mirror, whole-port steal and HTTP-filtered
// steal, subscribed through the agent's incoming capability when the local process listens.
//
// Nothing is implemented yet: it arrives with incoming traffic.
package steal
