package gpuidx

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"

	"github.com/dso-proxy/dso/compress"
)

type splitmix64 uint64

func (s *splitmix64) next() uint64 {
	*s += 0x9e3779b97f4a7c15
	z := uint64(*s)
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	return z ^ z>>31
}

func (s *splitmix64) normal() float32 {
	var t float64
	for range 12 {
		t += float64(s.next()>>11) / (1 << 53)
	}
	return float32(t - 6)
}

func randCode(s *splitmix64) compress.Code {
	var c compress.Code
	for i := range c.Bits {
		c.Bits[i] = s.next()
	}
	c.Scale = 1
	return c
}

// near returns c with each bit flipped with probability about p/64.
func near(s *splitmix64, c compress.Code, p int) compress.Code {
	for i := range c.Bits {
		for range p {
			c.Bits[i] ^= 1 << (s.next() % 64)
		}
	}
	return c
}

func randVector(s *splitmix64) []float32 {
	v := make([]float32, compress.Dim)
	for i := range v {
		v[i] = s.normal()
	}
	return v
}

// bruteForce is the reference: every record passing the filter, sorted by
// (distance, slot order of insertion ids).
func bruteForce(recs map[string]rec, q compress.Code, k int, keep func(Meta) bool) []Hit {
	var hits []Hit
	for id, r := range recs {
		if keep != nil && !keep(r.m) || r.m.Retired {
			continue
		}
		hits = append(hits, Hit{ID: id, Distance: compress.Hamming(&q, &r.c)})
	}
	slices.SortFunc(hits, func(a, b Hit) int { return a.Distance - b.Distance })
	if len(hits) > k {
		hits = hits[:k]
	}
	return hits
}

type rec struct {
	m Meta
	c compress.Code
}

func fill(t testing.TB, x *CPU, n int, seed uint64) map[string]rec {
	t.Helper()
	s := splitmix64(seed)
	recs := map[string]rec{}
	domains := []string{"code", "code.rust", "code.rust.async", "codegen", "math", ""}
	for i := range n {
		// Most ids are experience ids (held packed), some are not.
		id := fmt.Sprintf("%016x%016x%016x%016x", s.next(), s.next(), s.next(), s.next())
		if i%5 == 0 {
			id = fmt.Sprintf("%016x", s.next())
		}
		r := rec{Meta{Domain: domains[i%len(domains)], Confidence: float32(i%10) / 10, Retired: i%17 == 0}, randCode(&s)}
		if err := x.Upsert(id, r.m, r.c); err != nil {
			t.Fatal(err)
		}
		recs[id] = r
	}
	return recs
}

func distances(h []Hit) []int {
	d := make([]int, len(h))
	for i := range h {
		d[i] = h[i].Distance
	}
	return d
}

func TestSearchMatchesBruteForce(t *testing.T) {
	x := NewCPU(CPUConfig{Workers: 3})
	recs := fill(t, x, 5000, 1)
	s := splitmix64(2)
	for _, mode := range []Mode{ModeFull, ModePrefix} {
		for range 5 {
			q := randCode(&s)
			got, err := x.Search(context.Background(), Query{Code: &q, K: 10, Mode: mode, Candidates: 5000})
			if err != nil {
				t.Fatal(err)
			}
			want := bruteForce(recs, q, 10, nil)
			if !slices.Equal(distances(got), distances(want)) {
				t.Fatalf("%v: distances %v; want %v", mode, distances(got), distances(want))
			}
		}
	}
}

func TestPrefixFindsPlantedNeighbours(t *testing.T) {
	x := NewCPU(CPUConfig{})
	fill(t, x, 20000, 3)
	s := splitmix64(4)
	centre := randCode(&s)
	for i := range 10 {
		if err := x.Upsert(fmt.Sprintf("near%d", i), Meta{Confidence: 1}, near(&s, centre, 8)); err != nil {
			t.Fatal(err)
		}
	}
	q := near(&s, centre, 4)
	full, _ := x.Search(context.Background(), Query{Code: &q, Mode: ModeFull})
	pre, _ := x.Search(context.Background(), Query{Code: &q, Mode: ModePrefix, Candidates: 64})
	if !slices.Equal(full, pre) {
		t.Fatalf("prefix %v; full %v", pre, full)
	}
	for _, h := range full {
		if h.ID[:4] != "near" {
			t.Fatalf("full scan missed a planted neighbour: %v", full)
		}
	}
}

