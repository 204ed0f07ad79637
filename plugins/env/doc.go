// Package env will be the environment plugin: it fetches the target container's variables from
// the agent's env capability and applies the policy's include, exclude and override.
//
// Nothing is implemented yet: it arrives with `kwarp exec`.
package env
