// Package server is the HTTP handler behind the httpecho test workload. It answers every request
// with a JSON description of what arrived and keeps the most recent descriptions, so an
// end-to-end test can ask the pod (or a local stand-in) exactly which requests reached it, with
// which headers and bodies, after routing through kwarp.
//
// It is a separate package so that tests can decode responses with the same Record type.
package server

import (
	"encoding/json"
	"io"
	"log"
	"net/http"
	"sync"
	"time"
)

// Paths that are part of the test harness rather than traffic under test. They are never
// recorded: otherwise reading the record would change it.
const (
	ReceivedPath = "/_received"
	HealthPath   = "/healthz"
)

// DefaultCapacity is how many records are kept when Config.Capacity is zero.
const DefaultCapacity = 1000

// Record describes one request as the server saw it.
type Record struct {
	Pod       string `json:"pod"`
	Namespace string `json:"namespace"`
	Method    string `json:"method"`
	// Host is kept apart from Headers because Go removes Host from the header map.
	Host       string              `json:"host"`
	Path       string              `json:"path"`
	Query      string              `json:"query"`
	Headers    map[string][]string `json:"headers"`
	BodyBytes  int64               `json:"body_bytes"`
	Proto      string              `json:"proto"`
	RemoteAddr string              `json:"remote_addr"`
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

	mu   sync.Mutex
	ring []Record // circular; next is the slot the next record goes into
	next int
	full bool
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
	return s
}

// ServeHTTP answers the admin paths itself and echoes everything else.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Served-By", s.cfg.Pod)
	switch r.URL.Path {
	case HealthPath:
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, "ok")
		return
	case ReceivedPath:
		s.serveReceived(w, r)
		return
	}

	start := time.Now()
	// Counting instead of buffering lets tests send bodies of any size.
	n, err := io.Copy(io.Discard, r.Body)
	rec := Record{
		Pod:        s.cfg.Pod,
		Namespace:  s.cfg.Namespace,
		Method:     r.Method,
		Host:       r.Host,
		Path:       r.URL.Path,
		Query:      r.URL.RawQuery,
		Headers:    r.Header.Clone(),
		BodyBytes:  n,
		Proto:      r.Proto,
		RemoteAddr: r.RemoteAddr,
	}
	if rec.Headers == nil {
		rec.Headers = map[string][]string{}
	}
	// Record before answering, so a client that has its answer can rely on /_received showing it.
	s.add(rec)
	if s.logger != nil {
		errText := ""
		if err != nil {
			errText = " body-error=" + err.Error()
		}
		s.logger.Printf("%s %s %s %q from %s body=%d%s in %s",
			r.Proto, r.Method, r.Host, r.URL.RequestURI(), r.RemoteAddr, n, errText, time.Since(start).Round(time.Microsecond))
	}
	writeJSON(w, http.StatusOK, rec)
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
	s.next++
	if s.next == len(s.ring) {
		s.next, s.full = 0, true
	}
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