func TestRerank(t *testing.T) {
	x := NewCPU(CPUConfig{})
	s := splitmix64(5)
	base := randVector(&s)
	for i := range 300 {
		v := make([]float32, compress.Dim)
		mix := float32(i%30) / 10
		for j := range v {
			v[j] = base[j] + mix*s.normal()
		}
		c, err := compress.Encode(v)
		if err != nil {
			t.Fatal(err)
		}
		x.Upsert(fmt.Sprint(i), Meta{}, c)
	}
	for _, mode := range []Mode{ModePrefixRerank, ModeFullRerank} {
		hits, err := x.Search(context.Background(), Query{Vector: base, K: 5, Mode: mode, Rerank: 50})
		if err != nil {
			t.Fatal(err)
		}
		if len(hits) != 5 {
			t.Fatalf("%d hits", len(hits))
		}
		for i, h := range hits {
			_, c, _ := x.Get(h.ID)
			if want := rerankNorm(base) * compress.Dot(base, c.Bits[:], 1); h.Score != want {
				t.Fatalf("hit %d score %v; want %v", i, h.Score, want)
			}
			if i > 0 && h.Score > hits[i-1].Score {
				t.Fatalf("hits not sorted by score: %v", hits)
			}
		}
	}
}

func TestDomainMatch(t *testing.T) {
	tests := []struct {
		q, d string
		want bool
	}{
		{"", "", true},
		{"", "code", true},
		{"code", "code", true},
		{"code", "code.rust", true},
		{"code", "code.rust.async", true},
		{"code.rust", "code.rust.async", true},
		{"code", "codegen", false},
		{"code.rust", "code", false},
		{"code", "", false},
		{"code.r", "code.rust", false},
		{"code", "code/go", true},
		{"code/go", "code/go/generics", true},
		{"code/g", "code/go", false},
		{"code", "code-go", false},
		{"code/", "code/go", false}, // a query ends at a segment
	}
	for _, tt := range tests {
		if got := DomainMatch(tt.q, tt.d); got != tt.want {
			t.Errorf("DomainMatch(%q, %q) = %v; want %v", tt.q, tt.d, got, tt.want)
		}
	}
}

func TestFilters(t *testing.T) {
	x := NewCPU(CPUConfig{})
	recs := fill(t, x, 3000, 6)
	s := splitmix64(7)
	q := randCode(&s)
	for _, tt := range []struct {
		domain string
		conf   float32
	}{{"code", 0}, {"code.rust", 0.5}, {"", 0.9}, {"math", 0.3}, {"codegen", 0}} {
		for _, mode := range []Mode{ModeFull, ModePrefix} {
			got, err := x.Search(context.Background(), Query{Code: &q, K: 20, Domain: tt.domain, MinConfidence: tt.conf, Mode: mode, Candidates: 3000})
			if err != nil {
				t.Fatal(err)
			}
			want := bruteForce(recs, q, 20, func(m Meta) bool { return DomainMatch(tt.domain, m.Domain) && m.Confidence >= tt.conf })
			if !slices.Equal(distances(got), distances(want)) {
				t.Fatalf("domain %q conf %v %v: %v; want %v", tt.domain, tt.conf, mode, distances(got), distances(want))
			}
			for _, h := range got {
				r := recs[h.ID]
				if r.m.Retired || !DomainMatch(tt.domain, r.m.Domain) || r.m.Confidence < tt.conf {
					t.Fatalf("hit %v breaks the filter: %+v", h, r.m)
				}
			}
		}
	}
}

