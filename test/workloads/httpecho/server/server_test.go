package server

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func decode[T any](t *testing.T, r io.Reader) T {
	t.Helper()
	var v T
	if err := json.NewDecoder(r).Decode(&v); err != nil {
		t.Fatalf("decode: %v", err)
	}
	return v
}

func TestEchoFields(t *testing.T) {
	s := New(Config{Pod: "sample-abc", Namespace: "ns1"})
	tests := []struct {
		name   string
		method string
		target string
		body   string
		header http.Header
		want   Record
	}{
		{
			name:   "get with query and headers",
			method: http.MethodGet,
			target: "http://svc.example/a/b?x=1&y=two",
			header: http.Header{"X-Test": {"one", "two"}},
			want: Record{Pod: "sample-abc", Namespace: "ns1", Method: "GET", Host: "svc.example",
				Path: "/a/b", Query: "x=1&y=two", Headers: map[string][]string{"X-Test": {"one", "two"}},
				Proto: "HTTP/1.1", RemoteAddr: "192.0.2.1:1234"},
		},
		{
			name:   "post body is counted",
			method: http.MethodPost,
			target: "http://svc.example/upload",
			body:   strings.Repeat("z", 1<<20+3),
			want: Record{Pod: "sample-abc", Namespace: "ns1", Method: "POST", Host: "svc.example",
				Path: "/upload", Headers: map[string][]string{}, BodyBytes: 1<<20 + 3,
				Proto: "HTTP/1.1", RemoteAddr: "192.0.2.1:1234"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s.Clear()
			req := httptest.NewRequest(tt.method, tt.target, strings.NewReader(tt.body))
			for k, v := range tt.header {
				req.Header[k] = v
			}
			rr := httptest.NewRecorder()
			s.ServeHTTP(rr, req)
			if rr.Code != http.StatusOK {
				t.Fatalf("status = %d", rr.Code)
			}
			if got := rr.Header().Get("X-Served-By"); got != "sample-abc" {
				t.Errorf("X-Served-By = %q", got)
			}
			if ct := rr.Header().Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type = %q", ct)
			}
			got := decode[Record](t, rr.Body)
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("record\n got %+v\nwant %+v", got, tt.want)
			}
			rec := s.Received()
			if len(rec) != 1 || fmt.Sprint(rec[0]) != fmt.Sprint(tt.want) {
				t.Errorf("Received() = %+v", rec)
			}
		})
	}
}

// TestJSONFieldNames pins the wire names, which e2e tests in other packages rely on.
func TestJSONFieldNames(t *testing.T) {
	s := New(Config{Pod: "p"})
	rr := httptest.NewRecorder()
	s.ServeHTTP(rr, httptest.NewRequest("GET", "/", nil))
	var m map[string]any
	if err := json.Unmarshal(rr.Body.Bytes(), &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"pod", "namespace", "method", "host", "path", "query", "headers", "body_bytes", "proto", "remote_addr"} {
		if _, ok := m[k]; !ok {
			t.Errorf("missing key %q in %s", k, rr.Body.Bytes())
		}
	}
	if h, ok := m["headers"].(map[string]any); !ok || h == nil {
		t.Errorf("headers = %#v, want an object even when empty", m["headers"])
	}
}

func TestAdminPaths(t *testing.T) {
	tests := []struct {
		name       string
		method     string
		path       string
		wantStatus int
		wantBody   string // compared after trimming space; "" skips
	}{
		{"health", "GET", "/healthz", 200, "ok"},
		{"received empty is array", "GET", "/_received", 200, "[]"},
		{"clear", "DELETE", "/_received", 204, ""},
		{"received wrong method", "POST", "/_received", 405, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := New(Config{Pod: "p"})
			rr := httptest.NewRecorder()
			s.ServeHTTP(rr, httptest.NewRequest(tt.method, tt.path, nil))
			if rr.Code != tt.wantStatus {
				t.Errorf("status = %d, want %d", rr.Code, tt.wantStatus)
			}
			if tt.wantBody != "" && strings.TrimSpace(rr.Body.String()) != tt.wantBody {
				t.Errorf("body = %q, want %q", rr.Body.String(), tt.wantBody)
			}
			if n := len(s.Received()); n != 0 {
				t.Errorf("admin request was recorded: %d records", n)
			}
		})
	}
}

func TestReceivedRing(t *testing.T) {
	paths := func(n, from int) []string {
		var p []string
		for i := from; i < from+n; i++ {
			p = append(p, fmt.Sprintf("/r%d", i))
		}
		return p
	}
	tests := []struct {
		name      string
		capacity  int
		send      int
		clearAt   int // clear after this many requests; -1 never
		wantPaths []string
	}{
		{"order newest last", 0, 3, -1, paths(3, 0)},
		{"exactly full", 4, 4, -1, paths(4, 0)},
		{"wraps keeping newest", 4, 10, -1, paths(4, 6)},
		{"clear then more", 4, 6, 5, paths(1, 5)},
		{"clear after wrap", 4, 9, 7, paths(2, 7)},
		{"default cap is 1000", 0, 1005, -1, paths(1000, 5)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := New(Config{Pod: "p", Capacity: tt.capacity})
			for i := 0; i < tt.send; i++ {
				if i == tt.clearAt {
					s.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("DELETE", "/_received", nil))
				}
				s.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", fmt.Sprintf("/r%d", i), nil))
				// Admin reads in between must not disturb the ring. Reading a full ring each time
				// would make the large case quadratic, so only the small cases interleave.
				if tt.send < 100 {
					s.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/_received", nil))
					s.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/healthz", nil))
				}
			}
			rr := httptest.NewRecorder()
			s.ServeHTTP(rr, httptest.NewRequest("GET", "/_received", nil))
			recs := decode[[]Record](t, rr.Body)
			var got []string
			for _, r := range recs {
				got = append(got, r.Path)
			}
			if strings.Join(got, ",") != strings.Join(tt.wantPaths, ",") {
				t.Errorf("paths = %v\nwant %v", got, tt.wantPaths)
			}
		})
	}
}

func TestLogOneLinePerRecordedRequest(t *testing.T) {
	var buf bytes.Buffer
	s := New(Config{Pod: "p", Log: &buf})
	for _, p := range []string{"/one", "/healthz", "/_received", "/two?q=1"} {
		s.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", p, nil))
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], `"/one"`) || !strings.Contains(lines[1], `"/two?q=1"`) {
		t.Errorf("log = %q", buf.String())
	}
}

// TestOverRealServer checks keep-alive and concurrent use through a real listener, which the
// recorder-based tests cannot show.
func TestOverRealServer(t *testing.T) {
	s := New(Config{Pod: "p"})
	ts := httptest.NewServer(s)
	defer ts.Close()
	const n = 20
	errc := make(chan error, n)
	for i := 0; i < n; i++ {
		go func() {
			resp, err := http.Post(ts.URL+"/c", "text/plain", strings.NewReader("abc"))
			if err != nil {
				errc <- err
				return
			}
			defer resp.Body.Close()
			var r Record
			if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
				errc <- err
				return
			}
			if r.BodyBytes != 3 {
				err = fmt.Errorf("body_bytes = %d", r.BodyBytes)
			}
			errc <- err
		}()
	}
	for i := 0; i < n; i++ {
		if err := <-errc; err != nil {
			t.Error(err)
		}
	}
	if got := len(s.Received()); got != n {
		t.Errorf("recorded %d, want %d", got, n)
	}
}
