// Package netfilter steals a TCP port of the target's network namespace: it redirects the
// connections that arrive on the port from outside the pod to a port the agent listens on in
// that namespace, and gives the port back, leaving the namespace's rules as it found them
// however the agent ends.
//
// # Rules
//
// Each agent has a chain of its own in the nat table, KWARP-<agent id>, jumped to from the top
// of PREROUTING; each redirect is one rule in it:
//
//	-A PREROUTING -p tcp -m comment --comment "kwarp:<id>:" -j KWARP-<id>
//	-A KWARP-<id> -p tcp --dport 8080 -m comment --comment "kwarp:<id>:<session>" -j REDIRECT --to-ports 41234
//
// Every rule kwarp adds carries a comment "kwarp:<agent id>:<session>" (the session empty on
// the jump), so whoever lists the table sees whose it is, and cleaning up never has to guess:
// it deletes exactly the rules whose comment names an agent, and that agent's chain.
//
// The jump is inserted first in PREROUTING because a mesh sidecar's init container (istio-init,
// linkerd-init) has already appended its own jump there that REDIRECTs every inbound port to
// its proxy (istio: ISTIO_INBOUND → 15006). REDIRECT ends the traversal, so whichever rule
// comes first takes the connection: ours must. A port the agent does not steal falls through
// our chain and on to the mesh's rules unchanged.
//
// # PREROUTING only, no OUTPUT
//
// nat PREROUTING sees connections that arrive from outside the pod (Services, ingress, other
// pods, the kubelet's probes); it does not see the pod's own local connections, whose address
// translation the kernel decides once, in OUTPUT (a packet looped back through lo does not
// traverse nat PREROUTING again). Those are left alone on purpose:
//
//   - Stealing from OUTPUT would have to be limited to local destinations by hand (else the
//     app's outgoing connections to port 8080 elsewhere would be stolen too) and would catch the
//     agent's own connections: a filtered steal passes non-matching requests through to the
//     original port from inside the namespace, which OUTPUT would redirect back to the agent, a
//     loop that needs marks or owner matches to break.
//   - What it would buy is the hop from a mesh proxy to the app (plaintext where the proxy
//     terminated mTLS) and the pod's containers talking to each other over localhost. With a
//     mesh, our PREROUTING rule takes the connection before the proxy does; with strict mTLS its
//     bytes are TLS, which the steal service will have to report rather than hide.
//
// So a steal takes the pod's traffic from the network; local callers keep the deployed app.
// OUTPUT can be added as a second chain of the same agent when the mesh hop is wanted.
//
// # Backends
//
// The kernel has two interfaces for these tables, the legacy x_tables one and nf_tables, and a
// namespace can hold rules in both. Mixing matters: a mesh's nat REDIRECT in one and ours in the
// other run at the same hook priority, in an order no one chose. So New looks at what the
// namespace already uses (iptables-legacy-save and iptables-nft-save; rules of kwarp's own do
// not count) and adds its rules with the same one: the backend with nat rules, else the one with
// any rules, else nf_tables, the one every current distribution defaults to (and listing legacy
// tables never instantiates them, so an nf_tables-only node never gets legacy tables from us).
//
// Both are Debian's iptables (xtables-legacy-multi, xtables-nft-multi and their extension
// libraries), packed into the agent image with their shared libraries (Makefile target image).
// They run inside the target's namespace because they are forked from a thread that is in it:
// see Runner.
//
// IPv6: rules go into ip6tables too when its tables can be listed in the namespace; IPv4 is
// required, IPv6 best effort (a failure disables it with a warning).
//
// # Established connections
//
// A redirect applies to new connections: the nat decision is made on a connection's first
// packet and kept in its conntrack entry. A keep-alive connection opened before the redirect
// would stay with the app for as long as the client keeps it. After adding a redirect, Add
// deletes (netlink, conntrack.go) the conntrack entries of connections from outside to a local
// address on that port. The connection's next packet from the client then makes a new entry,
// gets redirected and arrives at the agent's listener, which knows no such connection and
// answers with a reset: the client sees the connection fail and reconnects, into the steal. A
// TCP connection cannot move between sockets; failing fast is what "moving" can mean. (If the
// app speaks first after the flush, its packet makes an entry without redirection and the
// connection stays with the app until it ends.) A redirect added with
// AddOptions.KeepEstablished (a mirror's) does neither: no flush, and its rule matches SYNs
// only, so that connections conntrack first sees mid-stream stay with the app.
//
// # Cleanup: the guard, the lock and stale rules
//
// Close removes every rule and chain of the agent. So that they go however the agent ends,
// SIGKILL and OOM included, the first Add starts a guard (guard.go): the agent's executable
// again, in a hidden mode, holding the read end of a pipe whose write end only the agent has.
// When the agent dies the pipe closes, the guard wakes up, removes every rule whose comment
// names the agent, and exits. An agent that never redirects never starts one.
//
// Each agent also holds a lock in the target's namespace for as long as it lives: an abstract
// unix socket named after its id (lock.go). Abstract socket names are scoped to a network
// namespace and released by the kernel when the socket's last holder dies, whatever killed it,
// so "can the name be bound?" is an exact "is that agent dead?" asked where its rules are,
// whichever PID or mount namespace the asking agent runs in. RemoveStale (run when an agent
// starts) removes the rules of every agent whose lock is free: what a guard killed together
// with its agent (a container killed as a whole) left behind.
package netfilter

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"
)

