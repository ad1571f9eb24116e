package gpuidx

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"slices"
	"testing"
)

// TestCollectorMatchesSort checks the histogram selection against a sort by
// (distance, slot), with many ties, filters and several workers.
func TestCollectorMatchesSort(t *testing.T) {
	s := splitmix64(21)
	const n = 5000
	flags := make([]uint8, n)
	conf := make([]float32, n)
	dom := make([]uint32, n)
	for i := range n {
		if s.next()%7 == 0 {
			flags[i] = flagRetired
		}
	}
	f := newFilter(nil, 0, conf, flags, dom)
	for _, spread := range []int{1, 3, 20, 600} {
		dist := make([]uint16, n)
		for i := range dist {
			dist[i] = uint16(s.next() % uint64(spread))
		}
		var ref []cand
		for i, d := range dist {
			if f.ok(i) {
				ref = append(ref, cand{d, int32(i)})
			}
		}
		slices.SortFunc(ref, cmpCand)
		for _, k := range []int{1, 2, 10, 300, 4000, 6000} {
			for _, workers := range []int{1, 3} {
				cs := make([]collector, workers)
				per := (n + workers - 1) / workers
				for w := range cs {
					cs[w].reset(k, 640)
					for b := w * per; b < min(n, (w+1)*per); b += 100 {
						m := min(100, (w+1)*per-b, n-b)
						cs[w].add(dist[b:b+m], b, f)
					}
				}
				got := best(nil, cs, k, make([]uint32, 641))
				if !slices.IsSortedFunc(got, func(a, b cand) int { return int(a.slot - b.slot) }) {
					t.Fatalf("spread %d k %d: not in slot order", spread, k)
				}
				slices.SortFunc(got, cmpCand)
				want := ref[:min(k, len(ref))]
				if !slices.Equal(got, want) {
					t.Fatalf("spread %d k %d workers %d: got %d records, want %d; first diff at %d", spread, k, workers, len(got), len(want), firstDiff(got, want))
				}
			}
		}
	}
}

func firstDiff(a, b []cand) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// referenceSearch is the prefix-first search spelled out: the best c
// records by (prefix distance, slot) passing the filters, then the best k of
// those by (full distance, slot).
func referenceSearch(x *CPU, q *[words]uint64, c, k int, keep func(i int) bool) []Hit {
	p := x.cfg.PrefixWords
	var pre []cand
	for i := range x.n {
		if !keep(i) {
			continue
		}
		var d [1]uint16
		hammingGo(q[:p], x.codes.row(i)[:p], 1, p, d[:])
		pre = append(pre, cand{d[0], int32(i)})
	}
	slices.SortFunc(pre, cmpCand)
	pre = pre[:min(c, len(pre))]
	for i := range pre {
		var d [1]uint16
		s := int(pre[i].slot)
		hammingGo(q[:], x.codes.row(s), 1, words, d[:])
		pre[i].dist = d[0]
	}
	slices.SortFunc(pre, cmpCand)
	pre = pre[:min(k, len(pre))]
	hits := make([]Hit, len(pre))
	for i, b := range pre {
		hits[i] = Hit{ID: x.idAt(int(b.slot)), Distance: int(b.dist)}
	}
	return hits
}

func TestPrefixMatchesReference(t *testing.T) {
	for _, pw := range []int{4, 8, 12} {
		x := NewCPU(CPUConfig{PrefixWords: pw, Workers: 2})
		recs := fill(t, x, 6000, 22)
		// Delete some records so that slots move.
		i := 0
		for id := range recs {
			if i%9 == 0 {
				x.Delete(id)
				delete(recs, id)
			}
			i++
		}
		s := splitmix64(23)
		for _, tt := range []struct {
			domain string
			conf   float32
			c, k   int
		}{{"", 0, 100, 10}, {"", 0, 30, 30}, {"code", 0.3, 200, 15}, {"math", 0, 50, 5}, {"", 0.95, 40, 10}, {"", 0, 7000, 20}} {
			q := randCode(&s)
			got, err := x.Search(context.Background(), Query{Code: &q, K: tt.k, Mode: ModePrefix, Candidates: tt.c, Domain: tt.domain, MinConfidence: tt.conf})
			if err != nil {
				t.Fatal(err)
			}
			want := referenceSearch(x, &q.Bits, tt.c, tt.k, func(i int) bool {
				return x.flags[i]&flagRetired == 0 && x.conf[i] >= tt.conf && DomainMatch(tt.domain, x.domains[x.dom[i]])
			})
			if !slices.Equal(got, fixScores(want, got)) {
				t.Fatalf("prefix %d %+v:\n got %v\nwant %v", pw, tt, got, want)
			}
		}
	}
}

