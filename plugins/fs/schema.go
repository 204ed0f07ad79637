package fs

import (
	"fmt"

	"github.com/kwarp-dev/kwarp/sdk/schema"
)

// Schema is the fs policy block:
//
//	fs {
//	  mode       = "read"                 # local | localwithoverrides | read | write
//	  read_only  = ["/etc/checkout/**"]   # path globs; ** crosses /
//	  read_write = ["/data/**"]
//	  local      = ["/srv/cache/**"]
//	  not_found  = ["**/.aws/**"]
//	}
var Schema = &schema.Block{
	Doc: "Which files the command reads from the target and which stay on this machine.",
	Attributes: []schema.Attribute{
		{Name: "mode", Type: schema.String, Default: "read",
			Enum: []string{"local", "localwithoverrides", "read", "write"},
			Doc:  "Where a path no glob names goes: local (this machine), localwithoverrides (this machine, globs send some to the target), read (the target, read-only), write (the target, writable)."},
		{Name: "read_only", Type: schema.ListOfString, Check: schema.CheckPathGlob, Doc: "Paths read from the target and never written there."},
		{Name: "read_write", Type: schema.ListOfString, Check: schema.CheckPathGlob, Doc: "Paths read from and written to the target."},
		{Name: "local", Type: schema.ListOfString, Check: schema.CheckPathGlob, Doc: "Paths served by this machine."},
		{Name: "not_found", Type: schema.ListOfString, Check: schema.CheckPathGlob, Doc: "Paths the command sees as absent (ENOENT)."},
	},
}

// Config is the decoded fs block.
type Config struct {
	Mode      string   `json:"mode"`
	ReadOnly  []string `json:"read_only"`
	ReadWrite []string `json:"read_write"`
	Local     []string `json:"local"`
	NotFound  []string `json:"not_found"`
}

// DecodeConfig reads the block's JSON as the core sends it; empty means no fs block, whose
// mode is "read".
func DecodeConfig(data []byte) (Config, error) {
	var c Config
	if err := Schema.Unmarshal(data, &c); err != nil {
		return Config{}, fmt.Errorf("fs block: %w", err)
	}
	return c, nil
}
