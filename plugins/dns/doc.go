// Package dns is the name-resolution plugin (`kwarp plugin dns`): names resolve as they would
// inside the target pod. It reads the pod's resolv.conf and hosts from the agent's Dns
// capability and publishes them with the pod's nameservers and the policy's dns.local globs;
// the core serves those files to the process (so its own resolver applies the pod's search
// list and ndots, Go's pure resolver included) and hands each query to a pod nameserver to this
// plugin, which sends it through the agent.
package dns
