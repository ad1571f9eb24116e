package proxy

import (
	"errors"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
)

// inFlight bounds the requests, and the request body bytes, being served at
// once, in all and for one client address. It never queues: past a bound,
// the request is refused at once with 503 and Retry-After, so that load
// beyond capacity costs dso no memory.
type inFlight struct {
	mu       sync.Mutex // protects the following fields
	requests int
	bytes    int64
	clients  map[string]int // requests in flight by client address; no zeros

	maxRequests  int
	maxBytes     int64
	maxBody      int64 // what a body of unknown length is counted as
	maxPerClient int   // <= 0: no per-client bound
}

// acquire takes room for one request of client whose body is n bytes (-1:
// unknown); it returns a release func, or nil and the bound that refused it.
func (f *inFlight) acquire(client string, n int64) (release func(), refused string) {
	if n < 0 || n > f.maxBody {
		n = f.maxBody // a larger body is refused by readBody (413) anyway
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case f.requests >= f.maxRequests:
		return nil, "requests"
	case f.maxPerClient > 0 && f.clients[client] >= f.maxPerClient:
		return nil, "client"
	case f.bytes+n > f.maxBytes && f.requests > 0:
		// One request is always let through, whatever its size.
		return nil, "bytes"
	}
	if f.clients == nil {
		f.clients = map[string]int{} // at most maxRequests keys
	}
	f.requests++
	f.bytes += n
	f.clients[client]++
	return func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.requests--
		f.bytes -= n
		if f.clients[client]--; f.clients[client] <= 0 {
			delete(f.clients, client)
		}
	}, ""
}

// clientAddr is the address of a request's client, without a port: the
// unit of the per-client bounds and the voter of keyless feedback. It is
// the connection's address, unless that is a trusted proxy's: then it is
// the rightmost X-Forwarded-For address that is not a trusted proxy (the
// ones to its left are the client's to invent), as Caddy and nginx read it.
func (s *Server) clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || !s.trustedProxy(ip) {
		return host
	}
	xff := r.Header.Values("X-Forwarded-For")
	for i := len(xff) - 1; i >= 0; i-- {
		parts := strings.Split(xff[i], ",")
		for j := len(parts) - 1; j >= 0; j-- {
			a, err := netip.ParseAddr(strings.TrimSpace(parts[j]))
			if err != nil {
				return host // a malformed hop: trust nothing to its left
			}
			if a = a.Unmap(); !s.trustedProxy(a) {
				return a.String()
			}
		}
	}
	return host
}

// trustedProxy reports whether ip is one of Options.TrustedProxies.
func (s *Server) trustedProxy(ip netip.Addr) bool {
	ip = ip.Unmap()
	for _, p := range s.opts.TrustedProxies {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// limit is the middleware that applies s.flight.
func (s *Server) limit(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		release, refused := s.flight.acquire(s.clientAddr(r), r.ContentLength)
		if release == nil {
			s.metrics.refused.WithLabelValues(refused).Inc()
			why := refusals[refused]
			s.limitRefusals.add(r.Context(), 1, errors.New(why.log))
			writeError(w, routeSurface(r), &HTTPError{
				Status: http.StatusServiceUnavailable, Type: "api_error", Code: "overloaded", RetryAfter: 1,
				Msg: why.msg,
			})
			return
		}
		defer release()
		next.ServeHTTP(w, r)
	})
}

// refusals are, by the bound that refused, what the client is told and
// what the warning says.
var refusals = map[string]struct{ msg, log string }{
	"requests": {"dso is serving as many requests as it allows; retry shortly", "max_in_flight reached"},
	"bytes":    {"dso is holding as many request bytes as it allows; retry shortly", "max_bytes_in_flight reached"},
	"client":   {"this client address has as many requests in flight as one client may; retry when one has finished", "a client address reached max_in_flight_per_client"},
}
