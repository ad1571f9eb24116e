package proxy

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the proxy's Prometheus series. Labels are bounded: the route
// pattern, the configured backend name, and the status code.
type metrics struct {
	requests  *prometheus.CounterVec
	duration  *prometheus.HistogramVec
	firstByte *prometheus.HistogramVec
	upstream  *prometheus.HistogramVec
	attempts  *prometheus.CounterVec

	retrieval    *prometheus.CounterVec
	stage        *prometheus.HistogramVec
	injected     prometheus.Histogram
	traceDropped prometheus.Counter
	overhead     *prometheus.HistogramVec
	refused      *prometheus.CounterVec
	connsOpen    prometheus.Gauge   // client connections open (through Server.Listener)
	traceSpooled prometheus.Gauge   // traces kept in memory while the store is away
	connsRefused prometheus.Counter // connections closed past a client's share
	traceBatch   prometheus.Histogram
	// responsesLost counts translated Responses API responses that could
	// not be stored: previous_response_id cannot continue from them.
	responsesLost prometheus.Counter
	usage         usageMetrics // prompt and cached prompt tokens by backend

	cached hotChildren // the hot path's children of the vectors above
}

// latencyBuckets span a cached token (ms) to a long generation (minutes).
var latencyBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dso_proxy_requests_total", Help: "Requests served, by route, backend and status code.",
		}, []string{"route", "backend", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "dso_proxy_request_duration_seconds", Help: "Total time to serve a request, by route and backend.", Buckets: latencyBuckets,
		}, []string{"route", "backend"}),
		firstByte: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "dso_proxy_first_byte_seconds", Help: "Time from request to the first response byte sent to the client.", Buckets: latencyBuckets,
		}, []string{"route", "backend"}),
		upstream: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "dso_upstream_first_byte_seconds", Help: "Time from sending to a backend to its response headers.", Buckets: latencyBuckets,
		}, []string{"backend"}),
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dso_upstream_attempts_total", Help: "Backend attempts by outcome: ok (answered, its body read whole), broken (its body broke off), cancelled (the client went away), retry, failover, error.",
		}, []string{"backend", "outcome"}),
	}
	m.retrieval = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "dso_retrieval_requests_total", Help: "Chat requests by retrieval outcome: injected, none, off, or the degraded reason.",
	}, []string{"outcome"})
	m.stage = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "dso_retrieval_stage_seconds", Help: "Time per retrieval stage: embed, align (align+encode), search (index and store), inject.",
		Buckets: []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5},
	}, []string{"stage"})
	m.injected = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "dso_retrieval_injected_experiences", Help: "Experiences injected per request that got any.", Buckets: []float64{1, 2, 3, 5, 8, 13, 21},
	})
	m.traceDropped = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "dso_traces_dropped_total", Help: "Traces dropped because the write queue stayed full past the wait for room.",
	})
	m.overhead = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "dso_proxy_overhead_seconds", Help: "dso's own time in a chat request until its response header: all but the backends' time to headers (Server-Timing dso).",
		Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1},
	}, []string{"route"})
	m.refused = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "dso_proxy_refused_total", Help: "Requests refused by a bound or a guard, by bound: requests, bytes (in flight, 503), client (one client's share in flight, 503), body_rate (a body slower than the minimum rate, 408), host (a Host not allowed, 403).",
	}, []string{"bound"})
	m.traceBatch = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "dso_traces_batch_size", Help: "Traces stored per transaction.", Buckets: prometheus.ExponentialBuckets(1, 2, 10), // 1 to 512
	})
	m.responsesLost = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "dso_responses_store_failures_total", Help: "Responses API responses dso translated and could not store (later requests cannot continue from them).",
	})
	reg.MustRegister(m.responsesLost)
	m.usage = newUsageMetrics(reg)
	m.connsOpen = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "dso_connections_open", Help: "Client connections open.",
	})
	m.connsRefused = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "dso_connections_refused_total", Help: "Client connections closed as soon as accepted because their address had max_connections_per_client open.",
	})
	m.traceSpooled = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "dso_traces_spooled", Help: "Traces kept in memory because the store was away, to be stored when it returns.",
	})
	reg.MustRegister(m.connsOpen, m.connsRefused, m.traceSpooled)
	reg.MustRegister(m.requests, m.duration, m.firstByte, m.upstream, m.attempts, m.retrieval, m.stage, m.injected, m.traceDropped, m.overhead, m.refused, m.traceBatch)
	m.cache()
	return m
}

func (m *metrics) observe(route, backend string, status int, total, firstByte time.Duration) {
	m.cached.requests.get(requestKey{route, backend, status}).Inc()
	lat := m.cached.latency.get(routeKey{route, backend})
	lat.total.Observe(total.Seconds())
	if firstByte > 0 {
		lat.firstByte.Observe(firstByte.Seconds())
	}
}
