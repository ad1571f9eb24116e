package main

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/dso-proxy/dso/config"
	"github.com/dso-proxy/dso/gpuidx"
	"github.com/dso-proxy/dso/library"
	"github.com/dso-proxy/dso/providers"
	"github.com/dso-proxy/dso/store"
	"github.com/dso-proxy/dso/store/storetest"
)

// BenchmarkStart times serve's start over a data directory holding
// BENCH_N experiences (100,000 by default), with the library's index read
// from the store ("store": the codes counted by space, then every record
// read) and from its snapshot ("snapshot"); "walk" is the library over a
// store that can neither count nor vouch for a snapshot, which reads every
// record twice, as every start did before snapshots. start-s is
// openRetrieval (store, index, library: what serve does before it
// listens; for walk, the library alone), ready-s that and the library's
// space prepared (the built-in embedder's), close-s the close, which
// writes the snapshot, rss-B/exp the resident memory the process gained,
// per experience, once serving (a search made, the lists trained). The experiences are written straight into the file
// first (see storetest.FillSQLite).
//
//	go test -run xxx -bench Start -benchtime 1x ./cmd/dso
//	BENCH_N=1000000 go test -run xxx -bench Start -benchtime 1x -timeout 20m ./cmd/dso
func BenchmarkStart(b *testing.B) {
	n := 100_000
	if v, err := strconv.Atoi(os.Getenv("BENCH_N")); err == nil && v > 0 {
		n = v
	}
	cfg := config.Default()
	cfg.Data = b.TempDir()
	router, err := providers.NewRouter(cfg.Backends, nil)
	if err != nil {
		b.Fatal(err)
	}
	sp, err := librarySpace(cfg.Retrieval, router)
	if err != nil {
		b.Fatal(err)
	}
	st, err := store.OpenDir(context.Background(), cfg.Data, store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	st.Close()
	t0 := time.Now()
	storetest.FillSQLite(b, filepath.Join(cfg.Data, store.FileName), sp.Name, n)
	b.Logf("%d experiences written in %v", n, time.Since(t0).Round(time.Millisecond))
	snapshot := filepath.Join(cfg.Data, library.SnapshotFile)
	for _, from := range []string{"walk", "store", "snapshot"} {
		b.Run(from, func(b *testing.B) {
			var start, ready, closing time.Duration
			var rss int64
			for range b.N {
				if from == "snapshot" {
					if _, err := os.Stat(snapshot); err != nil {
						b.Fatalf("no snapshot to start from: %v", err)
					}
				} else if err := os.Remove(snapshot); err != nil && !errors.Is(err, fs.ErrNotExist) {
					b.Fatal(err)
				}
				rss0 := settledRSS()
				t0 := time.Now()
				lib, idx, closeAll := startFrom(b, from, cfg, router)
				start += time.Since(t0)
				if err := lib.Prepare(context.Background()); err != nil {
					b.Fatal(err)
				}
				ready += time.Since(t0)
				if got := lib.Len(); got != n {
					b.Fatalf("the index holds %d experiences; want %d", got, n)
				}
				// Serving: a search (which starts the lists' training on
				// an index restored from its snapshot), the lists trained.
				v, err := lib.Vector(context.Background(), "how do I close a file")
				if err == nil {
					_, err = lib.Search(context.Background(), library.Query{Vector: v})
				}
				if err != nil {
					b.Fatal(err)
				}
				if c, ok := idx.(*gpuidx.CPU); ok {
					c.WaitLists()
				}
				rss += settledRSS() - rss0
				t1 := time.Now()
				closeAll()
				closing += time.Since(t1)
			}
			per := func(d time.Duration) float64 { return d.Seconds() / float64(b.N) }
			b.ReportMetric(per(start), "start-s")
			b.ReportMetric(per(ready), "ready-s")
			b.ReportMetric(per(closing), "close-s")
			b.ReportMetric(float64(rss)/float64(b.N)/float64(n), "rss-B/exp")
			if fi, err := os.Stat(snapshot); err == nil {
				b.ReportMetric(float64(fi.Size())/(1<<20), "snapshot-MiB")
			}
		})
	}
}

// startFrom opens the library as BenchmarkStart's case from does, and
// returns its index.
func startFrom(b *testing.B, from string, cfg config.Config, router *providers.Router) (*library.Library, gpuidx.Index, func()) {
	ctx := context.Background()
	if from != "walk" {
		log := slog.New(slog.DiscardHandler)
		if testing.Verbose() {
			log = slog.New(slog.NewTextHandler(os.Stderr, nil)) // what took how long
		}
		var idx gpuidx.Index
		rt, closeAll, err := openRetrievalWith(ctx, cfg, router, log, func() (gpuidx.Index, error) {
			var err error
			idx, err = gpuidx.Open(cfg.Retrieval.Index, gpuidx.CPUConfig{}, gpuidx.GPUConfig{}, log) // as openRetrieval
			return idx, err
		})
		if err != nil {
			b.Fatal(err)
		}
		return rt.Library, idx, closeAll
	}
	st, err := store.OpenDir(ctx, cfg.Data, store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	idx, err := gpuidx.Open(cfg.Retrieval.Index, gpuidx.CPUConfig{}, gpuidx.GPUConfig{}, nil)
	if err != nil {
		b.Fatal(err)
	}
	// Only the methods of a library.Store: no SpaceCounter, no ChangeFinder.
	lib, err := openLibrary(ctx, struct{ library.Store }{st}, cfg, cfg.Retrieval.CacheSize, idx, router)
	if err != nil {
		b.Fatal(err)
	}
	return lib, idx, func() {
		lib.Close()
		idx.Close()
		st.Close()
	}
}
