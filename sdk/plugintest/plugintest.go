// Package plugintest is the conformance suite every kwarp plugin runs, built-in or third
// party: Run serves the plugin over go-plugin's real gRPC path (in memory, no subprocess) and
// checks what the core relies on — the plugin names itself, every block it owns comes with a
// schema that survives the trip as JSON, and it configures with no block at all (the user's
// policy may not mention it) into rule tables the core can read.
//
//	func TestConformance(t *testing.T) { plugintest.Run(t, func() sdk.Plugin { return New() }) }
package plugintest

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	plugin "github.com/hashicorp/go-plugin"

	"github.com/kwarp-dev/kwarp/sdk"
	"github.com/kwarp-dev/kwarp/sdk/pluginv1"
	"github.com/kwarp-dev/kwarp/sdk/schema"
)

// Run checks the plugin mk makes through the gRPC path the core uses.
func Run(t *testing.T, mk func() sdk.Plugin) {
	t.Helper()
	c := Connect(t, mk())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	info, err := c.Info(ctx)
	if err != nil {
		t.Fatalf("Info: %v", err)
	}
	if info.Name == "" {
		t.Error("Info: the plugin has no name")
	}
	if len(info.Schemas) != len(info.Blocks) {
		t.Fatalf("Info: %d schemas for %d blocks", len(info.Schemas), len(info.Blocks))
	}
	for i, block := range info.Blocks {
		var b schema.Block
		if err := json.Unmarshal(info.Schemas[i], &b); err != nil {
			t.Errorf("block %q: schema is not an sdk/schema.Block: %v", block, err)
			continue
		}
		if err := b.Validate(); err != nil {
			t.Errorf("block %q: schema after the JSON trip: %v", block, err)
		}
	}
	resp, err := c.Configure(ctx, &pluginv1.ConfigureRequest{Session: &pluginv1.Session{Id: "plugintest", Targetless: true}})
	if err != nil {
		t.Fatalf("Configure with no blocks (the user's policy may not mention the plugin): %v", err)
	}
	for name, table := range resp.Rules {
		if !json.Valid(table) {
			t.Errorf("rule table %q is not JSON: %q", name, table)
		}
	}
}

// Connect serves impl over go-plugin's real gRPC path (in memory, no subprocess) and returns
// the host's client, as the core holds it: for testing a feature service across the plugin
// boundary (sdk.SubscribeIncoming, Client.Net…). Both ends stop with the test.
func Connect(t testing.TB, impl sdk.Plugin) *sdk.Client {
	t.Helper()
	client, server := plugin.TestPluginGRPCConn(t, false, plugin.PluginSet{sdk.PluginName: &sdk.GRPCPlugin{Impl: impl}})
	// the server first: client.Close asks a live server to stop itself (go-plugin's
	// controller), which would race with a Stop here
	t.Cleanup(func() { server.Stop(); client.Close() })
	raw, err := client.Dispense(sdk.PluginName)
	if err != nil {
		t.Fatal(err)
	}
	c, ok := raw.(*sdk.Client)
	if !ok {
		t.Fatalf("dispensed %T, want *sdk.Client", raw)
	}
	return c
}

// CheckSchema checks a block schema is valid and survives the JSON trip a plugin's Info makes.
func CheckSchema(t *testing.T, b *schema.Block) {
	t.Helper()
	if err := b.Validate(); err != nil {
		t.Fatal(err)
	}
	data, err := json.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	var back schema.Block
	if err := json.Unmarshal(data, &back); err != nil || back.Validate() != nil {
		t.Fatalf("schema does not survive JSON: %v %v", err, back.Validate())
	}
}
