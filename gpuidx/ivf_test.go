package gpuidx

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/dso-proxy/dso/compress"
)

// checkLists fails t unless every record is in exactly one list, the one
// of its nearest centroid, with its prefix copied beside it.
func checkLists(t *testing.T, x *CPU) {
	t.Helper()
	x.mu.RLock()
	defer x.mu.RUnlock()
	ls := x.ls
	if ls == nil {
		t.Fatal("no lists")
	}
	if len(ls.of) != x.n || len(ls.at) != x.n {
		t.Fatalf("lists index %d and %d slots, the index holds %d", len(ls.of), len(ls.at), x.n)
	}
	seen := make([]bool, x.n)
	d := make([]uint16, ls.count())
	total := 0
	for c := range ls.slots {
		if len(ls.pre[c]) != len(ls.slots[c])*ls.pw {
			t.Fatalf("list %d: %d slots, %d prefix words", c, len(ls.slots[c]), len(ls.pre[c]))
		}
		for j, s := range ls.slots[c] {
			total++
			if seen[s] {
				t.Fatalf("slot %d in two lists", s)
			}
			seen[s] = true
			if ls.of[s] != uint32(c) || ls.at[s] != uint32(j) {
				t.Fatalf("slot %d at list %d place %d, its entries say %d, %d", s, c, j, ls.of[s], ls.at[s])
			}
			if !slices.Equal(ls.pre[c][j*ls.pw:(j+1)*ls.pw], x.prefix.row(int(s))) {
				t.Fatalf("slot %d: the list's prefix copy differs from the record's", s)
			}
			p := x.prefix.row(int(s))
			if n := ls.nearest(p, d); d[n] != d[c] {
				t.Fatalf("slot %d in list %d at %d; list %d is nearer at %d", s, c, d[c], n, d[n])
			}
		}
	}
	if total != x.n {
		t.Fatalf("lists hold %d records, the index %d", total, x.n)
	}
}

// clustered fills x with n records around 64 centres, as real embeddings
// cluster by topic, and returns queries near the centres and near records.
func clustered(t *testing.T, x *CPU, n int, seed uint64) []Query {
	t.Helper()
	s := splitmix64(seed)
	var centres []compress.Code
	for range 64 {
		centres = append(centres, randCode(&s))
	}
	var qs []Query
	for i := range n {
		c := near(&s, centres[s.next()%uint64(len(centres))], 12)
		if err := x.Upsert(fmt.Sprintf("r%06d", i), Meta{Domain: gpuDomains[i%len(gpuDomains)], Confidence: 1}, c); err != nil {
			t.Fatal(err)
		}
		if i%(n/50) == 0 {
			a, b := near(&s, c, 4), near(&s, centres[s.next()%uint64(len(centres))], 12)
			qs = append(qs, Query{Code: &a, K: 10, Mode: ModePrefix}, Query{Code: &b, K: 10, Mode: ModePrefix})
		}
	}
	return qs
}

// recall is the share of the exhaustive search's ids that the served search
// finds, over qs.
func recall(t *testing.T, x *CPU, qs []Query) float64 {
	t.Helper()
	found, want := 0, 0
	for _, q := range qs {
		got, err := x.Search(context.Background(), q)
		if err != nil {
			t.Fatal(err)
		}
		q.Exhaustive = true
		exact, err := x.Search(context.Background(), q)
		if err != nil {
			t.Fatal(err)
		}
		want += len(exact)
		for _, h := range exact {
			if slices.ContainsFunc(got, func(g Hit) bool { return g.ID == h.ID }) {
				found++
			}
		}
	}
	return float64(found) / float64(want)
}

func TestListsFindWhatTheScanFinds(t *testing.T) {
	x := NewCPU(CPUConfig{ListsFrom: -1})
	qs := clustered(t, x, 20000, 1)
	x.trainLists()
	checkLists(t, x)
	if got := x.ls.count(); got != listCount(20000) {
		t.Fatalf("%d lists, want %d", got, listCount(20000))
	}
	if r := recall(t, x, qs); r < 0.95 {
		t.Fatalf("recall@10 of the lists against the scan %.3f, want at least 0.95", r)
	}
	// Probing one list, every hit comes from the list nearest the query
	// when it holds K records.
	x.cfg.Probe = 1
	d := make([]uint16, x.ls.count())
	for _, q := range qs {
		hits, err := x.Search(context.Background(), q)
		if err != nil {
			t.Fatal(err)
		}
		c := x.ls.nearest(q.Code.Bits[:x.cfg.PrefixWords], d)
		if len(x.ls.slots[c]) < q.K {
			continue // too few there: the scan answers
		}
		for _, h := range hits {
			if s, _ := x.slotOf(h.ID); x.ls.of[s] != c {
				t.Fatalf("probing list %d, hit %s from list %d", c, h.ID, x.ls.of[s])
			}
		}
	}
}

