package proxy

import (
	"maps"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// children caches a metric vector's children by their label values.
// WithLabelValues hashes the values and takes the vector's lock on every
// call, and a request asks for the same few children every time: here a
// lookup is one read of an immutable map. A new key copies the map, which
// is cheap because the keys are as bounded as the labels (routes,
// configured backends, outcomes, status codes).
type children[K comparable, V any] struct {
	mu       sync.Mutex
	m        atomic.Pointer[map[K]V]
	newChild func(K) V
}

func newChildren[K comparable, V any](newChild func(K) V) *children[K, V] {
	return &children[K, V]{newChild: newChild}
}

func (c *children[K, V]) get(k K) V {
	if m := c.m.Load(); m != nil {
		if v, ok := (*m)[k]; ok {
			return v
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var old map[K]V
	if p := c.m.Load(); p != nil {
		old = *p
		if v, ok := old[k]; ok {
			return v
		}
	}
	next := make(map[K]V, len(old)+1)
	maps.Copy(next, old)
	v := c.newChild(k)
	next[k] = v
	c.m.Store(&next)
	return v
}

// requestKey labels dso_proxy_requests_total.
type requestKey struct {
	route, backend string
	code           int
}

// routeKey labels the per route and backend histograms.
type routeKey struct{ route, backend string }

// routeLatency are a route and backend's two latency histograms.
type routeLatency struct{ total, firstByte prometheus.Observer }

// attemptKey labels dso_upstream_attempts_total.
type attemptKey struct{ backend, outcome string }

// hotChildren are the children of the vectors the hot path uses.
type hotChildren struct {
	requests  *children[requestKey, prometheus.Counter]
	latency   *children[routeKey, routeLatency]
	overhead  *children[string, prometheus.Observer]
	upstream  *children[string, prometheus.Observer]
	attempts  *children[attemptKey, prometheus.Counter]
	retrieval *children[string, prometheus.Counter]
	stage     *children[string, prometheus.Observer]
}

func (m *metrics) cache() {
	m.cached = hotChildren{
		requests: newChildren(func(k requestKey) prometheus.Counter {
			return m.requests.WithLabelValues(k.route, k.backend, strconv.Itoa(k.code))
		}),
		latency: newChildren(func(k routeKey) routeLatency {
			return routeLatency{m.duration.WithLabelValues(k.route, k.backend), m.firstByte.WithLabelValues(k.route, k.backend)}
		}),
		overhead:  newChildren(func(route string) prometheus.Observer { return m.overhead.WithLabelValues(route) }),
		upstream:  newChildren(func(b string) prometheus.Observer { return m.upstream.WithLabelValues(b) }),
		attempts:  newChildren(func(k attemptKey) prometheus.Counter { return m.attempts.WithLabelValues(k.backend, k.outcome) }),
		retrieval: newChildren(func(o string) prometheus.Counter { return m.retrieval.WithLabelValues(o) }),
		stage:     newChildren(func(s string) prometheus.Observer { return m.stage.WithLabelValues(s) }),
	}
}
