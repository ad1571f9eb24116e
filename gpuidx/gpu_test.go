package gpuidx

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/dso-proxy/dso/compress"
	"github.com/dso-proxy/dso/internal/testenv"
)

// gpuRand is the GPU tests' own generator (splitmix64).
type gpuRand uint64

func (r *gpuRand) next() uint64 {
	*r += 0x9e3779b97f4a7c15
	z := uint64(*r)
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	return z ^ z>>31
}

func (r *gpuRand) float() float32 { return float32(r.next()>>40) / (1 << 24) }

func (r *gpuRand) normal() float32 {
	u1, u2 := float64(r.next()>>11+1)/(1<<53), float64(r.next()>>11)/(1<<53)
	return float32(math.Sqrt(-2*math.Log(u1)) * math.Cos(2*math.Pi*u2))
}

func (r *gpuRand) vector() []float32 {
	v := make([]float32, compress.Dim)
	for i := range v {
		v[i] = r.normal()
	}
	return v
}

// vectorNear is base plus noise, so that its code lies near base's.
func (r *gpuRand) vectorNear(base []float32, noise float32) []float32 {
	v := make([]float32, compress.Dim)
	for i := range v {
		v[i] = base[i] + noise*r.normal()
	}
	return v
}

var gpuDomains = []string{"", "code", "code.rust", "code.rust.async", "codegen", "math", "math.algebra", "law"}

type gpuRec struct {
	id   string
	meta Meta
	code compress.Code
}

// gpuRecords makes n records through compress.Encode: clusters of nearby
// vectors, some exact duplicate codes (ties), varied domains, confidences
// (some negative) and retired records.
func gpuRecords(t testing.TB, n int, seed uint64) ([]gpuRec, [][]float32) {
	r := gpuRand(seed)
	var centres [][]float32
	for range 16 {
		centres = append(centres, r.vector())
	}
	recs := make([]gpuRec, n)
	for i := range recs {
		var v []float32
		switch r.next() % 4 {
		case 0:
			v = r.vector()
		default:
			v = r.vectorNear(centres[r.next()%uint64(len(centres))], 1.5)
		}
		c, err := compress.Encode(v)
		if err != nil {
			t.Fatal(err)
		}
		if i > 0 && r.next()%10 == 0 { // a duplicate code
			c = recs[r.next()%uint64(i)].code
		}
		recs[i] = gpuRec{
			id: fmt.Sprintf("r%05d", i),
			meta: Meta{
				Domain:     gpuDomains[r.next()%uint64(len(gpuDomains))],
				Confidence: r.float()*1.2 - 0.2,
				Retired:    r.next()%10 == 0,
			},
			code: c,
		}
	}
	return recs, centres
}

// testDevice is the OpenCL device config of the tests: any device (PoCL
// runs the kernels on the CPU).
var testGPUConfig = GPUConfig{AnyDevice: true, MaxBatch: 16}

var (
	gpuOnce sync.Once
	gpuErr  error
)

// needGPU skips the test when no OpenCL platform can be loaded (failing it
// where DSO_TEST_REQUIRE names opencl), and fails it when one is there but
// the index will not open.
func needGPU(t testing.TB) {
	t.Helper()
	gpuOnce.Do(func() {
		var g *GPU
		g, gpuErr = NewGPU(testGPUConfig)
		if gpuErr == nil {
			t.Logf("OpenCL device: %s", g.Device())
			g.Close()
		}
	})
	if errors.Is(gpuErr, ErrNoGPU) {
		testenv.Skip(t, testenv.OpenCL, "no OpenCL platform (install ocl-icd-libopencl1 and pocl-opencl-icd): %v", gpuErr)
	}
	if gpuErr != nil {
		t.Fatalf("NewGPU: %v", gpuErr)
	}
}

