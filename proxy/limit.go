package proxy

import (
	"fmt"
	"net/http"
	"sync"
)

// inFlight bounds the requests, and the request body bytes, being served at
// once. It never queues: past a bound, the request is refused at once with
// 503 and Retry-After, so that load beyond capacity costs dso no memory.
type inFlight struct {
	mu       sync.Mutex // protects the following fields
	requests int
	bytes    int64

	maxRequests int
	maxBytes    int64
	maxBody     int64 // what a body of unknown length is counted as
}

// acquire takes room for one request whose body is n bytes (-1:
// unknown); it returns a release func, or "" and the bound that refused it.
func (f *inFlight) acquire(n int64) (release func(), refused string) {
	if n < 0 || n > f.maxBody {
		n = f.maxBody // a larger body is refused by readBody (413) anyway
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case f.requests >= f.maxRequests:
		return nil, "requests"
	case f.bytes+n > f.maxBytes && f.requests > 0:
		// One request is always let through, whatever its size.
		return nil, "bytes"
	}
	f.requests++
	f.bytes += n
	return func() {
		f.mu.Lock()
		f.requests--
		f.bytes -= n
		f.mu.Unlock()
	}, ""
}

// limit is the middleware that applies s.flight.
func (s *Server) limit(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		release, refused := s.flight.acquire(r.ContentLength)
		if release == nil {
			s.metrics.refused.WithLabelValues(refused).Inc()
			w.Header().Set("Connection", "close") // do not wait for its body
			writeError(w, routeSurface(r), &HTTPError{
				Status: http.StatusServiceUnavailable, Type: "api_error", Code: "overloaded", RetryAfter: 1,
				Msg: fmt.Sprintf("dso is serving as many %s as it allows; retry shortly", refusedWhat[refused]),
			})
			return
		}
		defer release()
		next.ServeHTTP(w, r)
	})
}

var refusedWhat = map[string]string{"requests": "requests", "bytes": "request bytes"}
