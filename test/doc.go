// Package test holds what kwarp's tests share: cluster/ starts the real local Kubernetes cluster,
// netns/ runs code in the "laptop" network namespace, kube/ helps e2e tests use the cluster,
// workloads/ are the servers deployed as targets, and e2e/ the end-to-end tests themselves.
package test
