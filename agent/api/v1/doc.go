// Package agentv1 is the agent's wire API, generated from agent.proto (`make proto`). The CLI
// side and the agent both import it; nothing else belongs here but the rest of the contract
// between the two (NodeIPEnv).
package agentv1

// NodeIPEnv is the agent's environment variable that holds its node's IP (the pod spec sets
// it from status.hostIP): connections from the node, the kubelet's probes, stay with the app
// under a whole-port steal.
const NodeIPEnv = "KWARP_NODE_IP"
