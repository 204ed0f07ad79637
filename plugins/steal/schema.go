package steal

import (
	"encoding/json"
	"fmt"
	"github.com/kwarp-dev/kwarp/agent/api/stealfilter"

	"github.com/kwarp-dev/kwarp/sdk/schema"
)

// Schema is the steal policy block, of which there may be several, even on one port:
//
//	steal "http" "mine" {
//	  port = 8080
//	  match {
//	    any_of {
//	      header "x-kwarp-user" { regex = "^alice$" }
//	      path { prefix = "/api/v2/" }
//	    }
//	    method = ["GET", "POST"]
//	  }
//	}
//
// The first label is the protocol ("http" is the only one so far); the second names the rule,
// unique across the policy.
var Schema = &schema.Block{
	Doc:          "Requests on a pod port that the command receives instead of the deployed container.",
	Labels:       []string{"kind", "name"},
	LabelEnum:    map[string][]string{"kind": {"http"}},
	Repeated:     true,
	UniqueLabels: true,
	Attributes: []schema.Attribute{
		{Name: "port", Type: schema.Number, Required: true, Check: schema.CheckPort, Doc: "The pod port whose requests are filtered."},
	},
	Blocks: []schema.NestedBlock{
		{Name: "match", Block: match, Doc: "Which requests are stolen; without it, every request on the port."},
	},
}

// HTTPMethods are the methods `method` accepts: RFC 9110's and PATCH.
var HTTPMethods = []string{"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"}

// match is the body of match, all_of and any_of alike.
var match = &schema.Block{
	NotEmpty: true,
	Attributes: []schema.Attribute{
		{Name: "method", Type: schema.ListOfString, Enum: HTTPMethods, Doc: "The request's method is one of these."},
	},
	Blocks: []schema.NestedBlock{
		{Name: "header", Labels: []string{"name"}, Repeated: true, Block: stringMatch("header value"),
			Doc: "A header (named by the label, case-insensitively) whose value matches."},
		{Name: "path", Repeated: true, Block: stringMatch("path"), Doc: "The request path matches."},
		{Name: "all_of", Repeated: true, Recursive: true, Doc: "Every condition inside holds."},
		{Name: "any_of", Repeated: true, Recursive: true, Doc: "At least one condition inside holds."},
	},
}

func stringMatch(what string) *schema.Block {
	return &schema.Block{
		ExactlyOne: []string{"regex", "exact", "prefix"},
		Attributes: []schema.Attribute{
			{Name: "regex", Type: schema.String, Check: schema.CheckRegex, Doc: "The " + what + " matches this regular expression (Go RE2 syntax; unanchored unless it says ^ and $)."},
			{Name: "exact", Type: schema.String, Check: schema.CheckNonEmpty, Doc: "The " + what + " is exactly this."},
			{Name: "prefix", Type: schema.String, Check: schema.CheckNonEmpty, Doc: "The " + what + " starts with this."},
		},
	}
}

// The decoded block is the filter the agent receives (agent/api/stealfilter).
type (
	Config      = stealfilter.Config
	Match       = stealfilter.Match
	HeaderMatch = stealfilter.HeaderMatch
	StringMatch = stealfilter.StringMatch
)

// DecodeConfig reads one steal block's JSON as the core sends it.
func DecodeConfig(data []byte) (Config, error) {
	var c Config
	if len(data) == 0 {
		return Config{}, fmt.Errorf("steal block: no block to decode")
	}
	if err := schema.FromJSON(data, &c); err != nil {
		return Config{}, fmt.Errorf("steal block: %w", err)
	}
	return c, nil
}

// DecodeConfigs reads a JSON array of steal blocks, for a host that sends all of a type's
// blocks at once; empty means none.
func DecodeConfigs(data []byte) ([]Config, error) {
	if len(data) == 0 {
		return nil, nil
	}
	var raw []json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("steal blocks: %w", err)
	}
	out := make([]Config, 0, len(raw))
	for i, r := range raw {
		c, err := DecodeConfig(r)
		if err != nil {
			return nil, fmt.Errorf("steal block %d: %w", i, err)
		}
		out = append(out, c)
	}
	return out, nil
}
