// Package agentv1 is the agent's wire API, generated from agent.proto (`make proto`). The CLI
// side and the agent both import it; nothing else belongs here.
package agentv1