func TestUpsertDelete(t *testing.T) {
	x := NewCPU(CPUConfig{})
	s := splitmix64(8)
	a, b := randCode(&s), randCode(&s)
	x.Upsert("a", Meta{Domain: "x"}, a)
	x.Upsert("b", Meta{}, b)
	x.Upsert("a", Meta{Domain: "y", Confidence: 0.5}, b) // replace
	if x.Len() != 2 {
		t.Fatalf("Len = %d; want 2", x.Len())
	}
	m, c, ok := x.Get("a")
	if !ok || m.Domain != "y" || m.Confidence != 0.5 || c != b {
		t.Fatalf("Get(a) = %+v, %v", m, ok)
	}
	if !x.Delete("a") || x.Delete("a") {
		t.Fatal("Delete(a) twice: want true then false")
	}
	if _, c, ok := x.Get("b"); !ok || c != b || x.Len() != 1 {
		t.Fatal("b damaged by deleting a")
	}
	hits, _ := x.Search(context.Background(), Query{Code: &b, Mode: ModeFull})
	if len(hits) != 1 || hits[0].ID != "b" || hits[0].Distance != 0 {
		t.Fatalf("hits %v", hits)
	}
	if err := x.Upsert("", Meta{}, a); err == nil {
		t.Fatal("empty id accepted")
	}
}

func TestSearchErrors(t *testing.T) {
	x := NewCPU(CPUConfig{})
	for _, q := range []Query{
		{},                                // no vector, no code
		{Vector: make([]float32, 10)},     // wrong dimension
		{Code: &compress.Code{}},          // rerank needs the vector
		{Code: &compress.Code{}, Mode: 9}, // bad mode
		{Code: &compress.Code{}, Mode: ModeFull, K: -1},
	} {
		if _, err := x.Search(context.Background(), q); !errors.Is(err, ErrQuery) {
			t.Errorf("Search(%+v): got %v; want ErrQuery", q, err)
		}
	}
	fill(t, x, 5000, 9)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := x.Search(ctx, Query{Code: &compress.Code{}, Mode: ModeFull}); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled search: got %v", err)
	}
}

func TestConcurrentUse(t *testing.T) {
	x := NewCPU(CPUConfig{Workers: 2})
	n := 3000
	if testing.Short() {
		n = 1000
	}
	fill(t, x, n, 10)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := splitmix64(100 + g)
			for i := range 200 {
				id := fmt.Sprintf("g%d-%d", g, i%20)
				switch i % 4 {
				case 0, 1:
					x.Upsert(id, Meta{Domain: "code", Confidence: 1}, randCode(&s))
				case 2:
					x.Delete(id)
				case 3:
					q := randCode(&s)
					if _, err := x.Search(context.Background(), Query{Code: &q, Mode: ModePrefix, Domain: "code"}); err != nil {
						t.Error(err)
					}
				}
			}
		}()
	}
	for g := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := splitmix64(200 + g)
			for range 30 {
				v := randVector(&s)
				if _, err := x.Search(context.Background(), Query{Vector: v}); err != nil {
					t.Error(err)
				}
				var buf bytes.Buffer
				if err := x.Save(&buf); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	// Every live id resolves to its own slot.
	x.mu.RLock()
	defer x.mu.RUnlock()
	checkTable(t, x)
}

// checkTable verifies that the slot table holds every record once, where
// a lookup of its id finds it, and that the per-record parts agree in
// length.
func checkTable(t *testing.T, x *CPU) {
	t.Helper()
	held := 0
	for _, e := range x.table {
		if e != 0 {
			held++
		}
	}
	if held != x.n {
		t.Fatalf("the slot table holds %d records, the index %d", held, x.n)
	}
	for i := range x.n {
		if s, ok := x.slotOf(x.idAt(i)); !ok || s != i {
			t.Fatalf("slot of %q: got %d, %v; want %d", x.idAt(i), s, ok, i)
		}
	}
	if x.codes.capacity() < x.n || x.prefix.capacity() < x.n || x.keys.capacity() < x.n ||
		len(x.scales) != x.n || len(x.conf) != x.n || len(x.flags) != x.n || len(x.dom) != x.n ||
		x.other != nil && len(x.other) != x.n {
		t.Fatal("storage lengths disagree")
	}
}

