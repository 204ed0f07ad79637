package httpsteal

import (
	"context"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/kwarp-dev/kwarp/agent/httpsteal/filter"
	"github.com/kwarp-dev/kwarp/agent/httpsteal/h1"
	"golang.org/x/net/http2"
)

// h2ProbeTimeout bounds the PING that finds out whether a destination speaks HTTP/2 with
// prior knowledge.
const h2ProbeTimeout = 2 * time.Second

// h2conn is a client connection served as HTTP/2: its streams are the handler's requests.
type h2conn struct {
	c   *conn
	mu  sync.Mutex
	ups map[*route]*h2up

	// handlers in flight, waited for when the connection ends
	active  int
	closing bool
	idle    chan struct{}
}

// h2up is the HTTP/2 client connection to one destination.
type h2up struct {
	rt *route
	mu sync.Mutex // held while dialing
	cc *http2.ClientConn
}

// serveH2 serves the client connection as HTTP/2 until it ends. upgrade is the request of
// an h2c upgrade (stream 1) with its decoded HTTP2-Settings, and first the connection its
// destination was probed with; all nil for prior knowledge.
func (c *conn) serveH2(upgrade *http.Request, settings []byte, first *h2up) {
	c.dropAll()
	h := &h2conn{c: c, ups: map[*route]*h2up{}, idle: make(chan struct{})}
	if first != nil {
		h.ups[first.rt] = first
	}
	c.log.Debug().Bool("upgrade", upgrade != nil).Msg("serving HTTP/2")
	c.r.h2srv.ServeConn(&bufConn{Conn: c.client, r: c.cr}, &http2.ServeConnOpts{
		Context:        c.ctx,
		BaseConfig:     c.r.h2base,
		Handler:        h,
		UpgradeRequest: upgrade,
		Settings:       settings,
	})
	// the client is gone: end the streams still being proxied, and wait for them
	c.closeAll()
	h.mu.Lock()
	h.closing = true
	if h.active == 0 {
		close(h.idle)
	}
	h.mu.Unlock()
	<-h.idle
}

// bufConn reads the bytes the router buffered before the connection turned HTTP/2.
type bufConn struct {
	net.Conn
	r *h1.Reader
}

func (b *bufConn) Read(p []byte) (int, error) { return b.r.Read(p) }

func (h *h2conn) enter() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closing {
		return false
	}
	h.active++
	return true
}

func (h *h2conn) leave() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.active--
	if h.active == 0 && h.closing {
		close(h.idle)
	}
}

// ServeHTTP proxies one stream to its destination.
func (h *h2conn) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if !h.enter() {
		http.Error(w, "kwarp: connection closing", http.StatusServiceUnavailable)
		return
	}
	defer h.leave()
	rt := h.c.r.pick(&filter.Request{Method: req.Method, Path: filter.PathOf(req.RequestURI), Header: req.Header})
	up, err := h.clientConn(rt)
	if err != nil {
		h.c.log.Warn().Err(err).Msg("app unreachable")
		http.Error(w, "kwarp: the app does not answer: "+err.Error(), http.StatusBadGateway)
		return
	}
	if ev := h.c.log.Debug(); ev.Enabled() {
		ev.Str("method", req.Method).Str("target", req.RequestURI).Str("to", up.rt.Owner).Str("name", up.rt.Config.Name).Msg("stream")
	}

	out := outgoing(req)
	// interim responses (103 Early Hints…) pass; 100 Continue the server sends itself
	// when the transport starts reading the body
	trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, hdr textproto.MIMEHeader) error {
		if code == http.StatusContinue {
			return nil
		}
		wh := w.Header()
		copyHeader(wh, http.Header(hdr))
		w.WriteHeader(code)
		clear(wh)
		return nil
	}}
	out = out.WithContext(httptrace.WithClientTrace(out.Context(), trace))
	resp, err := up.cc.RoundTrip(out)
	if err != nil {
		if req.Context().Err() != nil {
			return // the client reset the stream
		}
		h.c.log.Debug().Err(err).Str("to", up.rt.Owner).Msg("stream failed")
		http.Error(w, "kwarp: "+destName(up.rt)+" failed: "+err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()

	wh := w.Header()
	copyHeader(wh, resp.Header)
	announced := len(resp.Trailer)
	for k := range resp.Trailer {
		wh.Add("Trailer", k)
	}
	w.WriteHeader(resp.StatusCode)
	rc := http.NewResponseController(w)
	if resp.ContentLength != 0 {
		// headers now: a streaming response may take long to say more. Not for a response
		// without body: its headers go out with the end of the stream, so that a gRPC
		// trailers-only answer stays one.
		rc.Flush()
	}

	bp := bodyBufPool.Get().(*[]byte)
	defer bodyBufPool.Put(bp)
	buf := *bp
	for {
		n, rerr := resp.Body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return // the client is gone; its stream's context ends the upstream one
			}
			rc.Flush()
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			// the destination failed mid-response: reset the client's stream
			h.c.log.Debug().Err(rerr).Str("to", up.rt.Owner).Msg("stream failed mid-response")
			panic(http.ErrAbortHandler)
		}
	}
	if len(resp.Trailer) == announced {
		copyHeader(wh, resp.Trailer)
		return
	}
	for k, vv := range resp.Trailer {
		for _, v := range vv {
			wh.Add(http.TrailerPrefix+k, v)
		}
	}
}

var bodyBufPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// outgoing is the request to send upstream: the client's, as it came.
func outgoing(req *http.Request) *http.Request {
	out := req.Clone(req.Context())
	out.URL.Scheme = "http"
	out.URL.Host = req.Host
	out.RequestURI = ""
	out.Body = req.Body       // trailers arrive in req.Trailer once the body is read:
	out.Trailer = req.Trailer // share the map rather than Clone's copy
	if _, ok := out.Header["User-Agent"]; !ok {
		out.Header["User-Agent"] = []string{""} // no Go default user agent
	}
	return out
}

// hopByHop are the fields of one connection that never travel on (RFC 9110 section 7.6.1).
var hopByHop = map[string]bool{
	"Connection": true, "Proxy-Connection": true, "Keep-Alive": true, "Transfer-Encoding": true,
	"Upgrade": true, "Te": true, "Trailer": true, "Http2-Settings": true,
}

func copyHeader(dst, src http.Header) {
	for k, vv := range src {
		if hopByHop[k] {
			continue
		}
		dst[k] = append(dst[k], vv...)
	}
}

// clientConn returns the HTTP/2 connection to rt's destination, dialing one when there is
// none or it can take no more streams; the app's when rt's process does not answer.
func (h *h2conn) clientConn(rt *route) (*h2up, error) {
	h.mu.Lock()
	for r, u := range h.ups {
		if r.removed.Load() {
			delete(h.ups, r)
			go u.shutdown(h.c.ctx) // its streams in flight finish
		}
	}
	u := h.ups[rt]
	if u == nil {
		u = &h2up{rt: rt}
		h.ups[rt] = u
	}
	h.mu.Unlock()

	u.mu.Lock()
	defer u.mu.Unlock()
	if u.cc != nil && u.cc.CanTakeNewRequest() {
		return u, nil
	}
	nc, err := h.c.dial(rt)
	if err != nil {
		if rt != h.c.r.app && h.c.ctx.Err() == nil {
			h.c.log.Warn().Err(err).Str("owner", rt.Owner).Str("name", rt.Config.Name).Msg("local process unreachable: stream goes to the app")
			return h.clientConn(h.c.r.app)
		}
		return nil, err
	}
	cc, err := h.c.r.h2t.NewClientConn(nc)
	if err != nil {
		h.c.release(nc)
		return nil, err
	}
	u.cc = cc
	return u, nil
}

func (u *h2up) shutdown(ctx context.Context) {
	u.mu.Lock()
	cc := u.cc
	u.mu.Unlock()
	if cc != nil {
		cc.Shutdown(ctx)
	}
}

// upgradeH2C serves an h2c upgrade request itself when its destination speaks HTTP/2 with
// prior knowledge, and then the connection as HTTP/2; it reports whether it did. When it
// did not, nothing was sent to the client and the request goes on as HTTP/1.1.
func (c *conn) upgradeH2C(rt *route, req *h1.RequestHead, headLen int) bool {
	v := req.Values("HTTP2-Settings")[0]
	settings, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(v, "="))
	if err != nil {
		return false
	}
	target, err := url.ParseRequestURI(req.Target)
	if err != nil {
		return false
	}
	up, ok := c.probeH2(rt)
	if !ok {
		return false
	}
	hr := &http.Request{
		Method: req.Method, URL: target, RequestURI: req.Target,
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: http.Header{}, Body: http.NoBody, RemoteAddr: c.client.RemoteAddr().String(),
	}
	for _, f := range req.Fields {
		name := textproto.CanonicalMIMEHeaderKey(f.Name)
		switch {
		case name == "Host":
			if hr.Host == "" {
				hr.Host = f.Value
			}
		case name == "Te" && strings.EqualFold(f.Value, "trailers"):
			hr.Header.Add(name, f.Value)
		case hopByHop[name] || req.HasToken("Connection", f.Name):
		default:
			hr.Header.Add(name, f.Value)
		}
	}
	if hr.Host == "" {
		hr.Host = target.Host
	}
	hr = hr.WithContext(c.ctx)
	if _, err := io.WriteString(c.client, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n"); err != nil {
		return true // the client is gone: nothing more to do
	}
	c.cr.Discard(headLen)
	c.serveH2(hr, settings, up)
	return true
}

// probeH2 finds out (once per destination) whether rt's destination, or the app's when
// rt's process does not answer, speaks HTTP/2 with prior knowledge; the connection it
// tried is kept for the streams.
func (c *conn) probeH2(rt *route) (*h2up, bool) {
	if rt.h2.Load() < 0 {
		return nil, false
	}
	nc, err := c.dial(rt)
	if err != nil {
		if rt == c.r.app || c.ctx.Err() != nil {
			return nil, false
		}
		rt = c.r.app
		if rt.h2.Load() < 0 {
			return nil, false
		}
		if nc, err = c.dial(rt); err != nil {
			return nil, false
		}
	}
	cc, err := c.r.h2t.NewClientConn(nc)
	if err == nil {
		ctx, cancel := context.WithTimeout(c.ctx, h2ProbeTimeout)
		err = cc.Ping(ctx)
		cancel()
	}
	if err != nil {
		c.release(nc)
		if c.ctx.Err() == nil && !errors.Is(err, net.ErrClosed) {
			c.log.Debug().Err(err).Str("to", rt.Owner).Msg("destination does not speak HTTP/2: the h2c upgrade request goes as HTTP/1.1")
			rt.h2.Store(-1)
		}
		return nil, false
	}
	rt.h2.Store(1)
	return &h2up{rt: rt, cc: cc}, true
}