// Runner runs fn on an OS thread that is inside the target's network namespace, and returns
// fn's error. A process fn starts (os/exec) runs in that namespace: the kernel copies the
// namespaces of the forking thread, not of the process, and Go forks on the calling thread.
// *netns.Dialer is a Runner.
type Runner interface {
	Run(fn func() error) error
}

// RunnerFunc makes a function a Runner.
type RunnerFunc func(fn func() error) error

// Run calls f(fn).
func (f RunnerFunc) Run(fn func() error) error { return f(fn) }

// Here runs fn on the calling goroutine: for a process that lives in the target's namespace
// already (the guard).
var Here Runner = RunnerFunc(func(fn func() error) error { return fn() })

// Backend is the kernel interface rules are added with.
type Backend string

// The two backends of iptables.
const (
	Legacy Backend = "legacy" // x_tables, xtables-legacy-multi
	NFT    Backend = "nft"    // nf_tables, xtables-nft-multi
)

// DefaultBinDir is where the iptables binaries are, on Debian and in the agent image.
const DefaultBinDir = "/usr/sbin"

// Options tune a Redirector; the zero value is what the agent uses.
type Options struct {
	Log zerolog.Logger
	// BinDir holds xtables-legacy-multi and xtables-nft-multi; "" is DefaultBinDir.
	BinDir string
	// Backend forces a backend; "" detects it (see the package doc).
	Backend Backend
	// GuardExe is the executable started as the guard, with GuardArg as its first argument;
	// "" is this process's own (/proc/self/exe), whose main must call RunGuard then.
	GuardExe string
}

// Redirector adds and removes the redirects of one agent in one network namespace.
type Redirector struct {
	ns   Runner
	id   string
	opts Options
	log  zerolog.Logger

	mu       sync.Mutex
	nsid     nsID     // the namespace the Redirector was made in; every call checks it
	backend  Backend  // where rules are added
	families []family // ipv4, and ipv6 when usable
	lockFD   int      // the agent's lock in the namespace; -1 once released
	chain    bool     // our chain and jump exist (in every family of families)
	touched  bool     // a rule was ever added: Close must sweep
	rules    []*redirect
	guard    *guard
	closed   bool
	held     int // connections a redirect took that are still open (Hold)

	skipFlush bool // tests: show what the flush changes
}

type redirect struct {
	port, toPort int
	session      string
	synOnly      bool     // matches new connections' SYNs only (AddOptions.KeepEstablished)
	fams         []family // the families it was added in
	removed      bool
}

// nsID names a network namespace: the device and inode of its nsfs file.
type nsID struct{ dev, ino uint64 }

// ErrClosed is returned by calls on a closed Redirector.
var ErrClosed = errors.New("netfilter: redirector closed")

// NewID returns a fresh agent id: 12 random hex digits.
func NewID() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// maxIDLen keeps the chain name "KWARP-<id>" within iptables' 28 characters.
const maxIDLen = 22

// checkID accepts 1 to 22 ASCII letters and digits: part of a chain name and of comments,
// whose ':' separators it must not contain.
func checkID(id string) error {
	if id == "" || len(id) > maxIDLen {
		return fmt.Errorf("netfilter: agent id %q: want 1 to %d letters or digits", id, maxIDLen)
	}
	for _, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return fmt.Errorf("netfilter: agent id %q: want letters and digits only", id)
		}
	}
	return nil
}

