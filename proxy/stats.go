package proxy

import (
	"math"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// The stats ring keeps the last hour of what the proxy saw, in 10-second
// buckets, so that the dashboard can draw charts from dso alone, without a
// Prometheus server. It is fed where the Prometheus metrics are recorded
// and is bounded: statsBuckets buckets of fixed size, whatever the load.
const (
	statsInterval = 10 * time.Second
	statsBuckets  = 360
	// latencyBins are log-spaced from 100µs by a factor of √2: bin i
	// holds durations up to 100µs·√2^i, and the last bin everything longer
	// (about 5 minutes and up).
	latencyBins = 48
)

// latencyHist counts durations in latencyBins bins; quantiles read from it
// are accurate to a factor of √2, which is what a chart needs.
type latencyHist [latencyBins]uint32

func latencyBin(d time.Duration) int {
	if d <= 100*time.Microsecond {
		return 0
	}
	i := int(math.Ceil(2 * math.Log2(float64(d)/float64(100*time.Microsecond))))
	return min(i, latencyBins-1)
}

// binUpper is the upper bound of bin i in milliseconds.
func binUpper(i int) float64 { return 0.1 * math.Pow(math.Sqrt2, float64(i)) }

func (h *latencyHist) add(d time.Duration) { h[latencyBin(d)]++ }

// quantile estimates the q-th quantile in milliseconds, or 0 when the
// histogram is empty. Within its bin the estimate is interpolated on the
// log scale by the rank's place among the bin's counts, so a chart shows
// 50.3 ms rather than the bin's bound, 51.2 ms. Bin 0 and the open last
// bin read as their bound.
func (h *latencyHist) quantile(q float64) float64 {
	var n uint64
	for _, c := range h {
		n += uint64(c)
	}
	if n == 0 {
		return 0
	}
	want := max(1, uint64(math.Ceil(q*float64(n))))
	var seen uint64
	for i, c := range h {
		if seen+uint64(c) < want {
			seen += uint64(c)
			continue
		}
		if i == 0 || i == latencyBins-1 {
			return binUpper(i)
		}
		frac := float64(want-seen) / float64(c)
		return binUpper(i-1) * math.Pow(math.Sqrt2, frac)
	}
	return binUpper(latencyBins - 1)
}

// statsBucket is one interval's counts. Retrieval outcomes are a closed
// vocabulary (injected, none, off and the degraded reasons), so the map
// stays small.
type statsBucket struct {
	slot      int64 // interval number since the Unix epoch; 0: unused
	requests  int
	errors    int // 5xx answers
	latency   latencyHist
	overhead  latencyHist
	outcomes  map[string]int
	injected  int // experiences injected, summed over requests
	feedback  int
	prompt    int // prompt tokens of answers that report cached tokens
	cached    int // of which the backend reused from its prompt cache
	library   int // experiences in the index, as last seen in the interval
	libraryOK bool
}

// statsRing is the ring of buckets. The zero value is not usable; use
// newStatsRing.
type statsRing struct {
	now func() time.Time

	mu      sync.Mutex // protects buckets
	buckets [statsBuckets]statsBucket
}

func newStatsRing(now func() time.Time) *statsRing { return &statsRing{now: now} }

// bucket returns the current interval's bucket, reset if it held an older
// interval. Call with mu held.
func (r *statsRing) bucket() *statsBucket {
	slot := r.now().UnixNano() / int64(statsInterval)
	b := &r.buckets[slot%statsBuckets]
	if b.slot != slot {
		*b = statsBucket{slot: slot}
	}
	return b
}

// request records a request that reached a backend: its status, total
// time, and dso's own overhead when it was measured (0: not).
func (r *statsRing) request(status int, total, overhead time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	b := r.bucket()
	b.requests++
	if status >= 500 {
		b.errors++
	}
	b.latency.add(total)
	if overhead > 0 {
		b.overhead.add(overhead)
	}
}

// outcome records a chat request's retrieval outcome, how many
// experiences it injected, and the library's size (-1: no library).
func (r *statsRing) outcome(outcome string, injected, library int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	b := r.bucket()
	if library >= 0 {
		b.library, b.libraryOK = library, true
	}
	if b.outcomes == nil {
		b.outcomes = map[string]int{}
	}
	b.outcomes[outcome]++
	b.injected += injected
}

// feedback records one grade recorded.
func (r *statsRing) feedback() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.bucket().feedback++
}

