// Package stealfilter is the HTTP filter of a steal subscription as the agent receives it: one
// `steal "http"` block of the policy, as JSON. plugins/steal decodes and validates the block
// with its schema and sends it; the agent reads it here, without the plugin SDK or HCL, which it
// has no use for.
package stealfilter

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// Config is one decoded steal block.
type Config struct {
	Kind string `json:"kind"`
	Name string `json:"name"`
	Port int    `json:"port"`
	// Match is nil when the block has no match: every request on the port is stolen.
	Match *Match `json:"match"`
}

// Match is a match, all_of or any_of block. In match and all_of every condition must hold;
// in any_of one is enough. Method, each Header, each Path, each AllOf and each AnyOf is one
// condition.
type Match struct {
	Method []string      `json:"method"`
	Header []HeaderMatch `json:"header"`
	Path   []StringMatch `json:"path"`
	AllOf  []Match       `json:"all_of"`
	AnyOf  []Match       `json:"any_of"`
}

// HeaderMatch is a header block: the header Name's value matches.
type HeaderMatch struct {
	Name string `json:"name"`
	StringMatch
}

// StringMatch holds exactly one way to match a string. Exact and Prefix are never empty when
// set; an empty Regex matches any value, so a HeaderMatch with every field empty asks only
// that the header is present.
type StringMatch struct {
	Regex  string `json:"regex"`
	Exact  string `json:"exact"`
	Prefix string `json:"prefix"`
}

// Decode reads one steal block's JSON; a field it does not know is an error (a sender of
// another version), not silently a wider filter.
func Decode(data []byte) (Config, error) {
	if len(data) == 0 {
		return Config{}, errors.New("steal block: no block to decode")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var c Config
	if err := dec.Decode(&c); err != nil {
		return Config{}, fmt.Errorf("steal block: %w", err)
	}
	return c, nil
}
