package httpsteal

import (
	"errors"
	"io"
	"os"
	"syscall"
	"time"

	"github.com/kwarp-dev/kwarp/agent/httpsteal/filter"
	"github.com/kwarp-dev/kwarp/agent/httpsteal/h1"
	"golang.org/x/net/http2"
)

// serveH1 serves the connection request by request. It reports whether the client
// connection should be closed gently, because the client may still be sending.
func (c *conn) serveH1() (linger bool) {
	for first := true; ; first = false {
		if first {
			if err := c.sniff(); err != nil {
				if errors.Is(err, os.ErrDeadlineExceeded) {
					c.passthrough("no request within the sniff timeout")
				}
				return false
			}
		}
		head, err := c.cr.PeekHeadChecked(h1.CheckRequestStart)
		switch {
		case err == io.EOF:
			return false // the client closed between requests
		case errors.Is(err, h1.ErrMalformed):
			c.passthrough(err.Error())
			return false
		case errors.Is(err, h1.ErrHeadTooLarge):
			c.passthrough("head over the limit")
			return false
		case err == io.ErrUnexpectedEOF:
			c.passthrough("the client ended inside a head")
			return false
		case err != nil:
			return false
		}
		req, err := h1.ParseRequestHead(head)
		if err == nil && first && req.Method == "PRI" && req.Target == "*" && req.Major == 2 {
			if p, err := c.cr.Peek(len(http2.ClientPreface)); err == nil && string(p) == http2.ClientPreface {
				c.serveH2(nil, nil, nil)
				return false
			}
			c.passthrough("not an HTTP/2 preface")
			return false
		}
		if err != nil {
			c.passthrough(err.Error())
			return false
		}
		if req.Major != 1 {
			c.passthrough("not HTTP/1")
			return false
		}
		fr, err := req.Framing()
		if err != nil {
			c.passthrough(err.Error())
			return false
		}
		rt := c.r.pick(&filter.Request{Method: req.Method, Path: filter.PathOf(req.Target), Header: req.Fields})
		if fr.Kind == h1.None && isH2CUpgrade(req) && c.upgradeH2C(rt, req, len(head)) {
			return false
		}
		if !c.exchange(rt, req, len(head), fr) {
			return true
		}
	}
}

// sniff waits for the connection's first bytes, for SniffTimeout at most.
func (c *conn) sniff() error {
	if t := c.r.opts.SniffTimeout; t > 0 && c.client.SetReadDeadline(time.Now().Add(t)) == nil {
		defer c.client.SetReadDeadline(time.Time{})
	}
	return c.cr.Fill()
}

// exchange sends one request to rt's destination and its response back; it reports
// whether the connection goes on with another request.
func (c *conn) exchange(rt *route, req *h1.RequestHead, headLen int, fr h1.Framing) bool {
	bodyless := fr.Kind == h1.None
	if bodyless {
		// sent from req.Raw, which stays whole for a second attempt
		c.cr.Discard(headLen)
	}
	for attempt := 0; ; attempt++ {
		u, err := c.upstream(rt)
		if err != nil {
			c.log.Warn().Err(err).Msg("app unreachable")
			c.writeError(req.Method, 502, "the app does not answer: "+err.Error())
			return false
		}
		if ev := c.log.Debug(); ev.Enabled() {
			ev.Str("method", req.Method).Str("target", req.Target).Str("to", u.rt.Owner).Str("name", u.rt.Config.Name).Msg("request")
		}
		u.used++
		reused := u.used > 1
		var bodyDone chan error
		if bodyless {
			if _, err := io.WriteString(u.conn, req.Raw); err != nil {
				if reused && attempt == 0 {
					c.drop(u)
					continue
				}
				c.drop(u)
				c.writeError(req.Method, 502, destName(u.rt)+" closed the connection: "+err.Error())
				return false
			}
		} else {
			bodyDone = make(chan error, 1)
			go c.sendBody(u, headLen, fr, bodyDone)
		}
		more, retry := c.response(u, req, bodyDone, bodyless && reused && attempt == 0)
		if retry {
			c.log.Debug().Msg("idle connection closed under the request: sent again on a new one")
			c.drop(u)
			continue
		}
		return more
	}
}

// sendBody copies the request (head and body) to the upstream, alongside the response.
func (c *conn) sendBody(u *upstream, headLen int, fr h1.Framing, done chan<- error) {
	err := c.cr.CopyMessage(u.conn, headLen, fr)
	var we *h1.WriteError
	switch {
	case err == nil, errors.As(err, &we):
		// the upstream stopped reading: its response, or its failure, tells the rest
	case errors.Is(err, h1.ErrMalformed):
		// the destination gets what came before the fault, then the end of the stream,
		// and answers that
		c.log.Debug().Err(err).Msg("malformed request body")
		if closeWrite(u.conn) != nil {
			u.conn.Close()
		}
	default:
		// the client went away mid-body: the request cannot complete
		u.conn.Close()
	}
	done <- err
}

