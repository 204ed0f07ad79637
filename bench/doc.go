// Package bench holds kwarp's benchmarks (`make bench`). Every figure is reported as a ratio to a
// baseline measured in the same run (kubectl port-forward, kubectl exec, the same work without
// kwarp), never as a timed assertion in a test.
//
// No benchmark exists yet: the first ones arrive with `kwarp exec`.
package bench
