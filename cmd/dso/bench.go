package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"math"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/dso-proxy/dso/align"
	"github.com/dso-proxy/dso/compress"
	"github.com/dso-proxy/dso/gpuidx"
)

func init() {
	commands["bench index"] = command{
		summary: "measure index search speed, prefix recall and memory bandwidth",
		about:   "Searches random codes; the JSON report goes to standard output.",
		run:     benchIndex,
	}
}

type latency struct {
	QPS         float64 `json:"qps"`
	P50ms       float64 `json:"p50_ms"`
	P99ms       float64 `json:"p99_ms"`
	BytesPerSec float64 `json:"bytes_per_sec,omitempty"`
	RecallAt10  float64 `json:"recall_at_10,omitempty"`
}

type benchResult struct {
	N               int     `json:"n"`
	Queries         int     `json:"queries"`
	FullScan        latency `json:"full_scan"`
	Prefix          latency `json:"prefix"`
	MemReadBytesSec float64 `json:"mem_read_bytes_per_sec"`
	ScanToMemRatio  float64 `json:"full_scan_to_mem_ratio"`
}

func benchIndex(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("bench index")
	n := fs.Int("n", 100000, "number of codes in the index")
	kind := fs.String("index", "cpu", "index backend: cpu, gpu or auto")
	anyDevice := fs.Bool("opencl-any", false, "let --index gpu use any OpenCL device, CPU ones included (to test on PoCL)")
	queries := fs.Int("queries", 200, "number of queries")
	dim := fs.Int("dim", 100, "dimension of the random source vectors lifted into codes")
	prefixWords := fs.Int("prefix-words", 0, "64-bit words the prefix pass reads (0: index default)")
	candidates := fs.Int("candidates", 0, "codes the prefix pass keeps (0: index default)")
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
	}
	switch *kind {
	case "cpu", "gpu", "auto":
	default:
		return usageError(stderr, fs.Name(), "--index %q is not cpu, gpu or auto", *kind)
	}
	x, err := gpuidx.Open(*kind, gpuidx.CPUConfig{PrefixWords: *prefixWords, Candidates: *candidates},
		gpuidx.GPUConfig{PrefixWords: *prefixWords, Candidates: *candidates, AnyDevice: *anyDevice}, slog.New(slog.NewTextHandler(stderr, nil)))
	if err != nil {
		return err
	}
	defer x.Close()
	res, err := runBench(ctx, x, *n, *queries, *dim)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(res)
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

// runBench fills an index with n codes of random Gaussian dim-dimensional
// vectors through the lift (so the bits are random-hyperplane hashes, as for
// real embeddings), then queries with noisy copies of stored vectors.
func runBench(ctx context.Context, x gpuidx.Index, n, nq, dim int) (*benchResult, error) {
	lift := align.NewLift(liftSeed)
	workers := runtime.GOMAXPROCS(0)
	codes := make([]compress.Code, n)
	var wg sync.WaitGroup
	errs := make([]error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := benchRand(1000 + w)
			buf := make([]float32, align.LiftDim)
			for i := w; i < n; i += workers {
				c, err := lift.Apply(buf, s.vector(dim))
				if err == nil {
					codes[i], err = compress.Encode(c)
				}
				if err != nil {
					errs[w] = err
					return
				}
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	for i := range codes {
		if err := x.Upsert(strconv.Itoa(i), gpuidx.Meta{Confidence: 1}, codes[i]); err != nil {
			return nil, err
		}
	}
	codes = nil

	s := benchRand(7)
	qs := make([][]float32, nq)
	for i := range qs {
		// A stored vector is regenerated from its worker's stream only at
		// great cost, so a query is a fresh vector: its neighbours are the
		// tail of the distribution, the hard case for a prefix pass.
		v, err := lift.Apply(nil, s.vector(dim))
		if err != nil {
			return nil, err
		}
		qs[i] = v
	}

	res := &benchResult{N: n, Queries: nq}
	full := make([][]string, nq)
	timeIt := func(mode gpuidx.Mode, keep [][]string) (latency, error) {
		var lat []time.Duration
		start := time.Now()
		for i, q := range qs {
			t := time.Now()
			hits, err := x.Search(ctx, gpuidx.Query{Vector: q, K: 10, Mode: mode})
			if err != nil {
				return latency{}, err
			}
			lat = append(lat, time.Since(t))
			ids := make([]string, len(hits))
			for j, h := range hits {
				ids[j] = h.ID
			}
			keep[i] = ids
		}
		total := time.Since(start)
		slices.Sort(lat)
		ms := func(d time.Duration) float64 { return math.Round(float64(d)/1e3) / 1e3 }
		return latency{
			QPS:   math.Round(float64(nq) / total.Seconds()),
			P50ms: ms(lat[len(lat)/2]),
			P99ms: ms(lat[min(len(lat)-1, len(lat)*99/100)]),
		}, nil
	}
	var err error
	// Warm up once, then measure the memory bandwidth and both modes.
	x.Search(ctx, gpuidx.Query{Vector: qs[0], Mode: gpuidx.ModeFull})
	res.MemReadBytesSec = memReadBandwidth(512 << 20)
	if res.FullScan, err = timeIt(gpuidx.ModeFull, full); err != nil {
		return nil, err
	}
	res.FullScan.BytesPerSec = math.Round(float64(n*compress.Words*8) / (res.FullScan.P50ms / 1e3))
	pre := make([][]string, nq)
	if res.Prefix, err = timeIt(gpuidx.ModePrefix, pre); err != nil {
		return nil, err
	}
	var found, want int
	for i := range full {
		want += len(full[i])
		for _, id := range pre[i] {
			if slices.Contains(full[i], id) {
				found++
			}
		}
	}
	res.Prefix.RecallAt10 = math.Round(float64(found)/float64(want)*10000) / 10000
	res.ScanToMemRatio = math.Round(res.FullScan.BytesPerSec/res.MemReadBytesSec*1000) / 1000
	return res, nil
}

// memReadBandwidth sums a size-byte buffer (bigger than the caches) with all
// cores and returns the best of five passes in bytes per second.
func memReadBandwidth(size int) float64 {
	buf := make([]uint64, size/8)
	for i := range buf {
		buf[i] = uint64(i)
	}
	workers := runtime.GOMAXPROCS(0)
	per := len(buf) / workers
	var best float64
	sums := make([]uint64, workers)
	for range 5 {
		var wg sync.WaitGroup
		t := time.Now()
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				sums[w] = sumWords(buf[w*per : (w+1)*per])
			}()
		}
		wg.Wait()
		best = max(best, float64(per*workers*8)/time.Since(t).Seconds())
	}
	return math.Round(best)
}

func sumWords(b []uint64) uint64 {
	var a0, a1, a2, a3 uint64
	for i := 0; i+4 <= len(b); i += 4 {
		a0 += b[i]
		a1 += b[i+1]
		a2 += b[i+2]
		a3 += b[i+3]
	}
	return a0 + a1 + a2 + a3
}