func newPair(t testing.TB, cfg GPUConfig, recs []gpuRec) (*CPU, *GPU) {
	t.Helper()
	needGPU(t)
	g, err := NewGPU(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	x := NewCPU(CPUConfig{PrefixWords: cfg.PrefixWords, Candidates: cfg.Candidates, Rerank: cfg.Rerank})
	for _, r := range recs {
		if err := x.Upsert(r.id, r.meta, r.code); err != nil {
			t.Fatal(err)
		}
		if err := g.Upsert(r.id, r.meta, r.code); err != nil {
			t.Fatal(err)
		}
	}
	return x, g
}

// sameHits fails t unless got equals want: ids, order, distances exactly,
// scores within 1e-5.
func sameHits(t testing.TB, what string, want, got []Hit) {
	t.Helper()
	if len(want) != len(got) {
		t.Fatalf("%s: %d hits, CPU has %d", what, len(got), len(want))
	}
	for i := range want {
		w, g := want[i], got[i]
		if w.ID != g.ID || w.Distance != g.Distance || math.Abs(float64(w.Score-g.Score)) > 1e-5 {
			t.Fatalf("%s: hit %d is %+v, CPU has %+v", what, i, g, w)
		}
	}
}

// gpuQueries is a set of queries over every mode and filter.
func gpuQueries(r *gpuRand, centres [][]float32, recs []gpuRec) []Query {
	var qs []Query
	filters := []struct {
		dom  string
		conf float32
	}{{"", 0}, {"code", 0}, {"code.rust", 0.5}, {"math", 0}, {"", 0.9}, {"", -1}, {"codegen", -0.1}, {"nowhere", 0}, {"", 1.5}}
	for mode := ModePrefixRerank; mode <= ModePrefix; mode++ {
		for fi, f := range filters {
			var v []float32
			switch fi % 3 {
			case 0:
				v = r.vector()
			case 1:
				v = r.vectorNear(centres[r.next()%uint64(len(centres))], 1)
			default: // a stored record's own code: distance 0 and ties
				c := recs[r.next()%uint64(len(recs))].code
				q := Query{Code: &c, Mode: mode, Domain: f.dom, MinConfidence: f.conf, K: 20}
				if !mode.rerank() {
					qs = append(qs, q)
					continue
				}
				v = r.vector()
			}
			k := []int{0, 1, 10, 50}[r.next()%4]
			qs = append(qs, Query{Vector: v, K: k, Mode: mode, Domain: f.dom, MinConfidence: f.conf})
		}
	}
	// Explicit candidate and rerank counts.
	v := r.vector()
	qs = append(qs, Query{Vector: v, K: 5, Candidates: 7, Rerank: 3}, Query{Vector: v, K: 30, Mode: ModePrefix, Candidates: 2000},
		Query{Vector: v, K: 10, Mode: ModeFullRerank, Rerank: 400})
	return qs
}

func compareAll(t *testing.T, x *CPU, g *GPU, qs []Query, tag string) {
	t.Helper()
	ctx := context.Background()
	batch, err := g.SearchBatch(ctx, qs)
	if err != nil {
		t.Fatal(err)
	}
	for i, q := range qs {
		want, err := x.Search(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		what := fmt.Sprintf("%s query %d (mode %v, domain %q, min %v, k %d)", tag, i, q.Mode, q.Domain, q.MinConfidence, q.K)
		got, err := g.Search(ctx, q)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		sameHits(t, what, want, got)
		sameHits(t, what+" in a batch", want, batch[i])
	}
}

func TestGPUMatchesCPU(t *testing.T) {
	recs, centres := gpuRecords(t, 5000, 1)
	x, g := newPair(t, testGPUConfig, recs)
	r := gpuRand(2)
	compareAll(t, x, g, gpuQueries(&r, centres, recs), "initial")

	// Updates and deletes, then the same queries again.
	for i := 0; i < len(recs); i += 7 {
		m := recs[i].meta
		m.Retired = !m.Retired
		m.Domain = gpuDomains[(i/7)%len(gpuDomains)]
		c := recs[(i*31)%len(recs)].code
		x.Upsert(recs[i].id, m, c)
		g.Upsert(recs[i].id, m, c)
	}
	for i := 3; i < len(recs); i += 11 {
		if x.Delete(recs[i].id) != g.Delete(recs[i].id) {
			t.Fatal("Delete disagrees")
		}
	}
	if x.Len() != g.Len() {
		t.Fatalf("Len %d, CPU %d", g.Len(), x.Len())
	}
	r = gpuRand(3)
	compareAll(t, x, g, gpuQueries(&r, centres, recs), "after updates")
	m, c, ok := g.Get(recs[0].id)
	m2, c2, ok2 := x.Get(recs[0].id)
	if ok != ok2 || m != m2 || c != c2 {
		t.Fatal("Get disagrees")
	}
}

func TestGPUPrefixWordsAndSmall(t *testing.T) {
	recs, centres := gpuRecords(t, 300, 4)
	for _, p := range []int{4, 16, 60} {
		cfg := testGPUConfig
		cfg.PrefixWords, cfg.Candidates, cfg.Rerank = p, 40, 25
		x, g := newPair(t, cfg, recs)
		r := gpuRand(uint64(p))
		compareAll(t, x, g, gpuQueries(&r, centres, recs), fmt.Sprintf("prefix %d", p))
	}
	// An empty index.
	g, err := NewGPU(testGPUConfig)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	r := gpuRand(9)
	hits, err := g.Search(context.Background(), Query{Vector: r.vector()})
	if err != nil || len(hits) != 0 {
		t.Fatalf("empty index: %v, %v", hits, err)
	}
	if _, err := g.Search(context.Background(), Query{K: -1, Vector: r.vector()}); !errors.Is(err, ErrQuery) {
		t.Fatalf("bad query: %v", err)
	}
}

// TestGPULargeTies has more records at the cut-off distance than the
// compaction takes whole: the ties pass must keep the earliest slots.
func TestGPULargeTies(t *testing.T) {
	r := gpuRand(5)
	base, _ := compress.Encode(r.vector())
	var recs []gpuRec
	for i := range 9000 {
		c := base
		if i%3 == 0 {
			c.Bits[i%words] ^= 1 << (i % 64)
		}
		recs = append(recs, gpuRec{id: fmt.Sprintf("t%d", i), meta: Meta{Domain: gpuDomains[i%4], Confidence: 1}, code: c})
	}
	x, g := newPair(t, testGPUConfig, recs)
	var qs []Query
	for mode := ModePrefixRerank; mode <= ModePrefix; mode++ {
		qs = append(qs, Query{Vector: r.vector(), Mode: mode, K: 10}, Query{Code: &base, Mode: ModeFull, K: 7, Domain: "code"})
	}
	before := tiePasses.Load()
	compareAll(t, x, g, qs, "ties")
	if tiePasses.Load() == before {
		t.Fatal("the ties pass did not run")
	}
}

func TestGPUConcurrent(t *testing.T) {
	recs, centres := gpuRecords(t, 3000, 6)
	x, g := newPair(t, testGPUConfig, recs[:2000])
	ctx := context.Background()
	// Writers apply their operations to the GPU in a logged order; searches
	// run meanwhile; the log is replayed on the CPU index afterwards.
	var (
		opMu sync.Mutex
		log  []func(*CPU)
		wg   sync.WaitGroup
	)
	for w := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := gpuRand(100 + w)
			for i := range 300 {
				rec := recs[2000+int(r.next()%1000)]
				opMu.Lock()
				if i%3 == 2 {
					id := recs[r.next()%3000].id
					g.Delete(id)
					log = append(log, func(x *CPU) { x.Delete(id) })
				} else {
					if err := g.Upsert(rec.id, rec.meta, rec.code); err != nil {
						t.Error(err)
					}
					log = append(log, func(x *CPU) { x.Upsert(rec.id, rec.meta, rec.code) })
				}
				opMu.Unlock()
			}
		}()
	}
	for s := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := gpuRand(200 + s)
			for range 20 {
				if _, err := g.Search(ctx, Query{Vector: r.vector(), Mode: Mode(r.next() % 4), Domain: gpuDomains[r.next()%4]}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	for _, op := range log {
		op(x)
	}
	r := gpuRand(7)
	compareAll(t, x, g, gpuQueries(&r, centres, recs), "after concurrent changes")
}

func TestGPUBatching(t *testing.T) {
	recs, centres := gpuRecords(t, 2000, 8)
	cfg := testGPUConfig
	cfg.BatchWait = 5 * time.Millisecond
	x, g := newPair(t, cfg, recs)
	r := gpuRand(10)
	qs := gpuQueries(&r, centres, recs)
	ctx := context.Background()
	var wg sync.WaitGroup
	for i, q := range qs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			want, err := x.Search(ctx, q)
			if err != nil {
				t.Error(err)
				return
			}
			got, err := g.Search(ctx, q)
			if err != nil {
				t.Error(err)
				return
			}
			sameHits(t, fmt.Sprintf("concurrent query %d", i), want, got)
		}()
	}
	wg.Wait()
	// A cancelled search returns the context's error.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := g.Search(cctx, qs[0]); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled search: %v", err)
	}
}