// fixScores copies the scores of got into want where the IDs agree, so that
// the comparison is of IDs and distances.
func fixScores(want, got []Hit) []Hit {
	out := slices.Clone(want)
	for i := range out {
		if i < len(got) && got[i].ID == out[i].ID {
			out[i].Score = got[i].Score
		}
	}
	return out
}

// checkPrefix verifies that the prefix array mirrors the leading words of
// every code.
func checkPrefix(t *testing.T, x *CPU) {
	t.Helper()
	p := x.cfg.PrefixWords
	if x.prefix.capacity() < x.n || x.codes.capacity() < x.n {
		t.Fatalf("room for %d prefixes, %d codes for %d records", x.prefix.capacity(), x.codes.capacity(), x.n)
	}
	for i := range x.n {
		if !slices.Equal(x.prefix.row(i), x.codes.row(i)[:p]) {
			t.Fatalf("record %d (%s): prefix out of sync", i, x.idAt(i))
		}
	}
}

func TestPrefixArrayInSync(t *testing.T) {
	for _, pw := range []int{0, 4, 60} {
		x := NewCPU(CPUConfig{PrefixWords: pw})
		s := splitmix64(24)
		var ids []string
		for i := range 500 {
			id := fmt.Sprint("r", i)
			ids = append(ids, id)
			x.Upsert(id, Meta{}, randCode(&s))
		}
		checkPrefix(t, x)
		for i := range 300 {
			id := ids[s.next()%uint64(len(ids))]
			switch i % 3 {
			case 0:
				x.Delete(id)
			default:
				x.Upsert(id, Meta{Confidence: 0.5}, randCode(&s)) // replace or re-add
			}
		}
		checkPrefix(t, x)
		var buf bytes.Buffer
		if err := x.Save(&buf); err != nil {
			t.Fatal(err)
		}
		y, err := Load(&buf, CPUConfig{PrefixWords: pw})
		if err != nil {
			t.Fatal(err)
		}
		checkPrefix(t, y)
		// Deleting everything leaves empty, consistent storage.
		for _, id := range ids {
			y.Delete(id)
		}
		checkPrefix(t, y)
		if y.Len() != 0 {
			t.Fatalf("Len = %d after deleting all", y.Len())
		}
	}
}

func TestNegativeConfidence(t *testing.T) {
	x := NewCPU(CPUConfig{})
	s := splitmix64(25)
	c := randCode(&s)
	x.Upsert("neg", Meta{Confidence: -1}, c)
	x.Upsert("nan", Meta{Confidence: float32(math.NaN())}, c)
	x.Upsert("zero", Meta{}, c)
	for _, tt := range []struct {
		min  float32
		want []string
	}{{0, []string{"nan", "zero"}}, {-2, []string{"nan", "neg", "zero"}}, {0.5, []string{"nan"}}} {
		for _, mode := range []Mode{ModeFull, ModePrefix} {
			hits, err := x.Search(context.Background(), Query{Code: &c, Mode: mode, MinConfidence: tt.min})
			if err != nil {
				t.Fatal(err)
			}
			var ids []string
			for _, h := range hits {
				ids = append(ids, h.ID)
			}
			slices.Sort(ids)
			if !slices.Equal(ids, tt.want) {
				t.Fatalf("%v MinConfidence %v: %v; want %v", mode, tt.min, ids, tt.want)
			}
		}
	}
	// Upsert updates the flags.
	x.Upsert("neg", Meta{Confidence: 1}, c)
	x.Upsert("zero", Meta{Retired: true}, c)
	hits, _ := x.Search(context.Background(), Query{Code: &c, Mode: ModePrefix})
	if len(hits) != 2 || hits[0].ID != "neg" && hits[1].ID != "neg" {
		t.Fatalf("after update: %v", hits)
	}
}
