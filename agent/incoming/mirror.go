package incoming

import (
	"io"
	"net"
	"sync"
	"time"
)

// mirrorLinger is how long a copy's tunnel stays open after the copy was sent whole, for the
// session to finish reading it; its answers are discarded anyway.
const mirrorLinger = 10 * time.Second

// tap returns c with a copy of what it reads going to each mirroring session (c itself when
// there is none). The copies start at once: each announces itself and buffers until its tunnel
// comes.
func (s *Server) tap(c net.Conn, mirrors []*sub, ci connInfo) net.Conn {
	if len(mirrors) == 0 {
		return c
	}
	t := &tapConn{Conn: c}
	for _, sb := range mirrors {
		m := newMirrorCopy(sb, s.opts.MirrorBuffer)
		t.copies = append(t.copies, m)
		go m.run(s, ci)
	}
	return t
}

// tapConn is a client connection whose reads are copied to mirrors. Writing to a copy never
// blocks: a copy that cannot keep up is dropped (mirrorCopy.write).
type tapConn struct {
	net.Conn
	copies []*mirrorCopy
	once   sync.Once
}

func (t *tapConn) Read(b []byte) (int, error) {
	n, err := t.Conn.Read(b)
	if n > 0 {
		for _, m := range t.copies {
			m.write(b[:n])
		}
	}
	if err != nil {
		t.end()
	}
	return n, err
}

// CloseWrite passes the half-close on: splice needs it to forward the app's end.
func (t *tapConn) CloseWrite() error { return closeWrite(t.Conn) }

func (t *tapConn) Close() error {
	err := t.Conn.Close()
	t.end()
	return err
}

// end tells the copies the client has sent all it will.
func (t *tapConn) end() {
	t.once.Do(func() {
		for _, m := range t.copies {
			m.finish()
		}
	})
}

// mirrorCopy is one session's copy of one connection: a bounded buffer between the real
// connection (write) and the session's tunnel (run).
type mirrorCopy struct {
	sub   *sub
	limit int

	mu     sync.Mutex
	cond   *sync.Cond
	chunks [][]byte
	size   int
	eof    bool     // the client has sent everything
	dead   bool     // dropped: nothing more is buffered or sent
	tun    net.Conn // once delivered
}

func newMirrorCopy(sb *sub, limit int) *mirrorCopy {
	m := &mirrorCopy{sub: sb, limit: limit}
	m.cond = sync.NewCond(&m.mu)
	return m
}

// write buffers a copy of p, or drops the copy when the buffer would exceed its bound.
func (m *mirrorCopy) write(p []byte) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.dead || m.eof {
		return
	}
	if m.size+len(p) > m.limit {
		m.sub.log.Warn().Int("buffered", m.size).Int("limit", m.limit).
			Msg("incoming: mirror too slow; its copy of the connection is dropped (the connection itself goes on)")
		m.killLocked()
		return
	}
	m.chunks = append(m.chunks, append([]byte(nil), p...))
	m.size += len(p)
	m.cond.Signal()
}

func (m *mirrorCopy) finish() {
	m.mu.Lock()
	m.eof = true
	m.cond.Broadcast()
	m.mu.Unlock()
}

func (m *mirrorCopy) kill() {
	m.mu.Lock()
	m.killLocked()
	m.mu.Unlock()
}

func (m *mirrorCopy) killLocked() {
	if m.dead {
		return
	}
	m.dead = true
	m.chunks, m.size = nil, 0
	if m.tun != nil {
		m.tun.Close() // unblocks a write in run
	}
	m.cond.Broadcast()
}

// run waits for the copy's tunnel and sends it the buffered bytes as they come.
func (m *mirrorCopy) run(s *Server, ci connInfo) {
	tun := s.await(s.ctx, m.sub, ci)
	if tun == nil {
		m.kill()
		return
	}
	m.mu.Lock()
	if m.dead {
		m.mu.Unlock()
		tun.Close()
		return
	}
	m.tun = tun
	m.mu.Unlock()
	untrack, ok := s.track(m.sub, tun)
	if !ok {
		m.kill()
		return
	}
	defer untrack()
	defer tun.Close()

	// The local process's answers go nowhere: the app answers the real client.
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		_, _ = io.Copy(io.Discard, tun)
	}()
	var sent int64
	for {
		m.mu.Lock()
		for len(m.chunks) == 0 && !m.eof && !m.dead {
			m.cond.Wait()
		}
		if m.dead {
			m.mu.Unlock()
			return
		}
		if len(m.chunks) == 0 { // eof and all sent
			m.mu.Unlock()
			break
		}
		c := m.chunks[0]
		m.chunks[0] = nil
		m.chunks = m.chunks[1:]
		m.size -= len(c)
		m.mu.Unlock()
		if _, err := tun.Write(c); err != nil {
			m.sub.log.Debug().Err(err).Msg("incoming: mirror tunnel broke; copy dropped")
			m.kill()
			return
		}
		sent += int64(len(c))
	}
	_ = closeWrite(tun)
	select {
	case <-drained:
	case <-time.After(mirrorLinger):
	case <-m.sub.done:
	}
	m.sub.log.Debug().Int64("bytes", sent).Str("client", ci.client.String()).Msg("incoming: mirrored copy sent")
}