func TestGPUSaveLoad(t *testing.T) {
	recs, centres := gpuRecords(t, 1500, 11)
	x, g := newPair(t, testGPUConfig, recs)
	for i := 0; i < 300; i += 3 {
		x.Delete(recs[i].id)
		g.Delete(recs[i].id)
	}
	var bg, bc bytes.Buffer
	if err := g.Save(&bg); err != nil {
		t.Fatal(err)
	}
	if err := x.Save(&bc); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(bg.Bytes(), bc.Bytes()) {
		t.Fatal("GPU snapshot differs from the CPU's")
	}
	g2, err := LoadGPU(bytes.NewReader(bg.Bytes()), testGPUConfig)
	if err != nil {
		t.Fatal(err)
	}
	defer g2.Close()
	x2, err := Load(bytes.NewReader(bc.Bytes()), CPUConfig{})
	if err != nil {
		t.Fatal(err)
	}
	r := gpuRand(12)
	compareAll(t, x2, g2, gpuQueries(&r, centres, recs), "loaded")
	if _, err := LoadGPU(bytes.NewReader(bg.Bytes()[:100]), testGPUConfig); !errors.Is(err, ErrFormat) {
		t.Fatalf("truncated snapshot: %v", err)
	}

	// Restored over other records, a GPU index answers as the CPU index
	// restored from the same snapshot; a snapshot that does not load
	// changes nothing.
	others, _ := gpuRecords(t, 700, 15)
	_, g3 := newPair(t, testGPUConfig, others)
	if err := g3.Restore(bytes.NewReader(bg.Bytes()[:100])); !errors.Is(err, ErrFormat) || g3.Len() != len(others) {
		t.Fatalf("restoring a truncated snapshot: %v, %d records", err, g3.Len())
	}
	if err := g3.Restore(bytes.NewReader(bg.Bytes())); err != nil {
		t.Fatal(err)
	}
	compareAll(t, x2, g3, gpuQueries(&r, centres, recs), "restored")
}