// checkSession accepts 1 to 64 characters of [A-Za-z0-9._-] (kwarp's session ids are hex).
func checkSession(s string) error {
	if s == "" || len(s) > 64 {
		return fmt.Errorf("netfilter: session %q: want 1 to 64 characters", s)
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("netfilter: session %q: unexpected character %q", s, c)
		}
	}
	return nil
}

// New takes agentID's lock in ns's network namespace and picks the backend. It adds nothing:
// the chain, the jump and the guard come with the first Add. It fails when the id is in use
// there (another Redirector of the same id lives) or when neither backend can list the
// namespace's tables (the iptables binaries are missing, or NET_ADMIN is).
func New(ctx context.Context, ns Runner, agentID string, opts Options) (*Redirector, error) {
	if err := checkID(agentID); err != nil {
		return nil, err
	}
	if opts.BinDir == "" {
		opts.BinDir = DefaultBinDir
	}
	if opts.GuardExe == "" {
		opts.GuardExe = "/proc/self/exe"
	}
	r := &Redirector{ns: ns, id: agentID, opts: opts, lockFD: -1,
		log: opts.Log.With().Str("netfilter_id", agentID).Logger()}
	err := ns.Run(func() error {
		id, err := threadNetns()
		if err != nil {
			return err
		}
		r.nsid = id
		r.lockFD, err = takeLock(agentID)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("netfilter: %w", err)
	}
	backend, fams, why, err := r.pickBackend(ctx)
	if err != nil {
		r.releaseLock()
		return nil, err
	}
	r.backend, r.families = backend, fams
	r.log.Debug().Str("backend", string(backend)).Int("families", len(fams)).Str("why", why).Msg("netfilter backend")
	return r, nil
}

// ID is the agent id the Redirector's rules carry.
func (r *Redirector) ID() string { return r.id }

// Backend is the backend the Redirector adds rules with.
func (r *Redirector) Backend() Backend { return r.backend }

// Chain is the name of the agent's chain in the nat table.
func (r *Redirector) Chain() string { return chainName(r.id) }

func chainName(id string) string { return chainPrefix + id }

// run calls fn in the namespace the Redirector was made in, and fails if the Runner is in
// another one now (the target moved: its rules, if any, stay where they were).
func (r *Redirector) run(fn func() error) error {
	return r.ns.Run(func() error {
		id, err := threadNetns()
		if err != nil {
			return err
		}
		if id != r.nsid {
			return errors.New("netfilter: the target's network namespace changed")
		}
		return fn()
	})
}

// threadNetns identifies the calling thread's network namespace.
func threadNetns() (nsID, error) {
	var st unix.Stat_t
	if err := unix.Stat("/proc/thread-self/ns/net", &st); err != nil {
		return nsID{}, fmt.Errorf("stat /proc/thread-self/ns/net: %w", err)
	}
	return nsID{st.Dev, st.Ino}, nil
}

// backendView is what a backend's listing of the namespace showed.
type backendView struct {
	b        Backend
	ok       [2]bool // per family (allFamilies): the listing worked
	nat, all int     // rules that are not kwarp's: in nat, in every table
	errs     []string
}

// pickBackend lists the namespace with each backend (the forced one only, if any) and picks
// one (choose), with the families it can serve.
func (r *Redirector) pickBackend(ctx context.Context) (Backend, []family, string, error) {
	var views []backendView
	for _, b := range []Backend{Legacy, NFT} {
		if r.opts.Backend != "" && b != r.opts.Backend {
			continue
		}
		v := backendView{b: b}
		x := r.xt(b)
		for i, fam := range allFamilies {
			out, err := x.save(ctx, fam)
			if err != nil {
				v.errs = append(v.errs, err.Error())
				continue
			}
			v.ok[i] = true
			n, a := countForeign(parseSave(out))
			v.nat += n
			v.all += a
		}
		views = append(views, v)
	}
	best, why := choose(views)
	if best == nil {
		var msgs []string
		for _, v := range views {
			msgs = append(msgs, fmt.Sprintf("%s: %s", v.b, strings.Join(v.errs, "; ")))
		}
		return "", nil, "", fmt.Errorf("netfilter: no iptables backend can list the target's tables (%s)", strings.Join(msgs, " | "))
	}
	if r.opts.Backend != "" {
		why = "forced"
	}
	fams := []family{ipv4}
	if best.ok[1] {
		fams = append(fams, ipv6)
	} else {
		r.log.Warn().Strs("errors", best.errs).Msg("ip6tables unusable in the target's namespace: IPv6 connections will not be redirected")
	}
	return best.b, fams, why, nil
}

// choose picks among the backends whose IPv4 tables could be listed: the one with more nat
// rules (where a mesh's redirect is, and where ours go), else the one with more rules, else
// nf_tables. nil when none could be listed.
func choose(views []backendView) (*backendView, string) {
	var best *backendView
	why := ""
	for i := range views {
		v := &views[i]
		if !v.ok[0] {
			continue
		}
		switch {
		case best == nil:
			best, why = v, "the only one that can list the tables"
		case v.nat != best.nat:
			if v.nat > best.nat {
				best = v
			}
			why = "more nat rules"
		case v.all != best.all:
			if v.all > best.all {
				best = v
			}
			why = "more rules"
		default:
			if v.b == NFT {
				best = v
			}
			why = "as many rules in both (none, usually): nf_tables"
		}
	}
	return best, why
}

// Add redirects TCP connections that arrive from outside the namespace on port to toPort (a
// port the agent listens on in the namespace, on its wildcard or the pod's address: REDIRECT
// rewrites the destination to the address of the interface the packet came in on), for
// session. Connections already established to port are reset on their next packet (see the
// package doc), unless the port was redirected already. The returned func removes this
// redirect; calling it again does nothing. Connections it redirected stay with the agent until
// they end (the kernel keeps a connection's translation): closing them is the caller's.
//
// Several redirects may name the same port: the first added wins until it is removed.
func (r *Redirector) Add(port, toPort int, session string) (remove func() error, err error) {
	return r.AddWith(port, toPort, session, AddOptions{})
}

// AddOptions tune one redirect.
type AddOptions struct {
	// KeepEstablished leaves the connections established before the redirect with the app:
	// for a mirror, which must not reset the clients of the app it only copies. There is no
	// conntrack flush, and the rule matches SYNs only (--syn): a namespace where nothing used
	// conntrack before the redirect has no entries for its open connections, and the first
	// packet conntrack sees of one (mid-stream, taken as new) would otherwise be redirected to
	// the agent, which answers it with a reset.
	KeepEstablished bool
}

// AddWith is Add with options.
func (r *Redirector) AddWith(port, toPort int, session string, o AddOptions) (remove func() error, err error) {
	if port < 1 || port > 65535 || toPort < 1 || toPort > 65535 {
		return nil, fmt.Errorf("netfilter: ports %d → %d: want 1 to 65535", port, toPort)
	}
	if err := checkSession(session); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, ErrClosed
	}
	if err := r.ensureGuard(); err != nil {
		return nil, err
	}
	r.touched = true
	if err := r.ensureChain(ctx); err != nil {
		return nil, err
	}
	// A port already redirected keeps its connections: they are the agent's already, and
	// resetting them would cut another session's.
	flush := !r.skipFlush && !o.KeepEstablished
	for _, o := range r.rules {
		if o.port == port && !o.removed {
			flush = false
		}
	}
	rd := &redirect{port: port, toPort: toPort, session: session, synOnly: o.KeepEstablished}
	x := r.xt(r.backend)
	for _, fam := range r.families {
		err := x.do(ctx, fam, append([]string{"-A", r.Chain()}, r.redirectSpec(rd)...)...)
		if err == nil {
			rd.fams = append(rd.fams, fam)
			continue
		}
		if fam == ipv4 { // the first family: nothing of rd's to undo
			r.teardownIfIdle(ctx)
			return nil, err
		}
		r.log.Warn().Err(err).Msg("ip6tables: cannot add the redirect, IPv6 connections will not be redirected")
		r.dropFamily(fam)
	}
	r.rules = append(r.rules, rd)
	r.log.Info().Int("port", port).Int("to_port", toPort).Str("session", session).
		Str("backend", string(r.backend)).Msg("redirect added")

	var flushed int
	var ferr error
	if flush {
		ferr = r.run(func() (err error) {
			flushed, err = flushConntrack(uint16(port))
			return err
		})
	}
	if ferr != nil {
		r.log.Warn().Err(ferr).Int("port", port).Msg("conntrack flush failed: connections established before the redirect stay with the app")
	} else if flushed > 0 {
		r.log.Info().Int("port", port).Int("connections", flushed).Msg("established connections reset into the redirect")
	}

	return func() error {
		ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
		defer cancel()
		r.mu.Lock()
		defer r.mu.Unlock()
		if rd.removed || r.closed {
			return nil
		}
		err := r.removeRedirect(ctx, rd)
		r.teardownIfIdle(ctx)
		return err
	}, nil
}

