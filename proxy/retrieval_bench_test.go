package proxy_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dso-proxy/dso/config"
	"github.com/dso-proxy/dso/library"
	"github.com/dso-proxy/dso/proxy"
	"github.com/dso-proxy/dso/store"
)

// benchLibrary fills a library with n experiences whose vectors are random
// 384-dim embeddings mapped into the canonical space.
func benchLibrary(b *testing.B, n int) *library.Library {
	b.Helper()
	lib := newLibrary(b, b.TempDir())
	rng := rand.New(rand.NewPCG(1, 2))
	const batch = 5000
	for start := 0; start < n; start += batch {
		var es []store.Experience
		var vs [][]float32
		for i := start; i < min(n, start+batch); i++ {
			v := make([]float32, 384)
			for j := range v {
				v[j] = float32(rng.NormFloat64())
			}
			c, err := lib.Canonical("bench", v)
			if err != nil {
				b.Fatal(err)
			}
			es = append(es, store.Experience{
				Text:       fmt.Sprintf("Lesson %d: when the task looks like case %d, check the inputs first and state the assumptions you make before answering.", i, i%977),
				Domain:     fmt.Sprintf("bench.d%d", i%16),
				Confidence: 0.5 + float64(i%50)/100,
			})
			vs = append(vs, c)
		}
		if _, _, err := lib.AddMany(context.Background(), es, vs); err != nil {
			b.Fatal(err)
		}
	}
	return lib
}

// BenchmarkRetrievalAdded measures a non-streamed chat request through dso
// with 100,000 stored experiences, with injection on and off, in one run:
// the difference is what retrieval (align+encode, search, load, inject)
// adds. The query embedding is a fixed vector, so embedding is excluded.
//
//	go test -run xxx -bench RetrievalAdded -benchtime 2000x ./proxy
func BenchmarkRetrievalAdded(b *testing.B) {
	n := 100_000
	if testing.Short() {
		n = 5_000
	}
	lib := benchLibrary(b, n)
	rng := rand.New(rand.NewPCG(3, 4))
	qv := make([]float32, 384)
	for j := range qv {
		qv[j] = float32(rng.NormFloat64())
	}
	emb := library.EmbedFunc(func(ctx context.Context, texts []string) ([][]float32, error) {
		return [][]float32{qv}, nil
	})
	be := newBackend(b, "openai")
	fe := newFrontend(b, []config.Backend{openaiCfg(be)}, func(o *proxy.Options, _ []config.Backend) {
		o.Retrieval = proxy.Retrieval{Library: lib, Embedder: emb, EmbedderName: "bench", Budget: time.Second}
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
	p50 := map[string]float64{}
	for _, mode := range []string{"off", "on"} {
		b.Run("inject="+mode, func(b *testing.B) {
			do(mode) // warm the connection
			lat := make([]time.Duration, 0, b.N)
			b.ReportAllocs()
			for b.Loop() {
				lat = append(lat, do(mode))
			}
			slices.Sort(lat)
			p50[mode] = float64(lat[len(lat)/2].Microseconds())
			b.ReportMetric(p50[mode], "p50-µs")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
			if mode == "on" {
				b.ReportMetric(p50["on"]-p50["off"], "added-p50-µs")
			}
		})
	}
}