func TestListsFollowWrites(t *testing.T) {
	x := NewCPU(CPUConfig{ListsFrom: -1})
	recs := fill(t, x, 6000, 2)
	x.trainLists()
	ids := make([]string, 0, len(recs))
	for id := range recs {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	s := splitmix64(3)
	for i := range 3000 {
		id := ids[s.next()%uint64(len(ids))]
		switch i % 4 {
		case 0:
			x.Delete(id)
		case 1: // a new code
			if err := x.Upsert(id, Meta{Domain: "math"}, randCode(&s)); err != nil {
				t.Fatal(err)
			}
		case 2: // the same code, new metadata
			if _, c, ok := x.Get(id); ok {
				if err := x.Upsert(id, Meta{Domain: "law", Confidence: 0.5}, c); err != nil {
					t.Fatal(err)
				}
			}
		case 3:
			if err := x.Upsert(fmt.Sprintf("new%d", i), Meta{}, randCode(&s)); err != nil {
				t.Fatal(err)
			}
		}
	}
	checkLists(t, x)

	// A domain too rare for the probed lists falls back to the scan.
	for i := range 5 {
		if err := x.Upsert(fmt.Sprintf("rare%d", i), Meta{Domain: "rare", Confidence: 1}, randCode(&s)); err != nil {
			t.Fatal(err)
		}
	}
	q := Query{Vector: randVector(&s), K: 10, Domain: "rare"}
	got, err := x.Search(context.Background(), q)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 5 {
		t.Fatalf("%d hits in a domain of 5 records", len(got))
	}
}

func TestListsTrainedWhileWriting(t *testing.T) {
	x := NewCPU(CPUConfig{ListsFrom: -1})
	fill(t, x, 20000, 4)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		s := splitmix64(5)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			id := fmt.Sprintf("w%d", s.next()%5000)
			if i%3 == 0 {
				x.Delete(id)
			} else if err := x.Upsert(id, Meta{}, randCode(&s)); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	x.trainLists()
	close(stop)
	wg.Wait()
	checkLists(t, x)
}

func TestListsTrainInTheBackground(t *testing.T) {
	x := NewCPU(CPUConfig{ListsFrom: 3000})
	fill(t, x, 4000, 6)
	x.trainWG.Wait()
	checkLists(t, x)
	if x.ls.built < 3000 || x.nextTrain != 2*x.ls.built {
		t.Fatalf("lists built at %d, next training at %d", x.ls.built, x.nextTrain)
	}
	if got := x.Bytes(); got < int64(x.n)*int64(8*x.cfg.PrefixWords+4) {
		t.Fatalf("Bytes %d does not count the lists' prefix copies", got)
	}
}

func TestTrainSeparatesClusters(t *testing.T) {
	// Two clusters of prefixes far apart: each of two centroids lies
	// within a few bits of one cluster's centre.
	s := splitmix64(7)
	a, b := randCode(&s), randCode(&s)
	const pw, m = 8, 400
	sample := make([]uint64, m*pw)
	for i := range m {
		c := a
		if i%2 == 1 {
			c = b
		}
		c = near(&s, c, 2)
		copy(sample[i*pw:], c.Bits[:pw])
	}
	cents := train(sample, m, pw, 2, 1)
	d := make([]uint16, 2)
	hammingGo(a.Bits[:pw], cents, 2, pw, d)
	da := min(d[0], d[1])
	hammingGo(b.Bits[:pw], cents, 2, pw, d)
	db := min(d[0], d[1])
	if da > 40 || db > 40 {
		t.Fatalf("the nearest centroid is %d bits from one cluster's centre and %d from the other's (of %d)", da, db, pw*64)
	}
}

func TestListsWaitForALoad(t *testing.T) {
	// A load of 4,000 announced by Reserve: no training at 3,000 on the
	// way, one on all 4,000 once they are in.
	x := NewCPU(CPUConfig{ListsFrom: 3000})
	x.Reserve(4000)
	s := splitmix64(11)
	for i := range 4000 {
		if i == 3500 && (x.training.Load() || x.Lists() != 0) {
			t.Fatal("lists trained while a load ran")
		}
		if err := x.Upsert(fmt.Sprintf("l%d", i), Meta{}, randCode(&s)); err != nil {
			t.Fatal(err)
		}
	}
	x.WaitLists()
	checkLists(t, x)
	if x.ls.built != 4000 {
		t.Fatalf("lists trained on %d records, want the 4,000 loaded", x.ls.built)
	}
}

func TestRestoreTrainsListsAnew(t *testing.T) {
	x := NewCPU(CPUConfig{ListsFrom: 3000})
	fill(t, x, 4000, 8)
	x.WaitLists()
	if x.Lists() == 0 {
		t.Fatal("no lists at 4,000 records")
	}
	y := NewCPU(CPUConfig{ListsFrom: -1})
	fill(t, y, 5000, 9)
	var b bytes.Buffer
	if err := y.Save(&b); err != nil {
		t.Fatal(err)
	}
	if err := x.Restore(&b); err != nil {
		t.Fatal(err)
	}
	if x.Lists() != 0 {
		t.Fatal("lists of the replaced records kept after Restore")
	}
	// The next search starts a training on the restored records.
	s := splitmix64(10)
	if _, err := x.Search(context.Background(), Query{Vector: randVector(&s)}); err != nil {
		t.Fatal(err)
	}
	x.WaitLists()
	checkLists(t, x)
	if x.ls.built != 5000 {
		t.Fatalf("lists trained on %d records, want the 5,000 restored", x.ls.built)
	}
}
