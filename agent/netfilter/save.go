package netfilter

import (
	"errors"
	"strings"
)

// Names kwarp's rules and chains are recognised by.
const (
	commentPrefix = "kwarp:" // comment "kwarp:<agent id>:<session>"
	chainPrefix   = "KWARP-" // chain "KWARP-<agent id>"
)

// saveTable is one table of iptables-save output.
type saveTable struct {
	name   string
	chains []string // user-defined chains
	rules  []saveRule
}

// saveRule is one "-A CHAIN ARGS…" line.
type saveRule struct {
	chain string
	args  []string // after "-A CHAIN", as iptables takes them back
	agent string   // agent id from a kwarp comment, "" for anyone else's rule
}

// parseSave reads iptables-save output. Lines it cannot split are kept out of the rules (and
// so never deleted): only rules it fully understands are acted on.
func parseSave(out string) []*saveTable {
	var tables []*saveTable
	var cur *saveTable
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || line[0] == '#' || line == "COMMIT":
		case line[0] == '*':
			cur = &saveTable{name: line[1:]}
			tables = append(tables, cur)
		case cur == nil:
		case line[0] == ':':
			name, _, _ := strings.Cut(line[1:], " ")
			if !builtinChain[name] {
				cur.chains = append(cur.chains, name)
			}
		case strings.HasPrefix(line, "-A "):
			args, err := splitArgs(line)
			if err != nil || len(args) < 2 {
				continue
			}
			r := saveRule{chain: args[1], args: args[2:]}
			for i := 0; i+1 < len(r.args); i++ {
				if r.args[i] == "--comment" {
					if id, _, ok := parseComment(r.args[i+1]); ok {
						r.agent = id
					}
				}
			}
			cur.rules = append(cur.rules, r)
		}
	}
	return tables
}

var builtinChain = map[string]bool{"PREROUTING": true, "INPUT": true, "FORWARD": true, "OUTPUT": true, "POSTROUTING": true}

// parseComment splits "kwarp:<id>:<session>".
func parseComment(c string) (id, session string, ok bool) {
	rest, ok := strings.CutPrefix(c, commentPrefix)
	if !ok {
		return "", "", false
	}
	id, session, ok = strings.Cut(rest, ":")
	if !ok || checkID(id) != nil {
		return "", "", false
	}
	return id, session, true
}

// agentOfChain returns the agent id of a chain named "KWARP-<id>".
func agentOfChain(name string) (string, bool) {
	id, ok := strings.CutPrefix(name, chainPrefix)
	if !ok || checkID(id) != nil {
		return "", false
	}
	return id, true
}

// countForeign counts the rules that are not kwarp's: in nat, and in every table.
func countForeign(tables []*saveTable) (nat, all int) {
	for _, t := range tables {
		for _, r := range t.rules {
			if r.agent != "" {
				continue
			}
			if _, ours := agentOfChain(r.chain); ours {
				continue
			}
			all++
			if t.name == "nat" {
				nat++
			}
		}
	}
	return nat, all
}

// splitArgs splits an iptables-save line into arguments: words separated by blanks, with
// double-quoted strings (in which \" and \\ stand for " and \) as iptables-save writes a
// comment.
func splitArgs(line string) ([]string, error) {
	var args []string
	var cur strings.Builder
	in, quoted := false, false
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case quoted && c == '\\' && i+1 < len(line):
			i++
			cur.WriteByte(line[i])
		case c == '"':
			quoted = !quoted
			in = true
		case !quoted && (c == ' ' || c == '\t'):
			if in {
				args = append(args, cur.String())
				cur.Reset()
				in = false
			}
		default:
			cur.WriteByte(c)
			in = true
		}
	}
	if quoted {
		return nil, errors.New("unterminated quote")
	}
	if in {
		args = append(args, cur.String())
	}
	return args, nil
}