// response forwards the response to one request, interim ones included. more: the
// connection goes on; retry: nothing came back on a reused connection, which closed, so
// the request may be sent again on a new one.
func (c *conn) response(u *upstream, req *h1.RequestHead, bodyDone chan error, mayRetry bool) (more, retry bool) {
	final := false // bytes of a final response went to the client
	err := u.awaken()
	for err == nil {
		var head []byte
		head, err = u.r.PeekHead()
		if err != nil {
			break
		}
		resp, perr := h1.ParseResponseHead(head)
		var rf h1.Framing
		if perr == nil {
			rf, perr = resp.Framing(req.Method)
		}
		if perr != nil {
			c.log.Debug().Err(perr).Msg("response the router cannot frame: connection spliced")
			c.spliceAfterBody(u, bodyDone)
			return false, false
		}
		if resp.Status == 101 || rf.Kind == h1.Tunnel {
			if err = u.r.CopyMessage(c.client, len(head), h1.Framing{}); err != nil {
				break
			}
			c.log.Debug().Int("status", resp.Status).Msg("protocol switched: connection spliced")
			c.spliceAfterBody(u, bodyDone)
			return false, false
		}
		if resp.Status >= 200 {
			final = true
		}
		if err = u.r.CopyMessage(c.client, len(head), rf); err != nil {
			break
		}
		if resp.Status < 200 {
			continue // 100 Continue, 102, 103: the final response follows
		}
		if !req.KeepAlive() || !resp.KeepAlive() || rf.Kind == h1.UntilClose {
			c.stopBody(u, bodyDone)
			c.drop(u)
			return false, false
		}
		if bodyDone != nil {
			if err := <-bodyDone; err != nil {
				// the rest of the client's body is in an unknown state
				c.drop(u)
				return false, false
			}
		}
		u.park()
		return true, false
	}

	// the response did not come, or not whole
	var we *h1.WriteError
	switch {
	case errors.As(err, &we):
		// the client went away
	case errors.Is(err, h1.ErrHeadTooLarge):
		c.log.Debug().Msg("response head over the limit: connection spliced")
		c.spliceAfterBody(u, bodyDone)
		return false, false
	case !final && mayRetry && u.r.Buffered() == 0 && closedUnder(err):
		return false, true
	case !final:
		c.log.Debug().Err(err).Str("to", u.rt.Owner).Msg("no response")
		c.writeError(req.Method, 502, destName(u.rt)+" closed the connection before it answered")
	}
	c.stopBody(u, bodyDone)
	c.drop(u)
	return false, false
}

// closedUnder reports whether err is what a read gets from a connection its peer closed.
func closedUnder(err error) bool {
	return err == io.EOF || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// stopBody ends a request body copy that is still running (the exchange is over) and
// waits for it.
func (c *conn) stopBody(u *upstream, bodyDone chan error) {
	if bodyDone == nil {
		return
	}
	select {
	case <-bodyDone:
		return
	default:
	}
	u.conn.Close()
	c.client.SetReadDeadline(time.Now())
	<-bodyDone
	c.client.SetReadDeadline(time.Time{})
}

// spliceAfterBody gives the rest of the connection to u: the upstream's bytes go to the
// client at once, the client's once its request body has gone through.
func (c *conn) spliceAfterBody(u *upstream, bodyDone chan error) {
	delete(c.ups, u.rt) // the splice owns it now; closeAll still closes it
	done := make(chan struct{})
	go func() {
		defer close(done)
		if bodyDone != nil {
			if err := <-bodyDone; err != nil {
				u.conn.Close()
				c.client.Close()
				return
			}
		}
		pipe(u.conn, c.cr, c.client)
	}()
	pipe(c.client, u.r, u.conn)
	<-done
}

func destName(rt *route) string {
	if rt.filter == nil {
		return "the app"
	}
	return "the local process of session " + rt.Owner
}

// isH2CUpgrade reports whether the request asks to upgrade to h2c (RFC 7540 section 3.2).
func isH2CUpgrade(req *h1.RequestHead) bool {
	return req.HasToken("Upgrade", "h2c") && req.HasToken("Connection", "HTTP2-Settings") &&
		len(req.Values("HTTP2-Settings")) == 1
}
