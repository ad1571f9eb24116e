package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/dso-proxy/dso/align"
	"github.com/dso-proxy/dso/compress"
	"github.com/dso-proxy/dso/gpuidx"
	"github.com/dso-proxy/dso/library"
)

func init() {
	commands["bench index"] = command{
		summary: "measure the index as served: memory per experience, search time, recall",
		about:   benchIndexAbout,
		run:     benchIndex,
	}
}

const benchIndexAbout = `Fills the index dso serve opens (its kind and defaults, under the memory
limit serve sets) with --n experiences' codes, then searches it with the
query the library makes, and reports:

  memory   the index's bytes and the process's resident memory added by
           the fill, per experience, against its code, prefix and id
  served   the search as served (the inverted file's nearest lists past
           262,144 experiences, else a scan of every prefix)
  scan     the same query scanning every prefix
  exact    full Hamming ranking of every code, the best 1,000 re-ranked
           exactly: the reference recall@10 is measured against

With --vectors and --texts the codes are of real embeddings: the texts'
sentences (a pairs CSV or one per line), recombined into --n sentences,
embedded and mapped into the canonical space by a library opened as serve
opens it with retrieval.embedder wordvec:FILE; queries are sentences held
out of the recombination. Without them, the codes are of random vectors.
The JSON report goes to standard output.`

type latency struct {
	QPS        float64 `json:"qps"`
	P50ms      float64 `json:"p50_ms"`
	P99ms      float64 `json:"p99_ms"`
	RecallAt10 float64 `json:"recall_at_10,omitempty"`
}

type benchMemory struct {
	IndexBytes int64 `json:"index_bytes"`
	// RSSBefore and RSSAfter are the process's resident memory before the
	// fill and after it (after a collection), RSSPeak its high-water mark.
	RSSBefore int64 `json:"rss_before"`
	RSSAfter  int64 `json:"rss_after"`
	RSSPeak   int64 `json:"rss_peak"`
	// Per experience: the index's bytes, the resident memory added, and
	// the code, its prefix and a packed id, which nothing can go below.
	IndexPerExperience float64 `json:"index_bytes_per_experience"`
	RSSPerExperience   float64 `json:"rss_per_experience"`
	Floor              int     `json:"code_prefix_id_bytes"`
	RSSToFloor         float64 `json:"rss_to_floor"`
}

type benchResult struct {
	N           int          `json:"n"`
	Queries     int          `json:"queries"`
	Source      string       `json:"source"`
	Index       string       `json:"index"`
	Lists       int          `json:"lists"`
	FillSeconds float64      `json:"fill_seconds"`
	Memory      benchMemory  `json:"memory"`
	Served      latency      `json:"served"`
	Scan        latency      `json:"scan"`
	Exact       latency      `json:"exact"`
	Sweep       []sweepPoint `json:"sweep,omitempty"`
}

// benchSource makes the bench's codes and queries.
type benchSource interface {
	// codes returns the codes of experiences lo to hi-1.
	codes(ctx context.Context, lo, hi int) ([]compress.Code, error)
	queries(ctx context.Context, n int) ([][]float32, error)
	name() string
}