// RemoveSession removes every redirect session added.
func (r *Redirector) RemoveSession(session string) error {
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil
	}
	var errs []error
	for _, rd := range r.rules {
		if rd.session == session && !rd.removed {
			errs = append(errs, r.removeRedirect(ctx, rd))
		}
	}
	r.teardownIfIdle(ctx)
	return errors.Join(errs...)
}

// Close removes every rule and chain of this agent from the namespace (listed, not
// remembered: whatever an interrupted call left is found too), releases the agent's lock and
// lets the guard go. Calls after Close fail with ErrClosed; Close again does nothing.
func (r *Redirector) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil
	}
	r.closed = true
	var err error
	if r.touched {
		ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
		_, err = removeAgents(ctx, r.xts(), map[string]bool{r.id: true}, r.log)
		cancel()
		if err == nil {
			r.chain = false
		}
	}
	r.stopGuard(err == nil)
	r.releaseLock()
	if err != nil {
		return fmt.Errorf("netfilter: close: %w (the guard will try again)", err)
	}
	return nil
}

// RemoveStale removes the rules and chains of agents that no longer exist (their lock in the
// namespace is free), in both backends and both families, and returns their ids. The rules of
// live agents, this one's included, are left alone.
func (r *Redirector) RemoveStale(ctx context.Context) ([]string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, ErrClosed
	}
	xts := r.xts()
	found, err := listAgents(ctx, xts)
	var dead map[string]bool
	for id := range found {
		if id == r.id {
			continue
		}
		var held bool
		if lerr := r.run(func() (err error) { held, err = lockHeld(id); return err }); lerr != nil {
			err = errors.Join(err, lerr)
			continue
		}
		if held {
			r.log.Debug().Str("other_agent", id).Msg("rules of a live agent left alone")
			continue
		}
		if dead == nil {
			dead = map[string]bool{}
		}
		dead[id] = true
	}
	if len(dead) == 0 {
		return nil, err
	}
	removed, rerr := removeAgents(ctx, xts, dead, r.log)
	for _, id := range removed {
		r.log.Info().Str("stale_agent", id).Msg("removed the rules of an agent that is gone")
	}
	return removed, errors.Join(err, rerr)
}

