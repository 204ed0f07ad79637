package httpsteal

import (
	"io"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/kwarp-dev/kwarp/agent/api/stealfilter"
)

// BenchmarkRouter measures requests/s and latency of small keep-alive requests through a
// header-filtered router — matched (to the local process) and unmatched (to the app) —
// against the same load straight to each server, in the same run. Three sessions hold
// routes on the port; the matched requests are the last route's.
//
//	go test -run x -bench Router ./agent/httpsteal/
func BenchmarkRouter(b *testing.B) {
	for _, proto := range []string{"h1", "h2c"} {
		h2 := proto == "h2c"
		ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body)
			io.WriteString(w, "hello, world\n")
		})
		app := newServer(b, "app", ok, h2)
		local := newServer(b, "local", ok, h2)
		f := newFront(b, Options{DialApp: app.dial})
		for _, user := range []string{"bob", "carol", "alice"} {
			f.add(b, user, "mine", &stealfilter.Match{Header: hdrMatch("x-kwarp-user", stealfilter.StringMatch{Regex: "^" + user + "$"})}, local.dial)
		}
		for _, bc := range []struct {
			name, url, user string
		}{
			{"direct-app", app.URL, "dave"},
			{"unmatched", f.url(""), "dave"},
			{"direct-local", local.URL, "alice"},
			{"matched", f.url(""), "alice"},
		} {
			b.Run(proto+"/"+bc.name, func(b *testing.B) {
				c := client()
				c.Transport.(*http.Transport).MaxConnsPerHost = 0
				c.Transport.(*http.Transport).MaxIdleConnsPerHost = 64
				if h2 {
					c = h2cClient()
				}
				var mu sync.Mutex
				var lat []time.Duration
				b.SetParallelism(8)
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					var mine []time.Duration
					req, _ := http.NewRequest("GET", bc.url+"/bench", nil)
					req.Header.Set("X-Kwarp-User", bc.user)
					for pb.Next() {
						start := time.Now()
						resp, err := c.Do(req)
						if err != nil {
							b.Error(err)
							return
						}
						io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
						mine = append(mine, time.Since(start))
					}
					mu.Lock()
					lat = append(lat, mine...)
					mu.Unlock()
				})
				b.StopTimer()
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
				if len(lat) > 0 {
					slices.Sort(lat)
					b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
					b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
				}
				c.CloseIdleConnections()
			})
		}
	}
}
