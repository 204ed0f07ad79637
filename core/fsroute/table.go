// Package fsroute evaluates the files plugin's rule table in the core: every path the user's
// process touches is routed here, without a call to the plugin, so local file work costs a glob
// match and nothing more.
package fsroute

import (
	"fmt"

	"github.com/kwarp-dev/kwarp/layer"
	"github.com/kwarp-dev/kwarp/sdk"
	"github.com/kwarp-dev/kwarp/sdk/glob"
)

// Table is a compiled sdk.FsRules.
type Table struct {
	rules           []rule
	remoteByDefault bool
}

type rule struct {
	m     glob.Matcher
	route layer.Route
}

// Compile checks every glob of the table.
func Compile(r sdk.FsRules) (*Table, error) {
	t := &Table{remoteByDefault: r.Default == sdk.RouteRemote}
	for i, fr := range r.Rules {
		m, err := glob.Compile(glob.Path, fr.Glob)
		if err != nil {
			return nil, fmt.Errorf("fs rule %d (%s %q): %w", i+1, fr.Route, fr.Glob, err)
		}
		var route layer.Route
		switch fr.Route {
		case sdk.RouteLocal:
			route = layer.Local
		case sdk.RouteRemote:
			route = layer.Remote
		case sdk.RouteNotFound:
			route = layer.NotFound
		default:
			return nil, fmt.Errorf("fs rule %d: unknown route %q", i+1, fr.Route)
		}
		t.rules = append(t.rules, rule{m: m, route: route})
	}
	return t, nil
}

// Route decides where path lives: the first rule that matches, else the mode's default.
func (t *Table) Route(path string) layer.Route {
	for _, r := range t.rules {
		if r.m.Match(path) {
			return r.route
		}
	}
	if t.remoteByDefault {
		return layer.Remote
	}
	return layer.Local
}
