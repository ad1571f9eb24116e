package proxy_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dso-proxy/dso/config"
	"github.com/dso-proxy/dso/library"
	"github.com/dso-proxy/dso/providers"
	"github.com/dso-proxy/dso/proxy"
	"github.com/dso-proxy/dso/store"
)

// benchLibrary fills a library with n experiences embedded by the
// built-in hash embedder.
func benchLibrary(b *testing.B, n int) *library.Library {
	b.Helper()
	h := providers.NewHashEmbedder(384, 1)
	lib := newSpaceLibrary(b, b.TempDir(), library.Space{Name: "hash:384", Embedder: library.EmbedFunc(h.Embed)})
	const batch = 5000
	for start := 0; start < n; start += batch {
		var es []store.Experience
		for i := start; i < min(n, start+batch); i++ {
			es = append(es, store.Experience{
				Text:       fmt.Sprintf("Lesson %d: when the task looks like case %d, check the inputs first and state the assumptions you make before answering.", i, i%977),
				Domain:     fmt.Sprintf("bench.d%d", i%16),
				Confidence: 0.5 + float64(i%50)/100,
			})
		}
		if _, _, err := lib.AddMany(context.Background(), es); err != nil {
			b.Fatal(err)
		}
	}
	// The gate recalibrates in the background after the fill; measure
	// after it, as a serving library is between bulk changes.
	for deadline := time.Now().Add(5 * time.Minute); ; time.Sleep(50 * time.Millisecond) {
		if g, ok := lib.Gate(); ok && g.Size == lib.Len() {
			break
		}
		if time.Now().After(deadline) {
			b.Fatal("the gate was not recalibrated after the fill")
		}
	}
	return lib
}

// BenchmarkRetrievalAdded measures a non-streamed chat request through dso
// with 100,000 stored experiences (BENCH_N=1000000 for a million), with
// injection on and off, in one run: the difference is what retrieval
// (align+encode, search, load, inject) adds, in wall time (p50, p99) and
// in CPU time of the whole process per request (client and fake backend
// included, the same in both). The query's embedding is cached after the
// first request, so embedding is excluded; the gate is off (min score -1)
// so that every request injects.
//
//	go test -run xxx -bench RetrievalAdded -benchtime 2000x ./proxy
func BenchmarkRetrievalAdded(b *testing.B) {
	n := 100_000
	if testing.Short() {
		n = 5_000
	}
	if v, err := strconv.Atoi(os.Getenv("BENCH_N")); err == nil && v > 0 {
		n = v
	}
	lib := benchLibrary(b, n)
	be := newBackend(b, "openai")
	everything := -1.0
	fe := newFrontend(b, []config.Backend{openaiCfg(be)}, func(o *proxy.Options, _ []config.Backend) {
		o.Retrieval = proxy.Retrieval{Library: lib, Budget: time.Second, MinScore: &everything}
	})
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	body := chatBody("How should I approach a task like case 17?")
	do := func(inject string) time.Duration {
		req, _ := http.NewRequest(http.MethodPost, fe.URL+"/v1/chat/completions", strings.NewReader(body))
		req.Header.Set(proxy.HeaderInject, inject)
		start := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		var buf [4096]byte
		for {
			if _, err := resp.Body.Read(buf[:]); err != nil {
				break
			}
		}
		resp.Body.Close()
		d := time.Since(start)
		if got := resp.Header.Get(proxy.HeaderExperiences); (inject == "on") != (got != "") {
			b.Fatalf("inject=%s: experiences %q, degraded %q", inject, got, resp.Header.Get(proxy.HeaderDegraded))
		}
		return d
	}
	p50, p99, cpu := map[string]float64{}, map[string]float64{}, map[string]float64{}
	for _, mode := range []string{"off", "on"} {
		b.Run("inject="+mode, func(b *testing.B) {
			do(mode) // warm the connection
			lat := make([]time.Duration, 0, b.N)
			b.ReportAllocs()
			cpu0 := processCPU()
			for b.Loop() {
				lat = append(lat, do(mode))
			}
			cpu[mode] = float64((processCPU() - cpu0).Microseconds()) / float64(b.N)
			slices.Sort(lat)
			p50[mode] = float64(lat[len(lat)/2].Microseconds())
			p99[mode] = float64(lat[len(lat)*99/100].Microseconds())
			b.ReportMetric(p50[mode], "p50-µs")
			b.ReportMetric(p99[mode], "p99-µs")
			b.ReportMetric(cpu[mode], "cpu-µs/req")
			if mode == "on" {
				b.ReportMetric(p50["on"]-p50["off"], "added-p50-µs")
				b.ReportMetric(p99["on"]-p99["off"], "added-p99-µs")
				b.ReportMetric(cpu["on"]-cpu["off"], "added-cpu-µs")
			}
		})
	}
}
