// Package plugins holds kwarp's built-in feature plugins, one folder each (fs, env, dns, net,
// steal). Each is a hashicorp/go-plugin module served by the kwarp binary re-executed
// (`kwarp plugin fs`) and written on sdk/ only, as a third-party plugin would be.
package plugins
