package proxy

import (
	"fmt"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// Children got at once from many goroutines, new keys among them, are the
// vector's own: every increment lands in the series its labels name.
func TestChildrenCountIntoTheirSeries(t *testing.T) {
	vec := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "c"}, []string{"route", "backend", "code"})
	c := newChildren(func(k requestKey) prometheus.Counter {
		return vec.WithLabelValues(k.route, k.backend, fmt.Sprint(k.code))
	})
	const goroutines, each = 8, 500
	codes := []int{200, 201, 404, 429, 500, 502, 503, 504}
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range each {
				c.get(requestKey{"/v1/chat/completions", fmt.Sprint("b", g%2), codes[(g+i)%len(codes)]}).Inc()
			}
		})
	}
	wg.Wait()
	var total float64
	for b := range 2 {
		for _, code := range codes {
			n := counterValue(t, vec.WithLabelValues("/v1/chat/completions", fmt.Sprint("b", b), fmt.Sprint(code)))
			if want := float64(goroutines / 2 * each / len(codes)); n != want {
				t.Errorf("backend b%d code %d: %v; want %v", b, code, n, want)
			}
			total += n
		}
	}
	if total != goroutines*each {
		t.Errorf("%v increments counted; want %d", total, goroutines*each)
	}
	if n := len(*c.m.Load()); n != 2*len(codes) {
		t.Errorf("%d children cached; want %d", n, 2*len(codes))
	}
}

func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}