func TestSnapshot(t *testing.T) {
	x := NewCPU(CPUConfig{})
	recs := fill(t, x, 500, 11)
	var buf bytes.Buffer
	if err := x.Save(&buf); err != nil {
		t.Fatal(err)
	}
	good := bytes.Clone(buf.Bytes())
	y, err := Load(bytes.NewReader(good), CPUConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if y.Len() != len(recs) {
		t.Fatalf("Len = %d; want %d", y.Len(), len(recs))
	}
	for id, r := range recs {
		m, c, ok := y.Get(id)
		if !ok || m != r.m || c != r.c {
			t.Fatalf("record %s changed: %+v", id, m)
		}
	}
	flip := func(i int) []byte {
		b := bytes.Clone(good)
		b[i] ^= 1
		return b
	}
	for _, tt := range []struct {
		name string
		b    []byte
		want error
	}{
		{"empty", nil, ErrFormat},
		{"magic", flip(0), ErrFormat},
		{"version", versionOf(good, 9), ErrVersion},
		{"truncated", good[:len(good)-3], ErrFormat},
		{"trailing", append(bytes.Clone(good), 0), ErrFormat},
		{"version 1", append([]byte(snapMagic), 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0), ErrVersion},
		{"count too high", countOf(good, 1+uint64(len(recs))), ErrFormat},
		{"count lies", countOf(good, math.MaxUint64), ErrFormat},
		{"payload", flip(len(good) / 2), nil},
		{"checksum", flip(len(good) - 1), ErrChecksum},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load(bytes.NewReader(tt.b), CPUConfig{})
			if err == nil || tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("got %v; want %v", err, tt.want)
			}
		})
	}
}

// versionOf is snapshot b with its version set to v.
func versionOf(b []byte, v uint32) []byte {
	b = bytes.Clone(b)
	binary.LittleEndian.PutUint32(b[8:], v)
	return b
}

// countOf is snapshot b with its record count set to n.
func countOf(b []byte, n uint64) []byte {
	b = bytes.Clone(b)
	binary.LittleEndian.PutUint64(b[12:], n)
	return b
}

// Restore replaces what an index holds, in the index's own configuration,
// and changes nothing when the snapshot does not load.
func TestRestore(t *testing.T) {
	x := NewCPU(CPUConfig{})
	recs := fill(t, x, 700, 21)
	var buf bytes.Buffer
	if err := x.Save(&buf); err != nil {
		t.Fatal(err)
	}
	snap := buf.Bytes()
	y := NewCPU(CPUConfig{PrefixWords: 12})
	old := fill(t, y, 50, 22)
	if err := y.Restore(bytes.NewReader(snap[:len(snap)-1])); !errors.Is(err, ErrFormat) {
		t.Fatalf("restoring a truncated snapshot: %v", err)
	}
	for id, r := range old {
		if m, c, ok := y.Get(id); !ok || m != r.m || c != r.c {
			t.Fatalf("a failed restore changed %s", id)
		}
	}
	if err := y.Restore(bytes.NewReader(snap)); err != nil {
		t.Fatal(err)
	}
	if y.Len() != len(recs) {
		t.Fatalf("Len = %d; want %d", y.Len(), len(recs))
	}
	for id := range old {
		if _, _, ok := y.Get(id); ok {
			t.Fatalf("%s outlived the restore", id)
		}
	}
	for id, r := range recs {
		if m, c, ok := y.Get(id); !ok || m != r.m || c != r.c {
			t.Fatalf("record %s restored as %+v", id, m)
		}
	}
	y.mu.RLock()
	checkTable(t, y)
	checkPrefix(t, y)
	y.mu.RUnlock()
	s := splitmix64(23)
	for range 20 {
		q := Query{Vector: randVector(&s), K: 7, Domain: "code"}
		a, err1 := x.Search(context.Background(), q)
		b, err2 := y.Search(context.Background(), q)
		if err1 != nil || err2 != nil || !slices.Equal(a, b) {
			t.Fatalf("restored index answers %v, %v; the saved one %v, %v", b, err2, a, err1)
		}
	}
	// Saved again, it is the same snapshot.
	var again bytes.Buffer
	if err := y.Save(&again); err != nil || !bytes.Equal(again.Bytes(), snap) {
		t.Fatalf("re-saved snapshot differs (%v)", err)
	}
}

