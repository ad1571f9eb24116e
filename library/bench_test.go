package library_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/dso-proxy/dso/library"
	"github.com/dso-proxy/dso/store"
)

// BenchmarkRetrieval times the request path's retrieval steps after the
// embedding, with 100,000 experiences: align+encode, search and load.
//
//	go test -run xxx -bench Retrieval ./library
func BenchmarkRetrieval(b *testing.B) {
	n := 100_000
	if testing.Short() {
		n = 5_000
	}
	st, err := store.OpenDir(context.Background(), b.TempDir(), store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	lib, err := library.New(context.Background(), library.Config{Store: st})
	if err != nil {
		b.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	vec := func() []float32 {
		v := make([]float32, 384)
		for j := range v {
			v[j] = float32(rng.NormFloat64())
		}
		return v
	}
	for start := 0; start < n; start += 5000 {
		var es []store.Experience
		var vs [][]float32
		for i := start; i < min(n, start+5000); i++ {
			c, _ := lib.Canonical("bench", vec())
			es = append(es, store.Experience{Text: fmt.Sprintf("lesson %d", i), Confidence: 0.8})
			vs = append(vs, c)
		}
		if _, _, err := lib.AddMany(context.Background(), es, vs); err != nil {
			b.Fatal(err)
		}
	}
	q := vec()
	var align, search time.Duration
	b.ReportAllocs()
	for b.Loop() {
		t0 := time.Now()
		c, err := lib.Canonical("bench", q)
		if err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		res, err := lib.Search(context.Background(), library.Query{Vector: c, K: 5})
		if err != nil || len(res) != 5 {
			b.Fatalf("%d results, %v", len(res), err)
		}
		align += t1.Sub(t0)
		search += time.Since(t1)
	}
	b.ReportMetric(float64(align.Microseconds())/float64(b.N), "align-µs/op")
	b.ReportMetric(float64(search.Microseconds())/float64(b.N), "search+load-µs/op")
}
