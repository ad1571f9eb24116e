package library_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dso-proxy/dso/internal/redistest"
	"github.com/dso-proxy/dso/library"
	"github.com/dso-proxy/dso/providers"
	"github.com/dso-proxy/dso/store"
)

// BenchmarkStore compares the SQLite and the Redis store under a library
// in one run: the retrieval step that reads the store (search, then load
// the 5 records found, over 5,000 experiences) and write throughput (one
// experience added per call, alone and from parallel writers). Both stores
// make every write durable before acknowledging it: SQLite with
// synchronous=FULL, Redis with appendfsync always.
//
//	go test -run xxx -bench Store -benchtime 2s ./library
func BenchmarkStore(b *testing.B) {
	srv := redistest.Start(b)
	for _, kind := range []string{"sqlite", "redis"} {
		open := func(b *testing.B) library.Store {
			if kind == "sqlite" {
				st, err := store.OpenDir(context.Background(), b.TempDir(), store.Options{})
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { st.Close() })
				return st
			}
			st, err := store.OpenRedis(context.Background(), srv.URL(), store.RedisOptions{Prefix: fmt.Sprintf("bench%d:", time.Now().UnixNano())})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { st.Close() })
			return st
		}
		b.Run(kind+"/retrieval", func(b *testing.B) { benchSearch(b, open(b)) })
		b.Run(kind+"/add", func(b *testing.B) { benchAdd(b, open(b), false) })
		b.Run(kind+"/add-parallel", func(b *testing.B) { benchAdd(b, open(b), true) })
	}
}

func benchLibrary(b *testing.B, st library.Store) *library.Library {
	h := providers.NewHashEmbedder(384, 1)
	lib, err := library.New(context.Background(), library.Config{Store: st, Space: library.Space{Name: "hash:384", Embedder: library.EmbedFunc(h.Embed)}})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { lib.Close() })
	return lib
}

func benchSearch(b *testing.B, st library.Store) {
	lib := benchLibrary(b, st)
	var es []store.Experience
	for i := range 5000 {
		es = append(es, store.Experience{Text: fmt.Sprintf("lesson %d about closing files and checking errors", i), Confidence: 0.8})
	}
	if _, _, err := lib.AddMany(context.Background(), es); err != nil {
		b.Fatal(err)
	}
	c, err := lib.Vector(context.Background(), "how do I check the error from closing a file")
	if err != nil {
		b.Fatal(err)
	}
	res, err := lib.Search(context.Background(), library.Query{Vector: c, K: 5, MinRelevance: &library.NoGate})
	if err != nil || len(res) != 5 || res[0].Text == "" {
		b.Fatalf("%d results, %v", len(res), err)
	}
	ids := make([]string, len(res))
	for i, r := range res {
		ids[i] = r.ID
	}
	b.Run("search", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if res, err := lib.Search(context.Background(), library.Query{Vector: c, K: 5, MinRelevance: &library.NoGate}); err != nil || len(res) != 5 {
				b.Fatalf("%d results, %v", len(res), err)
			}
		}
	})
	// The store's share of it: loading the 5 records found.
	b.Run("load", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if es, err := st.GetExperiences(context.Background(), ids); err != nil || len(es) != 5 {
				b.Fatalf("%d records, %v", len(es), err)
			}
		}
	})
}

func benchAdd(b *testing.B, st library.Store, parallel bool) {
	lib := benchLibrary(b, st)
	var n atomic.Int64
	add := func() {
		i := n.Add(1)
		_, created, err := lib.Add(context.Background(), store.Experience{Text: fmt.Sprintf("lesson %d, written once", i), Confidence: 0.8})
		if err != nil || !created {
			b.Fatalf("add: %v, %v", created, err)
		}
	}
	b.ReportAllocs()
	start := time.Now()
	if parallel {
		b.SetParallelism(4)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				add()
			}
		})
	} else {
		for b.Loop() {
			add()
		}
	}
	b.ReportMetric(float64(n.Load())/time.Since(start).Seconds(), "writes/s")
}