func FuzzLoad(f *testing.F) {
	x := NewCPU(CPUConfig{})
	fill(f, x, 3, 12)
	var buf bytes.Buffer
	x.Save(&buf)
	f.Add(buf.Bytes())
	buf.Reset()
	NewCPU(CPUConfig{}).Save(&buf)
	f.Add(buf.Bytes())
	f.Add([]byte(snapMagic))
	buf.Reset()
	withLists := NewCPU(CPUConfig{ListsFrom: -1})
	fill(f, withLists, 300, 13)
	withLists.trainLists()
	withLists.Save(&buf)
	f.Add(buf.Bytes())
	f.Fuzz(func(t *testing.T, b []byte) {
		y, err := Load(bytes.NewReader(b), CPUConfig{})
		if err != nil {
			return
		}
		var out bytes.Buffer
		if err := y.Save(&out); err != nil {
			t.Fatal(err)
		}
		if bytes.Equal(out.Bytes(), b) {
			return
		}
		// Only a version 2 snapshot, or one whose lists are of prefixes
		// of another width (not kept), is written anew: and then once.
		if binary.LittleEndian.Uint32(b[8:]) == snapVersion && y.Lists() != 0 {
			t.Fatal("re-saving an accepted snapshot changed it")
		}
		z, err := Load(bytes.NewReader(out.Bytes()), CPUConfig{})
		if err != nil {
			t.Fatalf("a re-saved snapshot does not load: %v", err)
		}
		var again bytes.Buffer
		if err := z.Save(&again); err != nil || !bytes.Equal(again.Bytes(), out.Bytes()) {
			t.Fatalf("re-saving a re-saved snapshot changed it (%v)", err)
		}
	})
}

// BenchmarkSearch times each mode on 200,000 random codes (-n 1000000 via
// BENCH_N is the size) and reports it against baselines taken in the
// same run: "mem-ratio" is the full scan's read rate over a plain sum of
// the same number of bytes (1 means memory-bound), "vs-full" is a mode's
// time over the full scan's.
func BenchmarkSearch(b *testing.B) {
	n := 200000
	if v, err := strconv.Atoi(os.Getenv("BENCH_N")); err == nil && v > 0 {
		n = v
	}
	x := NewCPU(CPUConfig{})
	s := splitmix64(13)
	for i := range n {
		x.Upsert(fmt.Sprint(i), Meta{}, randCode(&s))
	}
	v := randVector(&s)
	mem := make([]uint64, n*words)
	for i := range mem {
		mem[i] = uint64(i)
	}
	var memNs, fullNs float64
	perOp := func(b *testing.B) float64 { return float64(b.Elapsed().Nanoseconds()) / float64(b.N) }
	b.Run("memsum", func(b *testing.B) {
		b.SetBytes(int64(n * words * 8))
		for b.Loop() {
			sumWords(mem)
		}
		memNs = perOp(b)
	})
	for _, mode := range []Mode{ModeFull, ModeFullRerank, ModePrefix, ModePrefixRerank} {
		b.Run(mode.String(), func(b *testing.B) {
			if _, err := x.Search(context.Background(), Query{Vector: v, Mode: mode}); err != nil {
				b.Fatal(err)
			}
			if !mode.prefix() {
				b.SetBytes(int64(n * words * 8))
			}
			b.ReportAllocs()
			for b.Loop() {
				x.Search(context.Background(), Query{Vector: v, Mode: mode})
			}
			ns := perOp(b)
			if mode == ModeFull {
				fullNs = ns
				if memNs > 0 {
					b.ReportMetric(memNs/ns, "mem-ratio")
				}
			} else if fullNs > 0 {
				b.ReportMetric(ns/fullNs, "vs-full")
			}
		})
	}
}

