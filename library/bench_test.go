package library_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/dso-proxy/dso/library"
	"github.com/dso-proxy/dso/providers"
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
	h := providers.NewHashEmbedder(384, 1)
	lib, err := library.New(context.Background(), library.Config{Store: st, Space: library.Space{Name: "hash:384", Embedder: library.EmbedFunc(h.Embed)}})
	if err != nil {
		b.Fatal(err)
	}
	defer lib.Close()
	rng := rand.New(rand.NewPCG(1, 2))
	words := strings.Fields("close file error context deadline request goroutine mutex map test table interface queue buffer body stream flush log config secret timeout retry key slice sort cache pool server client")
	text := func() string {
		var b strings.Builder
		for range 8 {
			b.WriteString(words[rng.IntN(len(words))])
			b.WriteByte(' ')
		}
		return b.String()
	}
	for start := 0; start < n; start += 5000 {
		var es []store.Experience
		for i := start; i < min(n, start+5000); i++ {
			es = append(es, store.Experience{Text: fmt.Sprintf("%s (lesson %d)", text(), i), Confidence: 0.8})
		}
		if _, _, err := lib.AddMany(context.Background(), es); err != nil {
			b.Fatal(err)
		}
	}
	q := text()
	var align, search time.Duration
	b.ReportAllocs()
	for b.Loop() {
		t0 := time.Now()
		c, err := lib.Vector(context.Background(), q) // cached after the first
		if err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		res, err := lib.Search(context.Background(), library.Query{Vector: c, K: 5, MinRelevance: &library.NoGate})
		if err != nil || len(res) != 5 {
			b.Fatalf("%d results, %v", len(res), err)
		}
		align += t1.Sub(t0)
		search += time.Since(t1)
	}
	b.ReportMetric(float64(align.Microseconds())/float64(b.N), "align-µs/op")
	b.ReportMetric(float64(search.Microseconds())/float64(b.N), "search+load-µs/op")
}
