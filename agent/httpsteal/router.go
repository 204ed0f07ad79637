// Package httpsteal routes the connections of a pod port under HTTP-filtered steal, request
// by request: a request that a session's steal "http" filter matches goes to that session's
// local process, every other request to the deployed app, on the same client connection.
// It is the agent's data path for `steal "http"`; redirecting the port's connections to the
// agent (netfilter) and the tunnels to the sessions are the callers'.
//
// # Routes
//
// A Router serves one pod port. Each Route is one steal block of one session (Owner) with a
// Dial that opens a connection to that session's local process. A request goes to the first
// route, in the order they were added, whose filter matches (package filter says what a
// filter sees); no match: the app, through Options.DialApp. Add refuses a route whose filter
// may match a request that another owner's route matches (an *OverlapError naming the
// holder), so among sessions the order never decides; routes of one owner may overlap.
// Remove and RemoveOwner take effect for the next request of every open connection: later
// requests go to the app, a request in flight finishes where it started.
//
// When a route's Dial fails (the local process no longer listens), the request goes to the
// app instead: it has not been sent anywhere yet. When the local process fails after the
// request was sent, the client gets a 502 response if no byte of the response was written,
// else the connection is closed: never a hang.
//
// # HTTP/1.1
//
// Heads are read within Options.MaxHeadBytes (64 KiB) and forwarded byte for byte as
// received; bodies — Content-Length, chunked with trailers — stream through as they come,
// both ways at once (an upload the server echoes while it reads works), never held whole.
// Keep-alive goes request by request: each destination gets one upstream connection per
// client connection, kept for the next request to it (one the destination closed while
// idle is replaced, and a request without body that meets a connection closed under it is
// sent again once on a new one). Pipelined requests are served one after the other: the
// next request is read only when the previous response is complete. Hop-by-hop fields are
// forwarded unchanged, so Connection: close, Expect: 100-continue, 1xx responses, HEAD and
// HTTP/1.0 behave as they do without the router. A 101 response (a WebSocket upgrade,
// matched or not) or a 2xx answer to CONNECT turns the rest of the connection into a
// two-way splice with that destination.
//
// What the router will not frame it hands on untouched: a connection whose first bytes are
// not an HTTP/1.x request (or do not come within Options.SniffTimeout, 2 s: a protocol
// where the server speaks first), a head over the limit, a malformed head or an ambiguous
// framing (Content-Length with Transfer-Encoding, and the other request-smuggling cases of
// package h1) go to the app on a new connection, with the bytes already read replayed, and
// the router splices; the app decides. A response the router cannot frame is spliced to the
// client the same way.
//
// # HTTP/2 cleartext
//
// A connection that starts with the HTTP/2 preface (prior knowledge, as gRPC clients do)
// is served by an HTTP/2 server (golang.org/x/net/http2), and each stream is routed like an
// HTTP/1.1 request over an HTTP/2 client connection (prior knowledge) to its destination,
// one per destination per client connection. Headers, bodies and trailers stream through
// (gRPC works, streaming and errors included); 1xx responses pass; a stream whose
// destination fails mid-response is reset. Frames are not relayed one by one: the router
// terminates HTTP/2 on both sides, which is what routing streams of one connection to
// different servers takes.
//
// An HTTP/1.1 request without a body that asks to upgrade to h2c is answered by the router
// itself when its destination speaks HTTP/2 with prior knowledge (tried with a PING, once
// per destination): the router sends the 101, serves the request as stream 1 and routes the
// later streams as above. When the destination does not speak HTTP/2 (or the request has a
// body) the request is forwarded unchanged and the destination decides: most HTTP/1.1
// servers ignore the Upgrade and the client stays on HTTP/1.1; one that switches gets the
// connection spliced like any 101.
package httpsteal

import (
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kwarp-dev/kwarp/agent/api/stealfilter"
	"github.com/kwarp-dev/kwarp/agent/httpsteal/filter"
	"github.com/kwarp-dev/kwarp/agent/httpsteal/h1"
	"github.com/rs/zerolog"
	"golang.org/x/net/http2"
)

// Defaults of Options.
const (
	DefaultMaxHeadBytes = h1.DefaultMaxHead
	DefaultSniffTimeout = 2 * time.Second
	DefaultDialTimeout  = 10 * time.Second
)

// DialFunc opens a connection to a destination: the app's port in the pod, or a session's
// local process (through its tunnel).
type DialFunc func(ctx context.Context) (net.Conn, error)

// Options configure a Router.
type Options struct {
	// Port is the pod port the router serves; every route's Config.Port must be it.
	Port int
	// DialApp connects to the deployed app's port; required.
	DialApp DialFunc
	// MaxHeadBytes bounds an HTTP/1 head (DefaultMaxHeadBytes, 64 KiB): a longer one hands
	// the connection to the app.
	MaxHeadBytes int
	// SniffTimeout is how long a new connection may stay silent before it goes to the app
	// whole (DefaultSniffTimeout, 2 s), for protocols where the server speaks first. Past it a
	// client that opened a connection early and sends its first request later is not
	// routed. Negative: wait for the first bytes however long they take.
	SniffTimeout time.Duration
	// DialTimeout bounds each Dial (DefaultDialTimeout, 10 s).
	DialTimeout time.Duration
	// Log gets a line per routing decision at debug level and per fallback at warn level.
	Log zerolog.Logger
}

