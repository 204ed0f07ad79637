// Package sdk is everything a kwarp plugin author imports. kwarp's built-in plugins (env, fs,
// dns, net, steal) are written on it exactly as a third-party plugin is.
//
// A plugin is a separate executable served with Serve. The core starts it, asks for its Info
// (name, the policy blocks it owns and their schemas), decodes the user's blocks with those
// schemas and calls Configure. The plugin answers with rule tables — path globs, host and port
// filters, name lists — that the core evaluates by itself for every operation of the user's
// process; the plugin is called only for an operation with a remote effect, which costs a
// cluster round trip anyway. Bytes of files and connections never pass through a plugin: the
// plugin decides and does the control exchange with its agent capability (Config.Agent is a
// connection to the agent's API brokered by the core), the core moves the content.
//
// A feature plugin implements Plugin and one feature interface (EnvPlugin, FsPlugin, …):
//
//	type envPlugin struct{ cfg env.Config; agent agentv1.EnvClient }
//
//	func (p *envPlugin) Info() sdk.Info { return sdk.Info{Name: "env", Blocks: map[string]any{"env": env.Schema}} }
//	func (p *envPlugin) Configure(ctx context.Context, c sdk.Config) (sdk.Rules, error) { … }
//	func (p *envPlugin) Compute(ctx context.Context, local []sdk.EnvVar) (sdk.EnvResult, error) { … }
//
//	func main() { sdk.Serve(&envPlugin{}) }
//
// Nothing in sdk imports kwarp's core, so it can become a module of its own.
package sdk

import (
	"context"

	"google.golang.org/grpc"
)

// Info describes a plugin.
type Info struct {
	Name    string
	Version string
	// Blocks maps each policy block type the plugin owns ("env") to its schema, a value that
	// marshals to JSON as an sdk/schema.Block.
	Blocks map[string]any
}

// Session is what a plugin knows about the session it serves.
type Session struct {
	ID         string
	Targetless bool
	Namespace  string
	Pod        string
	Container  string
	// Home and Workdir are the user's, on this machine (for defaults such as credentials
	// under the home directory).
	Home    string
	Workdir string
}

// Config is what Configure receives.
type Config struct {
	// Blocks holds the user's decoded blocks as JSON by block type; a missing key means the
	// user wrote no such block and the plugin's defaults apply.
	Blocks  map[string][]byte
	Session Session
	// Agent is a connection to the agent's gRPC API (agent/api/v1), brokered by the core.
	Agent grpc.ClientConnInterface
}

// Rules are the tables the core evaluates alone, by feature ("fs" → FsRules), each a value
// that marshals to JSON. Notes are one-time messages the core prints for the user.
type Rules struct {
	Tables map[string]any
	Notes  []string
}

// Plugin is what every plugin implements.
type Plugin interface {
	Info() Info
	Configure(ctx context.Context, cfg Config) (Rules, error)
}

// EnvVar is one environment variable.
type EnvVar struct{ Name, Value string }

// EnvResult is the environment the user's command starts with.
type EnvResult struct {
	Vars []EnvVar
	// Imported names the variables that came from the target, so the layer can restore them
	// in a child whose launcher dropped them.
	Imported []string
}

// EnvPlugin computes the command's environment from the local one and the target's.
type EnvPlugin interface {
	Plugin
	Compute(ctx context.Context, local []EnvVar) (EnvResult, error)
}
