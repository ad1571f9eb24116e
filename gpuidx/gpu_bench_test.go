package gpuidx

import (
	"context"
	"fmt"
	"testing"
)

// BenchmarkBackends compares the CPU index and the GPU index (on this
// machine's OpenCL device: with PoCL that is the CPU, not a GPU) on the same
// records and queries, one query at a time and in batches.
func BenchmarkBackends(b *testing.B) {
	const n = 20000
	recs, _ := gpuRecords(b, n, 30)
	cfg := testGPUConfig
	cfg.MaxBatch = 32
	x, g := newPair(b, cfg, recs)
	r := gpuRand(31)
	qs := make([]Query, 32)
	for i := range qs {
		qs[i] = Query{Vector: r.vector(), K: 10}
	}
	ctx := context.Background()
	for _, mode := range []Mode{ModePrefixRerank, ModeFull} {
		for i := range qs {
			qs[i].Mode = mode
		}
		b.Run(fmt.Sprintf("cpu/%v", mode), func(b *testing.B) {
			for i := 0; b.Loop(); i++ {
				if _, err := x.Search(ctx, qs[i%len(qs)]); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("opencl/%v", mode), func(b *testing.B) {
			for i := 0; b.Loop(); i++ {
				if _, err := g.SearchBatch(ctx, qs[i%len(qs):i%len(qs)+1]); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("opencl-batch32/%v", mode), func(b *testing.B) {
			for b.Loop() {
				if _, err := g.SearchBatch(ctx, qs); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(qs)), "ns/query")
		})
	}
}
