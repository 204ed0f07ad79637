// Command kwarp-agent-init is the agent container's first process and the agent's netfilter
// guard, a program a fraction of the agent's size: it lives as long as the agent, and the guard
// as long as the agent's rules, so what each keeps resident counts for the whole session.
//
//	kwarp-agent-init AGENT-FLAGS...       runs /…/kwarp-agent (beside it) as its child (agent/supervise)
//	kwarp-agent-init __netfilter-guard …  is the guard of an agent's rules (agent/netfilter)
//
// Exit status: the agent's (128+n for its death by signal n), or the guard's.
package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/kwarp-dev/kwarp/agent/netfilter"
	"github.com/kwarp-dev/kwarp/agent/supervise"
)

// agentName is the agent's executable, beside this one in the image.
const agentName = "kwarp-agent"

func main() {
	if len(os.Args) > 1 && os.Args[1] == netfilter.GuardArg {
		os.Exit(netfilter.RunGuard(os.Args[2:], os.Stderr))
	}
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, "kwarp-agent-init: find its own executable:", err)
		os.Exit(1)
	}
	os.Exit(supervise.Run(filepath.Join(filepath.Dir(self), agentName), os.Args[1:]))
}