// xt returns backend b's commands, run in the Redirector's namespace.
func (r *Redirector) xt(b Backend) *xtables {
	return newXtables(b, r.opts.BinDir, RunnerFunc(r.run))
}

// xts are both backends, for sweeps: the rules of an agent are wherever it put them.
func (r *Redirector) xts() []*xtables {
	return []*xtables{r.xt(r.backend), r.xt(other(r.backend))}
}

func other(b Backend) Backend {
	if b == Legacy {
		return NFT
	}
	return Legacy
}

func (r *Redirector) comment(session string) string { return commentPrefix + r.id + ":" + session }

func (r *Redirector) jumpSpec() []string {
	return []string{"PREROUTING", "-p", "tcp", "-m", "comment", "--comment", r.comment(""), "-j", r.Chain()}
}

// keeperSpec is the first rule of our chain. It matches nothing that matters (INVALID packets
// fall through to the namespace's own rules as before), but it uses connection tracking, and
// the kernel tracks connections in a namespace only while a rule there needs it: the last
// REDIRECT removed would otherwise take conntrack, and with it the address translation of the
// connections that redirect took, which then stall (a response the agent writes never reaches
// its client). The chain, keeper included, goes when the last redirect is gone and the last
// connection held (Hold) has closed.
func (r *Redirector) keeperSpec() []string {
	return []string{"-m", "conntrack", "--ctstate", "INVALID", "-m", "comment", "--comment", r.comment(""), "-j", "RETURN"}
}

