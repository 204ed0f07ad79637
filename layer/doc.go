// Package layer intercepts the user's process. Tier S: a launcher (the kwarp binary
// re-executed) installs a seccomp user-notification filter and execs the user's command; the
// filter is inherited by every child and survives exec, so static binaries and Go programs keep
// the context. The supervisor answers trapped calls with CONTINUE for local work and ADDFD for
// remote content. Tier P, later: an LD_PRELOAD shim deciding in-process from the same rule tables.
//
// Handler (files), NetHandler (outgoing sockets) and IncomingHandler (listeners, accepted
// connections) are the boundary to the core: the layer traps and answers, the core decides. Probe tells whether this kernel can run tier S at all.
//
// Packages, one job each:
//
//	layer/seccomp     the kernel interface: the BPF filter, notification structs and ioctls
//	layer/launcher    the re-executed child's side (filter, listener handover, exec) and the
//	                  parent's side of the handshake
//	layer/supervisor  answers the trapped calls through a Handler and a NetHandler
//
// How kwarp exec puts them together (the CLI wires this; see the supervisor tests):
//
//	f := layer.Probe()                    // exit 3 with f.Check() when it fails
//	rules := slices.Concat(seccomp.NetRules, seccomp.IncomingRules) // each with its handler only
//	filter, _ := seccomp.NewFilter(seccomp.FileSyscalls, rules...)
//	cmd := exec.Command(self, "__launch", "--", argv...)   // calls launcher.Run in the child
//	h, _ := launcher.Prepare(cmd)
//	cmd.Start()
//	lis, err := h.Listener(ctx, filter, f.WaitKillableRecv) // ErrLauncherExited: take cmd's status
//	sup := supervisor.New(lis, handler, log)
//	sup.Net = netHandler                  // outgoing traffic through the pod, when on
//	sup.Incoming = incomingHandler        // the pod's incoming traffic to the process, when on
//	go sup.Serve(ctx)
//	h.Release()                           // the command execs now
//	cmd.Wait()                            // then Serve returns: the tree is gone
package layer