// sumWords reads b with both cores, as the scan does.
func sumWords(b []uint64) uint64 {
	var wg sync.WaitGroup
	var sums [2]uint64
	h := len(b) / 2
	for i, part := range [][]uint64{b[:h], b[h:]} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var a0, a1, a2, a3 uint64
			for ; len(part) >= 4; part = part[4:] {
				a0 += part[0]
				a1 += part[1]
				a2 += part[2]
				a3 += part[3]
			}
			sums[i] = a0 + a1 + a2 + a3
		}()
	}
	wg.Wait()
	return sums[0] + sums[1]
}

// genericKernel is the unspecialised assembly loop the specialised kernels
// replace, where the platform has one.
var genericKernel func(q, codes []uint64, n, w int, out []uint16)

func BenchmarkHamming(b *testing.B) {
	s := splitmix64(14)
	const n = 4096
	codes := make([]uint64, n*words)
	for i := range codes {
		codes[i] = s.next()
	}
	q := codes[:words]
	out := make([]uint16, n)
	for _, w := range []int{8, words} {
		b.Run(fmt.Sprintf("words=%d/kernel", w), func(b *testing.B) {
			b.SetBytes(int64(n * w * 8))
			for b.Loop() {
				hamming(q, codes, n, w, out)
			}
		})
		if genericKernel != nil {
			b.Run(fmt.Sprintf("words=%d/generic", w), func(b *testing.B) {
				b.SetBytes(int64(n * w * 8))
				for b.Loop() {
					genericKernel(q, codes, n, w, out)
				}
			})
		}
		b.Run(fmt.Sprintf("words=%d/go", w), func(b *testing.B) {
			b.SetBytes(int64(n * w * 8))
			for b.Loop() {
				hammingGo(q, codes, n, w, out)
			}
		})
	}
}

// BenchmarkSnapshot times Save and Load of 200,000 experience records
// (BENCH_N to change it) through memory, so that the figures are the
// codec's own: a load should cost little more than reading the bytes.
//
//	go test -run xxx -bench Snapshot ./gpuidx
func BenchmarkSnapshot(b *testing.B) {
	n := 200_000
	if v, err := strconv.Atoi(os.Getenv("BENCH_N")); err == nil && v > 0 {
		n = v
	}
	x := NewCPU(CPUConfig{})
	x.Reserve(n)
	s := splitmix64(31)
	for i := range n {
		id := fmt.Sprintf("%016x%016x%016x%016x", s.next(), s.next(), s.next(), s.next())
		x.Upsert(id, Meta{Domain: fmt.Sprint("code.", i%50), Confidence: 0.8}, randCode(&s))
	}
	var buf bytes.Buffer
	if err := x.Save(&buf); err != nil {
		b.Fatal(err)
	}
	snap := buf.Bytes()
	b.Run("save", func(b *testing.B) {
		b.SetBytes(int64(len(snap)))
		for b.Loop() {
			buf.Reset()
			if err := x.Save(&buf); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("load", func(b *testing.B) {
		b.SetBytes(int64(len(snap)))
		for b.Loop() {
			y, err := Load(bytes.NewReader(snap), CPUConfig{})
			if err != nil || y.Len() != n {
				b.Fatalf("%d records, %v", y.Len(), err)
			}
		}
	})
	// The floor: the snapshot's bytes, copied and checksummed.
	b.Run("read", func(b *testing.B) {
		b.SetBytes(int64(len(snap)))
		dst := make([]byte, len(snap))
		for b.Loop() {
			copy(dst, snap)
			_ = crc32.ChecksumIEEE(dst)
		}
	})
}
