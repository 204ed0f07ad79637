// Package server is the HTTP handler behind the httpecho test workload. It answers every request
// with a JSON description of what arrived and keeps the most recent descriptions, so an
// end-to-end test can ask the pod (or a local stand-in) exactly which requests reached it, with
// which headers and bodies, after routing through kwarp.
//
// Besides plain HTTP it serves, on the same handler:
//
//   - gRPC (HTTP/2 requests with a Content-Type of application/grpc): the standard health service
//     grpc.health.v1.Health, reporting SERVING for the empty service name. Every answer carries
//     the header metadata "x-served-by: <pod>".
//   - WebSocket at WSPath: every message is answered with "<pod>: <message>".
//
// Both record their request (the gRPC call or the WebSocket handshake) like any other, but with
// body_bytes 0 and an empty body_sha256, since their bodies belong to the protocol.
//
// It is a separate package so that tests can decode responses with the same Record type, and
// build the bodies probe sends with GeneratedBody.
package server

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/websocket"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
)

// Paths that are part of the test harness rather than traffic under test. They are never
// recorded: otherwise reading the record would change it.
const (
	ReceivedPath = "/_received"
	HealthPath   = "/healthz"
	// CountPath answers how many requests were recorded since the start (a number in plain
	// text): the ring keeps only the latest, a benchmark counts them all.
	CountPath = "/_count"
)

// WSPath is the WebSocket endpoint. Every request to it is a WebSocket handshake; anything else
// is refused by the WebSocket server with 400 Bad Request.
const WSPath = "/ws"

// ServedByKey is the gRPC header metadata key that names the pod that answered a call. Plain HTTP
// answers carry the same information in the X-Served-By header.
const ServedByKey = "x-served-by"

// DefaultCapacity is how many records are kept when Config.Capacity is zero.
const DefaultCapacity = 1000

// Record describes one request as the server saw it.
type Record struct {
	Pod       string `json:"pod"`
	Namespace string `json:"namespace"`
	Method    string `json:"method"`
	// Host is kept apart from Headers because Go removes Host from the header map.
	Host      string              `json:"host"`
	Path      string              `json:"path"`
	Query     string              `json:"query"`
	Headers   map[string][]string `json:"headers"`
	BodyBytes int64               `json:"body_bytes"`
	// BodySHA256 is the hex SHA-256 of the body as received, so that a test can check that a
	// large body arrived intact without the server keeping it.
	BodySHA256 string `json:"body_sha256"`
	// ContentLength is the declared length, -1 when unknown (a chunked HTTP/1.1 body, or an
	// HTTP/2 body without content-length).
	ContentLength int64 `json:"content_length"`
	// TransferEncoding is what Go removes from the headers: ["chunked"] for a chunked body. It is
	// never null in JSON.
	TransferEncoding []string `json:"transfer_encoding"`
	Proto            string   `json:"proto"`
	RemoteAddr       string   `json:"remote_addr"`
}

// Config identifies the server in its answers.
type Config struct {
	Pod       string
	Namespace string
	// Capacity bounds memory use of the record ring; zero means DefaultCapacity.
	Capacity int
	// Log, if set, gets one line per recorded request. Health checks are not logged because a
	// readiness probe every second would drown the requests a test cares about.
	Log io.Writer
}

// Server is an http.Handler; the zero value is not usable, use New.
type Server struct {
	cfg    Config
	logger *log.Logger
	grpc   *grpc.Server
	ws     websocket.Server

	mu    sync.Mutex
	ring  []Record // circular; next is the slot the next record goes into
	next  int
	full  bool
	total int64
}

// New returns a Server with an empty record ring.
func New(cfg Config) *Server {
	if cfg.Capacity <= 0 {
		cfg.Capacity = DefaultCapacity
	}
	s := &Server{cfg: cfg, ring: make([]Record, cfg.Capacity)}
	if cfg.Log != nil {
		s.logger = log.New(cfg.Log, "", log.LstdFlags|log.LUTC)
	}
	servedBy := metadata.Pairs(ServedByKey, cfg.Pod)
	s.grpc = grpc.NewServer(
		grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			// SetHeader fails only when headers were already sent, which cannot have happened yet.
			_ = grpc.SetHeader(ctx, servedBy)
			return h(ctx, req)
		}),
		grpc.StreamInterceptor(func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			_ = ss.SetHeader(servedBy)
			return h(srv, ss)
		}),
	)
	// health.NewServer reports SERVING for the empty service name.
	healthpb.RegisterHealthServer(s.grpc, health.NewServer())
	s.ws = websocket.Server{
		// The default handshake rejects requests without Origin; test clients need not send one.
		Handshake: func(*websocket.Config, *http.Request) error { return nil },
		Handler:   s.serveWS,
	}
	return s
}