// Route sends the requests its filter matches to a session's local process.
type Route struct {
	// Owner names the session that holds the route, for OverlapError and logs.
	Owner string
	// Config is the steal block: its Name identifies the route within the owner, its
	// Match is the filter.
	Config stealfilter.Config
	// Dial connects to the local process.
	Dial DialFunc
}

type route struct {
	Route
	filter  *filter.Filter
	removed atomic.Bool
	// h2 is whether the destination speaks HTTP/2 with prior knowledge, as an h2c upgrade
	// found out: 0 unknown, 1 yes, -1 no.
	h2 atomic.Int32
}

// OverlapError is Add's refusal of a filter that may match a request another session's
// filter matches.
type OverlapError struct {
	// Name is the refused block's name.
	Name string
	// Holder is the route already there.
	Holder Route
	// Example is a request both filters match, when one is known.
	Example string
}

func (e *OverlapError) Error() string {
	s := fmt.Sprintf("steal %q on port %d overlaps steal %q of session %s", e.Name, e.Holder.Config.Port, e.Holder.Config.Name, e.Holder.Owner)
	if e.Example != "" {
		s += ": both match " + e.Example
	}
	return s
}

// Router routes the connections of one pod port.
type Router struct {
	opts   Options
	log    zerolog.Logger
	app    *route
	mu     sync.Mutex               // serializes changes of routes
	routes atomic.Pointer[[]*route] // read per request without a lock

	h2srv  *http2.Server
	h2base *http.Server
	h2t    *http2.Transport
}

// New makes a router with no route: every request goes to the app.
func New(opts Options) (*Router, error) {
	if opts.DialApp == nil {
		return nil, fmt.Errorf("httpsteal: Options.DialApp is required")
	}
	if opts.MaxHeadBytes <= 0 {
		opts.MaxHeadBytes = DefaultMaxHeadBytes
	}
	if opts.SniffTimeout == 0 {
		opts.SniffTimeout = DefaultSniffTimeout
	}
	if opts.DialTimeout <= 0 {
		opts.DialTimeout = DefaultDialTimeout
	}
	r := &Router{
		opts: opts,
		log:  opts.Log.With().Int("port", opts.Port).Logger(),
		app:  &route{Route: Route{Owner: "app", Dial: opts.DialApp}},
	}
	r.routes.Store(&[]*route{})
	r.h2srv = &http2.Server{}
	r.h2base = &http.Server{ErrorLog: log.New(debugWriter{r.log}, "", 0)}
	r.h2t = &http2.Transport{AllowHTTP: true, DisableCompression: true}
	return r, nil
}

type debugWriter struct{ log zerolog.Logger }

func (w debugWriter) Write(p []byte) (int, error) {
	w.log.Debug().Msg(string(p))
	return len(p), nil
}

var _ io.Writer = debugWriter{}

// Add installs rt after the routes already there. It refuses a Config on another port, a
// filter that does not compile, a name the owner already uses, and, with an
// *OverlapError, a filter that may match a request a route of another owner matches
// (filter.Overlap).
func (r *Router) Add(rt Route) error {
	if rt.Dial == nil {
		return fmt.Errorf("httpsteal: route %q of %s has no Dial", rt.Config.Name, rt.Owner)
	}
	if rt.Config.Port != r.opts.Port {
		return fmt.Errorf("httpsteal: steal %q is on port %d, this router serves %d", rt.Config.Name, rt.Config.Port, r.opts.Port)
	}
	f, err := filter.Compile(rt.Config)
	if err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	old := *r.routes.Load()
	for _, o := range old {
		if o.Owner == rt.Owner {
			if o.Config.Name == rt.Config.Name {
				return fmt.Errorf("httpsteal: session %s already has steal %q on port %d", rt.Owner, rt.Config.Name, r.opts.Port)
			}
			continue
		}
		if ex, ok := filter.Overlap(f, o.filter); ok {
			return &OverlapError{Name: rt.Config.Name, Holder: o.Route, Example: ex}
		}
	}
	next := append(append(make([]*route, 0, len(old)+1), old...), &route{Route: rt, filter: f})
	r.routes.Store(&next)
	r.log.Debug().Str("owner", rt.Owner).Str("name", rt.Config.Name).Stringer("filter", f).Msg("steal route added")
	return nil
}

// Remove takes out the owner's route called name and reports whether there was one.
func (r *Router) Remove(owner, name string) bool {
	return r.remove(func(rt *route) bool { return rt.Owner == owner && rt.Config.Name == name }) > 0
}

// RemoveOwner takes out every route of owner (its session ended) and says how many.
func (r *Router) RemoveOwner(owner string) int {
	return r.remove(func(rt *route) bool { return rt.Owner == owner })
}

func (r *Router) remove(match func(*route) bool) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	old := *r.routes.Load()
	next := make([]*route, 0, len(old))
	for _, rt := range old {
		if match(rt) {
			rt.removed.Store(true)
			r.log.Debug().Str("owner", rt.Owner).Str("name", rt.Config.Name).Msg("steal route removed")
			continue
		}
		next = append(next, rt)
	}
	r.routes.Store(&next)
	return len(old) - len(next)
}

// Routes are the routes in the order requests try them.
func (r *Router) Routes() []Route {
	rts := *r.routes.Load()
	out := make([]Route, len(rts))
	for i, rt := range rts {
		out[i] = rt.Route
	}
	return out
}

// pick is the destination of a request: the first route that matches, else the app.
func (r *Router) pick(req *filter.Request) *route {
	for _, rt := range *r.routes.Load() {
		if rt.filter.Match(req) {
			return rt
		}
	}
	return r.app
}
