package proxy

import (
	"math"
	"sync"
	"testing"
	"time"
)

// stepClock is a clock a test moves by hand.
type stepClock struct {
	mu sync.Mutex // protects t
	t  time.Time
}

func (c *stepClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *stepClock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// The stats ring counts per 10-second interval, keeps an hour, forgets
// older intervals as the ring wraps, and reads quantiles to within a bin.
func TestStatsRing(t *testing.T) {
	clk := &stepClock{t: time.Date(2026, 1, 2, 3, 4, 0, 0, time.UTC)}
	r := newStatsRing(clk.now)
	for i := range 100 {
		r.request(200, time.Duration(i+1)*time.Millisecond, 100*time.Microsecond)
	}
	r.request(502, time.Second, 0)
	r.outcome("injected", 3, 7)
	r.outcome("timeout", 0, 7)
	r.feedback()
	r.promptTokens(promptUsage{prompt: 1000, cached: 900, ok: true})
	r.promptTokens(promptUsage{prompt: 500, cached: 0, ok: true})
	r.promptTokens(promptUsage{prompt: 70}) // an answer that says nothing of its cache

	got := r.snapshot(time.Hour)
	if len(got) != 1 {
		t.Fatalf("%d buckets; want 1", len(got))
	}
	b := got[0]
	if b.Requests != 101 || b.Errors != 1 || b.InjectedExperiences != 3 || b.Feedback != 1 || b.Library == nil || *b.Library != 7 {
		t.Fatalf("bucket %+v; want 101 requests, 1 error, 3 injected, 1 grade, library 7", b)
	}
	if b.PromptTokens != 1500 || b.CachedPromptTokens != 900 {
		t.Errorf("prompt tokens %d, cached %d; want 1500 and 900", b.PromptTokens, b.CachedPromptTokens)
	}
	if b.Retrieval["injected"] != 1 || b.Retrieval["timeout"] != 1 {
		t.Errorf("outcomes %v; want one injected, one timeout", b.Retrieval)
	}
	// The true p50 is 51ms and p99 100ms; a bin is √2 wide, and the
	// estimate inside it is closer than its bounds (45.3 and 64 ms, 90.5
	// and 128 ms).
	if math.Abs(b.LatencyP50Ms-51)/51 > 0.05 || math.Abs(b.LatencyP99Ms-100)/100 > 0.05 {
		t.Errorf("p50 %v ms, p99 %v ms; want about 51 and 100", b.LatencyP50Ms, b.LatencyP99Ms)
	}
	if b.OverheadP50Ms != 0.1 {
		t.Errorf("overhead p50 %v ms; want 0.1", b.OverheadP50Ms)
	}

	// A minute later: two buckets, oldest first; a 30 s window sees only
	// the new one.
	clk.add(time.Minute)
	r.feedback()
	if got := r.snapshot(time.Hour); len(got) != 2 || !got[0].Start.Before(got[1].Start) || got[1].Feedback != 1 {
		t.Fatalf("after a minute: %+v; want the two buckets oldest first", got)
	}
	if got := r.snapshot(30 * time.Second); len(got) != 1 || got[0].Requests != 0 {
		t.Fatalf("30 s window: %+v; want only the new bucket", got)
	}
	// An hour on, the first interval's slot is reused and its counts gone.
	clk.add(time.Hour - time.Minute)
	r.feedback()
	got = r.snapshot(time.Hour)
	if len(got) != 2 || got[1].Requests != 0 || got[1].Feedback != 1 {
		t.Fatalf("an hour on: %+v; want the minute-old bucket and a fresh one", got)
	}
}

func TestLatencyBins(t *testing.T) {
	for _, d := range []time.Duration{0, time.Microsecond, 100 * time.Microsecond, time.Millisecond, time.Second, time.Hour} {
		i := latencyBin(d)
		if i < 0 || i >= latencyBins {
			t.Fatalf("bin(%v) = %d; out of range", d, i)
		}
		if ms := float64(d) / float64(time.Millisecond); ms > binUpper(i)*1.0001 && i != latencyBins-1 {
			t.Errorf("%v is above its bin's upper bound %v ms", d, binUpper(i))
		}
		if i > 0 && float64(d)/float64(time.Millisecond) <= binUpper(i-1) {
			t.Errorf("%v fits in the bin below %d", d, i)
		}
	}
}

// A quantile is estimated inside its bin, not read as the bin's bound:
// 100 durations spread evenly over 46–64 ms have a median near 55 ms,
// where its bin's bound would say 72.4.
func TestQuantileInsideABin(t *testing.T) {
	var h latencyHist
	for i := range 100 {
		h.add(time.Duration(46e6 + i*180e3))
	}
	if got := h.quantile(0.5); math.Abs(got-55)/55 > 0.05 {
		t.Errorf("median %.2f ms; want about 55", got)
	}
}