func TestGPUMemoryLimit(t *testing.T) {
	needGPU(t)
	cfg := testGPUConfig
	cfg.MaxBytes = 4 << 20
	g, err := NewGPU(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	c := g.Capacity()
	if c <= 0 || c > 10000 {
		t.Fatalf("capacity %d for 4 MiB", c)
	}
	r := gpuRand(13)
	code, _ := compress.Encode(r.vector())
	for i := range c {
		if err := g.Upsert(fmt.Sprint(i), Meta{}, code); err != nil {
			t.Fatalf("upsert %d of %d: %v", i, c, err)
		}
	}
	err = g.Upsert("one too many", Meta{}, code)
	if !errors.Is(err, ErrFull) {
		t.Fatalf("upsert past the limit: %v", err)
	}
	t.Log(err)
	if err := g.Upsert("0", Meta{Confidence: 1}, code); err != nil { // replacing still works
		t.Fatal(err)
	}
	g.Delete("1")
	if err := g.Upsert("one too many", Meta{}, code); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	g.Save(&buf)
	cfg.MaxBytes = 2 << 20
	if _, err := LoadGPU(&buf, cfg); !errors.Is(err, ErrFull) {
		t.Fatalf("loading past the limit: %v", err)
	}
}

func TestGPUClosed(t *testing.T) {
	recs, _ := gpuRecords(t, 10, 14)
	_, g := newPair(t, testGPUConfig, recs)
	g.Close()
	g.Close()
	q := Query{Code: &recs[0].code, Mode: ModeFull}
	if _, err := g.Search(context.Background(), q); !errors.Is(err, ErrClosed) {
		t.Fatalf("search after Close: %v", err)
	}
	if _, err := g.SearchBatch(context.Background(), []Query{q}); !errors.Is(err, ErrClosed) {
		t.Fatalf("batch after Close: %v", err)
	}
	if err := g.Upsert("x", Meta{}, recs[0].code); !errors.Is(err, ErrClosed) {
		t.Fatalf("upsert after Close: %v", err)
	}
}

func TestNoOpenCL(t *testing.T) {
	_, err := NewGPU(GPUConfig{Library: "libOpenCL-absent.so.9"})
	if !errors.Is(err, ErrNoGPU) {
		t.Fatalf("NewGPU without a library: %v", err)
	}
}
