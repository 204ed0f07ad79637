// Package pluginv1 is the core–plugin protocol generated from plugin.proto (`make proto`).
// Plugin authors use package sdk, which wraps it.
package pluginv1