func benchIndex(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("bench index")
	n := fs.Int("n", 100000, "number of experiences in the index")
	kind := fs.String("index", "cpu", "index backend: cpu, gpu or auto")
	anyDevice := fs.Bool("opencl-any", false, "let --index gpu use any OpenCL device, CPU ones included (to test on PoCL)")
	queries := fs.Int("queries", 200, "number of queries")
	dim := fs.Int("dim", 100, "dimension of the random source vectors lifted into codes")
	vectors := fs.String("vectors", "", "word-vector `FILE` (GloVe text, plain or gzip): codes of real embeddings")
	texts := fs.String("texts", "", "sentences `FILE` (pairs CSV or one per line) the real embeddings are made of")
	prefixWords := fs.Int("prefix-words", 0, "64-bit words the prefix pass reads (0: the served default)")
	candidates := fs.Int("candidates", 0, "codes the prefix pass keeps (0: the served default)")
	probe := fs.Int("probe", 0, "lists a search reads past 262,144 experiences (0: the served default)")
	sweep := fs.Bool("sweep", false, "also time the served search at other probe widths and candidate counts")
	if err := parseFlags(fs, args, stdout, stderr); err != nil {
		return err
	}
	switch {
	case *n < 1:
		return usageError(stderr, fs.Name(), "--n must be at least 1")
	case *queries < 1:
		return usageError(stderr, fs.Name(), "--queries must be at least 1")
	case *dim < 1 || *dim > align.LiftDim:
		return usageError(stderr, fs.Name(), "--dim must be from 1 to %d", align.LiftDim)
	case (*vectors == "") != (*texts == ""):
		return usageError(stderr, fs.Name(), "--vectors and --texts go together")
	}
	switch *kind {
	case "cpu", "gpu", "auto":
	default:
		return usageError(stderr, fs.Name(), "--index %q is not cpu, gpu or auto", *kind)
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	var src benchSource = randomSource{dim: *dim, lift: align.NewLift(liftSeed)}
	if *vectors != "" {
		ts, closeSrc, err := openTextSource(ctx, *vectors, *texts)
		if err != nil {
			return err
		}
		defer closeSrc()
		src = ts
	}
	cfg := evalLibraryConfig(*vectors)
	x, err := gpuidx.Open(*kind, gpuidx.CPUConfig{PrefixWords: *prefixWords, Candidates: *candidates, Probe: *probe},
		gpuidx.GPUConfig{PrefixWords: *prefixWords, Candidates: *candidates, AnyDevice: *anyDevice}, log)
	if err != nil {
		return err
	}
	defer x.Close()
	// The memory limit serve sets, following the index as it fills.
	limit := startMemoryLimit(cfg, x.Bytes, log)
	defer limit.close()
	res, err := runBench(ctx, x, src, *n, *queries, *sweep)
	if err != nil {
		return err
	}
	res.Index = *kind
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(res)
}

// benchBatch is how many codes a worker makes at a time.
const benchBatch = 1024

// fill upserts experiences 0 to n-1 of src into x, on every core, with
// packed 64-hex ids as the store's.
func fill(ctx context.Context, x gpuidx.Index, src benchSource, n int) error {
	workers := runtime.GOMAXPROCS(0)
	x.Reserve(n)
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for lo := w * benchBatch; lo < n; lo += workers * benchBatch {
				cs, err := src.codes(ctx, lo, min(lo+benchBatch, n))
				if err == nil {
					for i, c := range cs {
						if err = x.Upsert(benchID(lo+i), gpuidx.Meta{Confidence: 1}, c); err != nil {
							break
						}
					}
				}
				if err != nil {
					errs[w] = err
					return
				}
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// benchID is experience i's id: 64 hex digits, as a stored experience's.
func benchID(i int) string {
	s := benchRand(i)
	return fmt.Sprintf("%016x%016x%016x%016x", s.next(), s.next(), s.next(), s.next())
}

// runBench fills x from src, measures its memory, then times the served,
// scanning and exact searches of nq queries.
func runBench(ctx context.Context, x gpuidx.Index, src benchSource, n, nq int, sweep bool) (*benchResult, error) {
	qs, err := src.queries(ctx, nq)
	if err != nil {
		return nil, err
	}
	res := &benchResult{N: n, Queries: nq, Source: src.name()}
	res.Memory.RSSBefore = settledRSS()
	start := time.Now()
	if err := fill(ctx, x, src, n); err != nil {
		return nil, err
	}
	if c, ok := x.(*gpuidx.CPU); ok {
		c.WaitLists()
		res.Lists = c.Lists()
	}
	res.FillSeconds = math.Round(time.Since(start).Seconds()*100) / 100
	m := &res.Memory
	m.RSSAfter, m.RSSPeak = settledRSS(), peakRSS()
	m.IndexBytes = x.Bytes()
	m.Floor = compress.Words*8 + 8*8 + 32 // the code, the default 8-word prefix, a packed id
	m.IndexPerExperience = math.Round(float64(m.IndexBytes)/float64(n)*10) / 10
	m.RSSPerExperience = math.Round(float64(m.RSSAfter-m.RSSBefore)/float64(n)*10) / 10
	m.RSSToFloor = math.Round(m.RSSPerExperience/float64(m.Floor)*1000) / 1000

	exact := make([][]string, nq)
	res.Exact, err = timeSearches(ctx, x, qs, exact, func(v []float32) gpuidx.Query {
		return gpuidx.Query{Vector: v, K: 10, Mode: gpuidx.ModeFullRerank, Rerank: 1000}
	})
	if err != nil {
		return nil, err
	}
	got := make([][]string, nq)
	if res.Served, err = timeSearches(ctx, x, qs, got, func(v []float32) gpuidx.Query { return library.IndexQuery(v, 10) }); err != nil {
		return nil, err
	}
	res.Served.RecallAt10 = recallAt10(exact, got)
	if res.Scan, err = timeSearches(ctx, x, qs, got, func(v []float32) gpuidx.Query {
		q := library.IndexQuery(v, 10)
		q.Exhaustive = true
		return q
	}); err != nil {
		return nil, err
	}
	res.Scan.RecallAt10 = recallAt10(exact, got)
	if sweep && res.Lists > 0 {
		for _, p := range []int{8, 16, 24, 32, 48, 64, 96, 128} {
			for _, c := range []int{1024, 2048, 4096, 8192, 0} {
				l, err := timeSearches(ctx, x, qs, got, func(v []float32) gpuidx.Query {
					q := library.IndexQuery(v, 10)
					q.Probe, q.Candidates = p, c
					return q
				})
				if err != nil {
					return nil, err
				}
				l.RecallAt10 = recallAt10(exact, got)
				res.Sweep = append(res.Sweep, sweepPoint{Probe: p, Candidates: c, latency: l})
			}
		}
	}
	return res, nil
}

// sweepPoint is the served search at one probe width and candidate count
// (0: the default).
type sweepPoint struct {
	Probe      int `json:"probe"`
	Candidates int `json:"candidates"`
	latency
}

// timeSearches runs each query once, after one warm-up, and keeps its
// best 10 ids in keep.
func timeSearches(ctx context.Context, x gpuidx.Index, qs [][]float32, keep [][]string, query func([]float32) gpuidx.Query) (latency, error) {
	if _, err := x.Search(ctx, query(qs[0])); err != nil {
		return latency{}, err
	}
	lat := make([]time.Duration, 0, len(qs))
	start := time.Now()
	for i, v := range qs {
		t := time.Now()
		hits, err := x.Search(ctx, query(v))
		if err != nil {
			return latency{}, err
		}
		lat = append(lat, time.Since(t))
		ids := make([]string, 0, 10)
		for _, h := range hits[:min(10, len(hits))] {
			ids = append(ids, h.ID)
		}
		keep[i] = ids
	}
	total := time.Since(start)
	slices.Sort(lat)
	ms := func(d time.Duration) float64 { return math.Round(float64(d)/1e3) / 1e3 }
	return latency{
		QPS:   math.Round(float64(len(qs)) / total.Seconds()),
		P50ms: ms(lat[len(lat)/2]),
		P99ms: ms(lat[min(len(lat)-1, len(lat)*99/100)]),
	}, nil
}

// recallAt10 is the share of want's ids that got holds.
func recallAt10(want, got [][]string) float64 {
	found, all := 0, 0
	for i := range want {
		all += len(want[i])
		for _, id := range want[i] {
			if slices.Contains(got[i], id) {
				found++
			}
		}
	}
	if all == 0 {
		return 0
	}
	return math.Round(float64(found)/float64(all)*10000) / 10000
}

// randomSource makes codes of random Gaussian vectors through the lift,
// so the bits are random-hyperplane hashes as for real embeddings.
type randomSource struct {
	dim  int
	lift *align.Lift
}

func (s randomSource) name() string { return fmt.Sprintf("random:%d", s.dim) }

func (s randomSource) codes(_ context.Context, lo, hi int) ([]compress.Code, error) {
	out := make([]compress.Code, 0, hi-lo)
	buf := make([]float32, align.LiftDim)
	for i := lo; i < hi; i++ {
		r := benchRand(1<<40 + i)
		c, err := s.lift.Apply(buf, r.vector(s.dim))
		if err != nil {
			return nil, err
		}
		code, err := compress.Encode(c)
		if err != nil {
			return nil, err
		}
		out = append(out, code)
	}
	return out, nil
}

// queries are fresh vectors: their neighbours are the tail of the
// distribution, the hard case for a prefix pass.
func (s randomSource) queries(_ context.Context, n int) ([][]float32, error) {
	r := benchRand(7)
	qs := make([][]float32, n)
	for i := range qs {
		v, err := s.lift.Apply(nil, r.vector(s.dim))
		if err != nil {
			return nil, err
		}
		qs[i] = v
	}
	return qs, nil
}

// benchRand is splitmix64 with a Gaussian helper.
type benchRand uint64

func (s *benchRand) next() uint64 {
	*s += 0x9e3779b97f4a7c15
	z := uint64(*s)
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	return z ^ z>>31
}

func (s *benchRand) normal() float32 {
	u1 := (float64(s.next()>>11) + 0.5) / (1 << 53)
	u2 := float64(s.next()>>11) / (1 << 53)
	return float32(math.Sqrt(-2*math.Log(u1)) * math.Cos(2*math.Pi*u2))
}

func (s *benchRand) vector(dim int) []float32 {
	v := make([]float32, dim)
	for i := range v {
		v[i] = s.normal()
	}
	return v
}
