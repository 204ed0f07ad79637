// Package launcher starts the user's command under the layer's seccomp filter.
//
// kwarp re-executes itself as the launcher (an internal subcommand) with one end of a
// SOCK_SEQPACKET socketpair; the parent keeps the other end. The exchange:
//
//	parent → launcher   optionally, 'V' messages: the command's environment (the parent may
//	                    start the launcher before it knows it, so that the launcher's own start
//	                    overlaps the session's; without them the command gets the launcher's)
//	parent → launcher   "KWL1", flags, the compiled BPF program (closing the socket instead
//	                    abandons the launch: the launcher exits 3 without a word)
//	launcher            looks the command up in PATH (before any filter: the lookup's stats
//	                    must not be trapped), then installs the program on the thread that will
//	                    exec, with a new listener
//	launcher → parent   the listener fd (SCM_RIGHTS), or the reason installing failed
//	parent              starts serving the listener (package supervisor)
//	parent → launcher   one ack byte: the supervisor is serving
//	launcher            execve of the command, which is trapped like any later call
//
// The ack is what makes the ordering safe: no trapped call can happen before someone answers
// it. The launcher's own Go runtime keeps running between installing the filter and exec, so
// the filter goes on one locked OS thread only (no TSYNC), which does nothing but wait and
// exec; the socket work runs on other threads, which never carry the filter (the runtime starts
// new threads from its template thread while a thread is locked). Without that split, sending
// the listener would itself be trapped once networking calls are (sendmsg), with nobody yet
// able to answer.
//
// Exit codes follow the shell: 127 when the command is not found, 126 when it cannot be
// executed; the launcher's own failures (no handshake, a filter the kernel refuses) exit 3.
package launcher
