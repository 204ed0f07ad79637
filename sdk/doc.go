// Package sdk will be everything a kwarp plugin author imports: the feature interfaces with
// Go-native request and response types, the schema builder for a policy block, Serve (the
// hashicorp/go-plugin entry point) and a conformance test harness. The built-in plugins are
// written on it exactly as a third party would be. Nothing in sdk imports core, so it can become
// a module of its own.
//
// Nothing is implemented yet: the SDK arrives with the env and fs plugins.
package sdk