// ServeHTTP answers the admin paths itself, hands gRPC and WebSocket requests to their servers
// and echoes everything else.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if isGRPC(r) {
		// Record before answering, so a client that has its answer can rely on /_received
		// showing it. The gRPC server's interceptors add x-served-by: setting X-Served-By here
		// too would send it twice.
		s.record(r, time.Now(), 0, "", nil)
		s.grpc.ServeHTTP(w, r)
		return
	}
	w.Header().Set("X-Served-By", s.cfg.Pod)
	switch {
	case r.URL.Path == HealthPath:
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, "ok")
		return
	case r.URL.Path == ReceivedPath:
		s.serveReceived(w, r)
		return
	case r.URL.Path == CountPath:
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintf(w, "%d\n", s.Total())
		return
	case r.URL.Path == WSPath:
		s.record(r, time.Now(), 0, "", nil)
		s.ws.ServeHTTP(w, r)
		return
	}

	start := time.Now()
	// Hashing instead of buffering lets tests send bodies of any size.
	h := sha256.New()
	n, err := io.Copy(h, r.Body)
	rec := s.record(r, start, n, hex.EncodeToString(h.Sum(nil)), err)
	writeJSON(w, http.StatusOK, rec)
}

// isGRPC matches what grpc.Server.ServeHTTP accepts: gRPC needs HTTP/2.
func isGRPC(r *http.Request) bool {
	ct := r.Header.Get("Content-Type")
	return r.ProtoMajor == 2 && (ct == "application/grpc" || strings.HasPrefix(ct, "application/grpc+") ||
		strings.HasPrefix(ct, "application/grpc;"))
}

// record describes r, adds the description to the ring and logs it.
func (s *Server) record(r *http.Request, start time.Time, n int64, sum string, bodyErr error) Record {
	rec := Record{
		Pod:              s.cfg.Pod,
		Namespace:        s.cfg.Namespace,
		Method:           r.Method,
		Host:             r.Host,
		Path:             r.URL.Path,
		Query:            r.URL.RawQuery,
		Headers:          r.Header.Clone(),
		BodyBytes:        n,
		BodySHA256:       sum,
		ContentLength:    r.ContentLength,
		TransferEncoding: append([]string{}, r.TransferEncoding...),
		Proto:            r.Proto,
		RemoteAddr:       r.RemoteAddr,
	}
	if rec.Headers == nil {
		rec.Headers = map[string][]string{}
	}
	s.add(rec)
	if s.logger != nil {
		errText := ""
		if bodyErr != nil {
			errText = " body-error=" + bodyErr.Error()
		}
		s.logger.Printf("%s %s %s %q from %s body=%d%s in %s",
			r.Proto, r.Method, r.Host, r.URL.RequestURI(), r.RemoteAddr, n, errText, time.Since(start).Round(time.Microsecond))
	}
	return rec
}

// serveWS answers every WebSocket message, text or binary, with a text message
// "<pod>: <message>" until the client goes away.
func (s *Server) serveWS(c *websocket.Conn) {
	defer c.Close()
	for {
		var msg string
		if err := websocket.Message.Receive(c, &msg); err != nil {
			return
		}
		if err := websocket.Message.Send(c, s.cfg.Pod+": "+msg); err != nil {
			return
		}
	}
}

func (s *Server) serveReceived(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		writeJSON(w, http.StatusOK, s.Received())
	case http.MethodDelete:
		s.Clear()
		w.WriteHeader(http.StatusNoContent)
	default:
		w.Header().Set("Allow", "GET, HEAD, DELETE")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	}
}

func (s *Server) add(rec Record) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ring[s.next] = rec
	s.total++
	s.next++
	if s.next == len(s.ring) {
		s.next, s.full = 0, true
	}
}

// Total is the number of requests recorded since the server started.
func (s *Server) Total() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.total
}

// Received returns the kept records, oldest first. It never returns nil so that the JSON form
// is always an array.
func (s *Server) Received() []Record {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.full {
		return append([]Record{}, s.ring[:s.next]...)
	}
	out := make([]Record, 0, len(s.ring))
	out = append(out, s.ring[s.next:]...)
	return append(out, s.ring[:s.next]...)
}

// Clear forgets all records.
func (s *Server) Clear() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.ring)
	s.next, s.full = 0, false
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	// An encoding error means the client went away; there is no one left to tell.
	_ = enc.Encode(v)
}

// generatedPattern is what GeneratedBody repeats. Its length, 37, is prime so that the pattern
// never lines up with a power-of-two buffer or chunk size: a lost, repeated or reordered chunk
// changes the hash and is visible when the body is printed.
const generatedPattern = "abcdefghijklmnopqrstuvwxyz0123456789\n"

// GeneratedBody returns a reader of the n bytes probe sends with -body-size n: the pattern
// "abcdefghijklmnopqrstuvwxyz0123456789\n" repeated and cut at n bytes.
func GeneratedBody(n int64) io.Reader {
	return io.LimitReader(&patternReader{}, n)
}

// GeneratedSHA256 is the hex SHA-256 of GeneratedBody(n), what Record.BodySHA256 must be when
// the body arrived intact.
func GeneratedSHA256(n int64) string {
	h := sha256.New()
	io.Copy(h, GeneratedBody(n))
	return hex.EncodeToString(h.Sum(nil))
}

type patternReader struct{ off int }

func (p *patternReader) Read(b []byte) (int, error) {
	n := 0
	for n < len(b) {
		k := copy(b[n:], generatedPattern[p.off:])
		n += k
		p.off = (p.off + k) % len(generatedPattern)
	}
	return n, nil
}
