package env

import (
	"fmt"

	"github.com/kwarp-dev/kwarp/sdk/schema"
)

// Schema is the env policy block:
//
//	env {
//	  include  = ["DATABASE_*", "REDIS_URL"]   # globs on names; default all
//	  exclude  = ["NODE_ENV"]
//	  override = { LOG_LEVEL = "debug" }
//	}
var Schema = &schema.Block{
	Doc: "Which of the target container's environment variables the command starts with.",
	Attributes: []schema.Attribute{
		{Name: "include", Type: schema.ListOfString, Check: schema.CheckEnvGlob,
			Doc: "Globs on the names of the target's variables to take (\"*\" crosses everything); unset takes them all."},
		{Name: "exclude", Type: schema.ListOfString, Check: schema.CheckEnvGlob,
			Doc: "Globs on names never taken from the target; exclude wins over include."},
		{Name: "override", Type: schema.MapOfString, KeyCheck: schema.CheckEnvName,
			Doc: "Variables set to these values whatever the target has."},
	},
}

// Config is the decoded env block.
type Config struct {
	Include  []string          `json:"include"`
	Exclude  []string          `json:"exclude"`
	Override map[string]string `json:"override"`
}

// DecodeConfig reads the block's JSON as the core sends it; empty means no env block.
func DecodeConfig(data []byte) (Config, error) {
	var c Config
	if err := Schema.Unmarshal(data, &c); err != nil {
		return Config{}, fmt.Errorf("env block: %w", err)
	}
	return c, nil
}
