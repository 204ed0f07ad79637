package httpsteal

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/kwarp-dev/kwarp/agent/httpsteal/h1"
	"github.com/rs/zerolog"
)

// lingerTimeout is how long a closing client connection is drained after the router's
// last write, so that its unread bytes do not turn the close into a reset that destroys
// the response on its way.
const lingerTimeout = time.Second

// ServeConn routes one client connection of the port until it ends, the client's or the
// router's side, or ctx is done; it closes c and every connection it opened.
func (r *Router) ServeConn(ctx context.Context, c net.Conn) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cn := &conn{
		r:      r,
		ctx:    ctx,
		log:    r.log.With().Str("client", c.RemoteAddr().String()).Logger(),
		client: c,
		cr:     h1.NewReader(c, r.opts.MaxHeadBytes),
		open:   map[net.Conn]struct{}{},
		ups:    map[*route]*upstream{},
	}
	stop := context.AfterFunc(ctx, cn.closeAll)
	defer stop()
	linger := cn.serveH1()
	if linger && ctx.Err() == nil {
		cn.lingerClose()
	}
	cn.closeAll()
}

// conn is one client connection.
type conn struct {
	r      *Router
	ctx    context.Context
	log    zerolog.Logger
	client net.Conn
	cr     *h1.Reader // the client's bytes

	mu     sync.Mutex
	closed bool
	open   map[net.Conn]struct{} // every upstream connection, closed with the client's

	ups map[*route]*upstream // HTTP/1 upstream per destination; serveH1's goroutine only
}

// closeAll closes the client connection and every upstream one; blocked reads and writes
// fail, so every goroutine of the connection ends.
func (c *conn) closeAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	c.client.Close()
	for nc := range c.open {
		nc.Close()
	}
	clear(c.open)
}

// dial connects to rt's destination and tracks the connection.
func (c *conn) dial(rt *route) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(c.ctx, c.r.opts.DialTimeout)
	defer cancel()
	nc, err := rt.Dial(ctx)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		nc.Close()
		return nil, net.ErrClosed
	}
	c.open[nc] = struct{}{}
	return nc, nil
}

// release closes an upstream connection before the client's ends.
func (c *conn) release(nc net.Conn) {
	c.mu.Lock()
	delete(c.open, nc)
	c.mu.Unlock()
	nc.Close()
}

// upstream is an HTTP/1 connection to one destination.
type upstream struct {
	rt   *route
	conn net.Conn
	r    *h1.Reader
	used int // requests sent
	// idle, while the connection waits for its next request, gets the result of a read
	// that notices the destination closing it (or sending what it was not asked).
	idle chan error
}

// upstream returns the connection to rt's destination, opening one when there is none
// (or it closed while idle). When rt's process does not answer, the request goes to the
// app: it has not been sent anywhere yet.
func (c *conn) upstream(rt *route) (*upstream, error) {
	if u := c.ups[rt]; u != nil {
		if u.usable() {
			return u, nil
		}
		c.drop(u)
	}
	nc, err := c.dial(rt)
	if err != nil {
		if rt != c.r.app && c.ctx.Err() == nil {
			c.log.Warn().Err(err).Str("owner", rt.Owner).Str("name", rt.Config.Name).Msg("local process unreachable: request goes to the app")
			return c.upstream(c.r.app)
		}
		return nil, err
	}
	u := &upstream{rt: rt, conn: nc, r: h1.NewReader(nc, c.r.opts.MaxHeadBytes)}
	c.ups[rt] = u
	return u, nil
}

// usable reports whether an idle upstream may carry the next request.
func (u *upstream) usable() bool {
	if u.rt.removed.Load() {
		return false
	}
	if u.idle == nil {
		return true
	}
	select {
	case <-u.idle:
		// closed, or bytes nobody asked for (a 408 before closing): not for a request
		u.idle = nil
		return false
	default:
		return true
	}
}

// park lets u wait for its next request, watching for the destination closing it.
func (u *upstream) park() {
	ch := make(chan error, 1)
	u.idle = ch
	go func() { ch <- u.r.Fill() }()
}

// awaken waits for the watch read of a parked upstream, after a request was sent on it:
// it ends with the response's first bytes.
func (u *upstream) awaken() error {
	if u.idle == nil {
		return nil
	}
	err := <-u.idle
	u.idle = nil
	return err
}

func (c *conn) drop(u *upstream) {
	if c.ups[u.rt] == u {
		delete(c.ups, u.rt)
	}
	c.release(u.conn)
}

func (c *conn) dropAll() {
	for _, u := range c.ups {
		c.drop(u)
	}
}

// passthrough hands the rest of the connection to the app: a new connection to it, the
// client's bytes read so far replayed, then a splice both ways.
func (c *conn) passthrough(why string) {
	c.log.Debug().Str("why", why).Int("replayed", c.cr.Buffered()).Msg("connection passed to the app whole")
	c.dropAll()
	nc, err := c.dial(c.r.app)
	if err != nil {
		c.log.Warn().Err(err).Msg("app unreachable")
		return
	}
	c.splice(nc, h1.NewReader(nc, 0))
}

// splice copies both ways between the client and an upstream connection, each side's
// buffered bytes first, until both directions end; an EOF half-closes the other side.
func (c *conn) splice(up net.Conn, ur *h1.Reader) {
	done := make(chan struct{})
	go func() {
		pipe(up, c.cr, c.client)
		close(done)
	}()
	pipe(c.client, ur, up)
	<-done
}

// pipe copies src, through its reader's buffered bytes, to dst; at src's end it
// half-closes dst, on an error it closes both.
func pipe(dst net.Conn, r *h1.Reader, src net.Conn) {
	var err error
	if b := r.Bytes(); len(b) > 0 {
		_, err = dst.Write(b)
		r.Discard(len(b))
	}
	if err == nil {
		// the buffer is empty: straight from connection to connection (splice(2) for TCP)
		_, err = io.Copy(dst, src)
	}
	if err == nil && closeWrite(dst) == nil {
		return
	}
	dst.Close()
	src.Close()
}

func closeWrite(c net.Conn) error {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}

// lingerClose ends the client connection after the router's last write: half-close, then
// read and drop what the client still sends until it closes or lingerTimeout passes.
func (c *conn) lingerClose() {
	if closeWrite(c.client) != nil {
		return
	}
	if c.client.SetReadDeadline(time.Now().Add(lingerTimeout)) == nil {
		io.Copy(io.Discard, c.client)
	}
}

// writeError answers the client itself, and closes the connection after.
func (c *conn) writeError(method string, status int, msg string) {
	body := "kwarp: " + msg + "\n"
	head := fmt.Sprintf("HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\nConnection: close\r\n\r\n",
		status, http.StatusText(status), len(body))
	if method == "HEAD" {
		body = ""
	}
	c.client.Write([]byte(head + body))
}