// Hold keeps the chain (and so the namespace's connection tracking) while a connection a
// redirect took is open: call it for each accepted connection and the returned func when it
// closes. Removing the last redirect then leaves the chain until the last held connection
// closes.
func (r *Redirector) Hold() (release func()) {
	r.mu.Lock()
	r.held++
	r.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
			defer cancel()
			r.mu.Lock()
			defer r.mu.Unlock()
			r.held--
			if r.held == 0 && !r.closed {
				r.teardownIfIdle(ctx)
			}
		})
	}
}

func (r *Redirector) redirectSpec(rd *redirect) []string {
	spec := []string{"-p", "tcp"}
	if rd.synOnly {
		spec = append(spec, "--syn")
	}
	return append(spec, "--dport", fmt.Sprint(rd.port), "-m", "comment", "--comment", r.comment(rd.session),
		"-j", "REDIRECT", "--to-ports", fmt.Sprint(rd.toPort))
}

// ensureChain creates the agent's chain and inserts the jump to it first in PREROUTING.
func (r *Redirector) ensureChain(ctx context.Context) error {
	if r.chain {
		return nil
	}
	x := r.xt(r.backend)
	for _, fam := range r.families {
		err := x.do(ctx, fam, "-N", r.Chain())
		if err != nil && !isExists(err) {
			if fam == ipv6 {
				r.log.Warn().Err(err).Msg("ip6tables: cannot create the chain, IPv6 connections will not be redirected")
				r.dropFamily(fam)
				continue
			}
			return err
		}
		if err := x.do(ctx, fam, append([]string{"-A", r.Chain()}, r.keeperSpec()...)...); err != nil {
			r.log.Warn().Err(err).Msg("cannot add the conntrack keeper: a connection a redirect took may stall when its redirect is removed")
		}
		if x.do(ctx, fam, append([]string{"-C"}, r.jumpSpec()...)...) == nil {
			continue
		}
		if err := x.do(ctx, fam, append([]string{"-I", "PREROUTING", "1"}, r.jumpSpec()[1:]...)...); err != nil {
			if fam == ipv6 {
				r.log.Warn().Err(err).Msg("ip6tables: cannot insert the jump, IPv6 connections will not be redirected")
				_ = x.do(ctx, fam, "-X", r.Chain())
				r.dropFamily(fam)
				continue
			}
			return err
		}
	}
	r.chain = true
	return nil
}

func (r *Redirector) dropFamily(f family) {
	var keep []family
	for _, g := range r.families {
		if g != f {
			keep = append(keep, g)
		}
	}
	r.families = keep
}

// removeRedirect deletes rd's rule in every family it was added in; a rule already gone is
// not an error.
func (r *Redirector) removeRedirect(ctx context.Context, rd *redirect) error {
	x := r.xt(r.backend)
	var errs []error
	for _, fam := range rd.fams {
		err := x.do(ctx, fam, append([]string{"-D", r.Chain()}, r.redirectSpec(rd)...)...)
		if err != nil && !isAbsent(err) {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	rd.removed = true
	r.log.Info().Int("port", rd.port).Int("to_port", rd.toPort).Str("session", rd.session).Msg("redirect removed")
	return nil
}

// teardownIfIdle removes the jump and the chain once no redirect is left, so that an agent
// that steals nothing leaves the namespace's tables as they were. Failures are logged: Close
// and the guard sweep again.
func (r *Redirector) teardownIfIdle(ctx context.Context) {
	live := r.rules[:0]
	for _, rd := range r.rules {
		if !rd.removed {
			live = append(live, rd)
		}
	}
	r.rules = live
	if len(live) > 0 || !r.chain || r.held > 0 {
		return
	}
	x := r.xt(r.backend)
	for _, fam := range r.families {
		steps := [][]string{
			append([]string{"-D"}, r.jumpSpec()...),
			{"-F", r.Chain()},
			{"-X", r.Chain()},
		}
		if x.restoreNat(ctx, fam, steps) == nil {
			continue
		}
		for _, args := range steps {
			if err := x.do(ctx, fam, args...); err != nil && !isAbsent(err) {
				r.log.Warn().Err(err).Msg("remove the agent's chain")
				return
			}
		}
	}
	r.chain = false
}

func (r *Redirector) releaseLock() {
	if r.lockFD >= 0 {
		unix.Close(r.lockFD)
		r.lockFD = -1
	}
}

// Timeouts of iptables work: one call of the API, and a whole cleanup.
const (
	cmdTimeout     = 30 * time.Second
	cleanupTimeout = 60 * time.Second
)
