package proxy_test

import (
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/dso-proxy/dso/internal/overheadtest"
)

// BenchmarkOverheadInterleaved is BenchmarkOverhead's comparison made
// fair on a shared machine: each iteration sends a round of 256 requests
// through every route and mode in turn (the order rotating), so a burst
// of outside load falls on all of them alike, and the CPU of each round is
// charged to its route. It logs dso's ratios to the floor over all rounds
// and in the median round.
//
//	go test -run xxx -bench OverheadInterleaved -benchtime 40x ./proxy
func BenchmarkOverheadInterleaved(b *testing.B) { benchInterleaved(b, 1) }

// BenchmarkOverheadParallel is BenchmarkOverheadInterleaved with 32
// clients at once (the 32 connections), each round split among
// them, beside two floors: the stock ReverseProxy, which keeps 2 idle
// connections to its backend and so dials for most requests at 32
// clients, and one with a connection pool as large as dso's, the fair
// floor. It logs RPS and CPU ratios to both.
//
//	go test -run xxx -bench OverheadParallel -benchtime 40x ./proxy
func BenchmarkOverheadParallel(b *testing.B) { benchInterleaved(b, 32) }

// benchInterleaved runs the interleaved comparison with clients at once.
func benchInterleaved(b *testing.B, clients int) {
	const round = 256
	rig, routes := overheadRoutes(b)
	floors := []string{"floor"}
	if clients > 1 {
		u, _ := url.Parse(rig.backend.URL)
		pooled := httputil.NewSingleHostReverseProxy(u)
		pt := http.DefaultTransport.(*http.Transport).Clone()
		pt.MaxIdleConnsPerHost = 512
		pooled.Transport = pt
		b.Cleanup(pt.CloseIdleConnections)
		fp := httptest.NewServer(overheadtest.BodyFirst(pooled))
		b.Cleanup(fp.Close)
		routes = append(routes, route{"floor-pooled", fp.URL})
		floors = []string{"floor-pooled", "floor"}
	}
	type leg struct {
		key, base string
		stream    bool
	}
	var legs []leg
	for _, r := range routes {
		legs = append(legs, leg{r.name + "/nonstream", r.base, false}, leg{r.name + "/stream", r.base, true})
	}
	for _, l := range legs {
		if err := rig.do(l.base, l.stream); err != nil {
			b.Fatalf("%s: %v", l.key, err)
		}
	}
	// A round's requests, split among the clients.
	send := func(l leg) {
		var wg sync.WaitGroup
		for c := range clients {
			wg.Go(func() {
				for i := c; i < round; i += clients {
					if err := rig.do(l.base, l.stream); err != nil {
						b.Errorf("%s: %v", l.key, err)
						return
					}
				}
			})
		}
		wg.Wait()
	}
	cpu, wall := map[string]time.Duration{}, map[string]time.Duration{}
	cpuRounds, rpsRounds := map[string][]float64{}, map[string][]float64{} // µs per request, requests per second
	n := 0
	for b.Loop() {
		for j := range legs {
			l := legs[(n+j)%len(legs)]
			t0, cpu0 := time.Now(), processCPU()
			send(l)
			used, took := processCPU()-cpu0, time.Since(t0)
			cpu[l.key] += used
			wall[l.key] += took
			cpuRounds[l.key] = append(cpuRounds[l.key], float64(used.Nanoseconds())/1e3/round)
			rpsRounds[l.key] = append(rpsRounds[l.key], round/took.Seconds())
		}
		n++
	}
	if b.Failed() {
		return
	}
	// Over all rounds, and the median round: a burst of outside load that
	// lands on a few rounds moves the first, not the second.
	meanCPU := func(k string) float64 { return float64(cpu[k].Nanoseconds()) / 1e3 / float64(n*round) }
	meanRPS := func(k string) float64 { return float64(n*round) / wall[k].Seconds() }
	median := overheadtest.Median
	for _, mode := range []string{"nonstream", "stream"} {
		d, md := meanCPU("direct/"+mode), median(cpuRounds["direct/"+mode])
		for _, fl := range floors {
			fk := fl + "/" + mode
			f, mf := meanCPU(fk), median(cpuRounds[fk])
			if f-d <= 0 || mf-md <= 0 {
				continue
			}
			for _, r := range []string{"dso", "dso+library"} {
				k := r + "/" + mode
				ratio, mratio := (meanCPU(k)-d)/(f-d), (median(cpuRounds[k])-md)/(mf-md)
				rps, mrps := meanRPS(k)/meanRPS(fk), median(rpsRounds[k])/median(rpsRounds[fk])
				b.ReportMetric(mratio, r+"-"+mode+"-median-cpu-vs-"+fl)
				b.Logf("%s %s, %d client(s), vs %s: CPU added per request %.1f µs vs %.1f µs (ratio %.2f; median round %.1f vs %.1f µs, ratio %.2f); %.0f req/s vs %.0f (ratio %.2f; median round %.2f); %d requests each",
					r, mode, clients, fl, meanCPU(k)-d, f-d, ratio, median(cpuRounds[k])-md, mf-md, mratio, meanRPS(k), meanRPS(fk), rps, mrps, n*round)
			}
		}
	}
}
