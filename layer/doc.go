// Package layer will intercept the user's process. Tier S: a launcher (the kwarp binary
// re-executed) installs a seccomp user-notification filter and execs the user's command; the
// filter is inherited by every child and survives exec, so static binaries and Go programs keep
// the context. The supervisor answers trapped calls with CONTINUE for local work and ADDFD for
// remote content. Tier P, later: an LD_PRELOAD shim deciding in-process from the same rule tables.
//
// Handler is the boundary to the core: the layer traps and answers, the core decides.
package layer
