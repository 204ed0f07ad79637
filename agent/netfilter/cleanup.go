package netfilter

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"github.com/rs/zerolog"
)

// Sweeps list the tables instead of trusting memory: they run in Close, in the guard after the
// agent died, and for other agents' leftovers, where memory is lost or never was.
//
// xts[0] is the backend rules are expected in: its IPv4 tables must be listable, or the sweep
// fails. The other listings are best effort (a node without legacy tables, a kernel without
// IPv6) and are skipped when they fail.

// listNat calls fn with the nat table of every listable backend and family.
func listNat(ctx context.Context, xts []*xtables, fn func(x *xtables, fam family, nat *saveTable) error) error {
	var errs []error
	for i, x := range xts {
		if !x.present() {
			if i == 0 {
				errs = append(errs, fmt.Errorf("%s: %s not found", x.backend, x.multi))
			}
			continue
		}
		for _, fam := range allFamilies {
			out, err := x.save(ctx, fam)
			if err != nil {
				if i == 0 && fam == ipv4 {
					errs = append(errs, err)
				}
				continue
			}
			for _, t := range parseSave(out) {
				if t.name != "nat" {
					continue
				}
				if err := fn(x, fam, t); err != nil {
					errs = append(errs, err)
				}
			}
		}
	}
	return errors.Join(errs...)
}

// listAgents returns the ids of the agents that have rules or chains anywhere.
func listAgents(ctx context.Context, xts []*xtables) (map[string]bool, error) {
	found := map[string]bool{}
	err := listNat(ctx, xts, func(_ *xtables, _ family, nat *saveTable) error {
		for _, c := range nat.chains {
			if id, ok := agentOfChain(c); ok {
				found[id] = true
			}
		}
		for _, r := range nat.rules {
			if r.agent != "" {
				found[r.agent] = true
			}
		}
		return nil
	})
	return found, err
}

// removeAgents deletes every rule whose comment names one of ids (the jumps) and their chains,
// everywhere, and returns the ids it found something of. A rule or chain someone else removed
// meanwhile is not an error.
func removeAgents(ctx context.Context, xts []*xtables, ids map[string]bool, log zerolog.Logger) ([]string, error) {
	touched := map[string]bool{}
	err := listNat(ctx, xts, func(x *xtables, fam family, nat *saveTable) error {
		// One transaction first: the jumps, then the chains (a chain still jumped to
		// cannot be deleted). Should it fail (a rule someone removed meanwhile), the same
		// one command at a time, each tolerating what is already gone.
		var lines [][]string
		for _, r := range nat.rules {
			if ids[r.agent] && r.chain != chainName(r.agent) {
				lines = append(lines, append([]string{"-D", r.chain}, r.args...))
			}
		}
		for _, c := range nat.chains {
			if id, ok := agentOfChain(c); ok && ids[id] {
				lines = append(lines, []string{"-F", c}, []string{"-X", c})
			}
		}
		if len(lines) > 0 && x.restoreNat(ctx, fam, lines) == nil {
			for _, r := range nat.rules {
				if ids[r.agent] {
					touched[r.agent] = true
				}
			}
			for _, c := range nat.chains {
				if id, ok := agentOfChain(c); ok && ids[id] {
					touched[id] = true
					log.Debug().Str("backend", string(x.backend)).Str("family", fam.name).Str("chain", c).Msg("chain removed")
				}
			}
			return nil
		}
		var errs []error
		for _, r := range nat.rules {
			if !ids[r.agent] || r.chain == chainName(r.agent) {
				continue
			}
			touched[r.agent] = true
			if err := x.do(ctx, fam, append([]string{"-D", r.chain}, r.args...)...); err != nil && !isAbsent(err) {
				errs = append(errs, err)
			}
		}
		for _, c := range nat.chains {
			id, ok := agentOfChain(c)
			if !ok || !ids[id] {
				continue
			}
			touched[id] = true
			for _, args := range [][]string{{"-F", c}, {"-X", c}} {
				if err := x.do(ctx, fam, args...); err != nil && !isAbsent(err) {
					errs = append(errs, err)
				}
			}
			log.Debug().Str("backend", string(x.backend)).Str("family", fam.name).Str("chain", c).Msg("chain removed")
		}
		return errors.Join(errs...)
	})
	removed := make([]string, 0, len(touched))
	for id := range touched {
		removed = append(removed, id)
	}
	sort.Strings(removed)
	return removed, err
}
