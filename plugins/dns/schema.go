package dns

import (
	"fmt"

	"github.com/kwarp-dev/kwarp/sdk/schema"
)

// Schema is the dns policy block:
//
//	dns {
//	  enabled = true
//	  local   = ["*.corp.example.com"]   # names resolved on this machine
//	}
var Schema = &schema.Block{
	Doc: "Whether names resolve as in the target pod, and which stay with this machine's resolver.",
	Attributes: []schema.Attribute{
		{Name: "enabled", Type: schema.Bool, Default: true, Doc: "Resolve names in the pod; false leaves all resolution local."},
		{Name: "local", Type: schema.ListOfString, Check: schema.CheckHostGlob,
			Doc: "Host globs resolved on this machine (\"*\" crosses dots; case and a trailing dot are ignored)."},
	},
}

// Config is the decoded dns block.
type Config struct {
	Enabled bool     `json:"enabled"`
	Local   []string `json:"local"`
}

// DecodeConfig reads the block's JSON as the core sends it; empty means no dns block, which
// is enabled.
func DecodeConfig(data []byte) (Config, error) {
	var c Config
	if err := Schema.Unmarshal(data, &c); err != nil {
		return Config{}, fmt.Errorf("dns block: %w", err)
	}
	return c, nil
}
