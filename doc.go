// Package kwarp runs a local process in the context of a Kubernetes pod. The module's root holds
// only repository-wide tests (package docs, forbidden dependencies); see README.md for the map.
package kwarp