// promptTokens records a backend's prompt token counts for one answer.
func (r *statsRing) promptTokens(u promptUsage) {
	if !u.ok {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	b := r.bucket()
	b.prompt += u.prompt
	b.cached += u.cached
}

// librarySize records the library's size now.
func (r *statsRing) librarySize(n int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	b := r.bucket()
	b.library, b.libraryOK = n, true
}

// statsBucketJSON is one bucket as GET /v1/stats shows it.
type statsBucketJSON struct {
	Start               time.Time      `json:"start"`
	Requests            int            `json:"requests"`
	Errors              int            `json:"errors"`
	LatencyP50Ms        float64        `json:"latency_p50_ms"`
	LatencyP99Ms        float64        `json:"latency_p99_ms"`
	OverheadP50Ms       float64        `json:"overhead_p50_ms"`
	OverheadP99Ms       float64        `json:"overhead_p99_ms"`
	Retrieval           map[string]int `json:"retrieval"`
	InjectedExperiences int            `json:"injected_experiences"`
	Feedback            int            `json:"feedback"`
	PromptTokens        int            `json:"prompt_tokens"`
	CachedPromptTokens  int            `json:"cached_prompt_tokens"`
	Library             *int           `json:"library,omitempty"`
}

// snapshot returns the buckets of the last window, oldest first, leaving
// out intervals in which nothing was recorded.
func (r *statsRing) snapshot(window time.Duration) []statsBucketJSON {
	r.mu.Lock()
	defer r.mu.Unlock()
	cur := r.now().UnixNano() / int64(statsInterval)
	first := cur - int64(window/statsInterval) + 1
	out := []statsBucketJSON{}
	for slot := max(first, cur-statsBuckets+1); slot <= cur; slot++ {
		b := &r.buckets[slot%statsBuckets]
		if b.slot != slot {
			continue
		}
		j := statsBucketJSON{
			Start:    time.Unix(0, slot*int64(statsInterval)).UTC(),
			Requests: b.requests, Errors: b.errors,
			LatencyP50Ms: b.latency.quantile(0.5), LatencyP99Ms: b.latency.quantile(0.99),
			OverheadP50Ms: b.overhead.quantile(0.5), OverheadP99Ms: b.overhead.quantile(0.99),
			Retrieval: map[string]int{}, InjectedExperiences: b.injected, Feedback: b.feedback,
			PromptTokens: b.prompt, CachedPromptTokens: b.cached,
		}
		for k, v := range b.outcomes {
			j.Retrieval[k] = v
		}
		if b.libraryOK {
			n := b.library
			j.Library = &n
		}
		out = append(out, j)
	}
	return out
}

// getStats serves GET /v1/stats?window=SECONDS (default and at most an
// hour): the ring's buckets, for the dashboard's charts.
func (s *Server) getStats(w http.ResponseWriter, r *http.Request) {
	window := statsBuckets * statsInterval
	if v := r.URL.Query().Get("window"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > int(window/time.Second) {
			s.fail(w, r, surfaceOpenAI, badRequest("window must be a number of seconds from 1 to %d", int(window/time.Second)))
			return
		}
		window = time.Duration(n) * time.Second
	}
	out := map[string]any{"object": "stats", "interval_seconds": int(statsInterval / time.Second)}
	if lib := s.opts.Retrieval.Library; lib != nil {
		// Sampled on read too, so that the chart has a point even when no
		// request came.
		s.stats.librarySize(lib.Len())
		out["library"] = lib.Len()
	}
	out["buckets"] = s.stats.snapshot(window)
	writeJSON(w, http.StatusOK, out)
}

// recordOutcome adds a chat request's retrieval outcome to the stats ring.
func (s *Server) recordOutcome(outcome string, injected int) {
	n := -1
	if lib := s.opts.Retrieval.Library; lib != nil {
		n = lib.Len()
	}
	s.stats.outcome(outcome, injected, n)
}
