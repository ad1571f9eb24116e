package gpuidx

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/dso-proxy/dso/compress"
)

// The storage behind the CPU index: chunked rows, packed ids, the slot
// table.

func TestParseKey(t *testing.T) {
	hex64 := "00ff" + fmt.Sprintf("%060x", 7)
	for _, tt := range []struct {
		id     string
		packed bool
	}{
		{hex64, true},
		{"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", true},
		{"0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef", false}, // upper case would not unpack to itself
		{hex64[:63], false},
		{hex64 + "0", false},
		{"anchor:3", false},
		{"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdeg", false},
	} {
		k := parseKey(tt.id)
		if k.packed != tt.packed {
			t.Errorf("parseKey(%q).packed = %v; want %v", tt.id, k.packed, tt.packed)
		}
		x := NewCPU(CPUConfig{})
		if err := x.Upsert(tt.id, Meta{}, compress1()); err != nil {
			t.Fatal(err)
		}
		if got := x.idAt(0); got != tt.id {
			t.Errorf("id %q comes back as %q", tt.id, got)
		}
		if _, _, ok := x.Get(tt.id); !ok {
			t.Errorf("id %q not found", tt.id)
		}
	}
}

// TestManyChunks fills an index past several chunks, packed and other ids
// mixed, deletes across chunk edges, and checks lookups, storage and
// searches (full and prefix, which gathers across chunks) against brute
// force.
func TestManyChunks(t *testing.T) {
	if testing.Short() {
		t.Skip("fills 3 chunks")
	}
	x := NewCPU(CPUConfig{Workers: 2})
	n := 2*chunkRows + chunkRows/2
	recs := fill(t, x, n, 31)
	checkTable(t, x)
	checkPrefix(t, x)
	// Delete a run from the middle of chunk 1 and enough of the rest to
	// empty the last chunk: slots move across chunks.
	i := 0
	for id := range recs {
		if i%3 == 0 || i < chunkRows/2 {
			if !x.Delete(id) {
				t.Fatalf("delete %q: not found", id)
			}
			delete(recs, id)
		}
		i++
	}
	if x.Len() != len(recs) {
		t.Fatalf("Len %d; want %d", x.Len(), len(recs))
	}
	checkTable(t, x)
	checkPrefix(t, x)
	if want := (x.n+chunkMask)>>chunkShift + 1; len(x.codes.cs) > want {
		t.Fatalf("%d chunks of codes held for %d records; want at most %d", len(x.codes.cs), x.n, want)
	}
	for id, r := range recs {
		m, c, ok := x.Get(id)
		if !ok || m != r.m || c != r.c {
			t.Fatalf("Get(%q) = %v, %v; want the record stored", id, m, ok)
		}
	}
	s := splitmix64(32)
	for _, mode := range []Mode{ModeFull, ModePrefix} {
		for range 3 {
			q := randCode(&s)
			got, err := x.Search(context.Background(), Query{Code: &q, K: 10, Mode: mode, Candidates: x.Len()})
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

// TestSlotTableChurn adds and deletes in rounds, so that probe runs wrap
// and deletions move entries back, and checks every lookup after each.
func TestSlotTableChurn(t *testing.T) {
	x := NewCPU(CPUConfig{})
	s := splitmix64(41)
	live := map[string]bool{}
	for round := range 20 {
		for range 300 {
			id := fmt.Sprintf("%064x", s.next()%5000)
			if round%3 == 2 {
				id = fmt.Sprint("other", s.next()%500)
			}
			if err := x.Upsert(id, Meta{}, randCode(&s)); err != nil {
				t.Fatal(err)
			}
			live[id] = true
		}
		for id := range live {
			if s.next()%2 == 0 {
				if !x.Delete(id) {
					t.Fatalf("round %d: delete %q: not found", round, id)
				}
				delete(live, id)
			}
		}
		if x.Delete("never added") {
			t.Fatal("deleted an id never added")
		}
		checkTable(t, x)
		if x.Len() != len(live) {
			t.Fatalf("round %d: Len %d; want %d", round, x.Len(), len(live))
		}
	}
}

// TestReserve checks that a reserved index allocates its parts once, at
// their size, while filled to what was reserved, and that Bytes counts
// them.
func TestReserve(t *testing.T) {
	x := NewCPU(CPUConfig{})
	n := chunkRows + 1000
	x.Reserve(n)
	codes, table := x.codes.cs[1], x.table
	if got := x.codes.capacity(); got != n {
		t.Fatalf("room for %d codes; want %d", got, n)
	}
	s := splitmix64(51)
	for i := range n {
		if err := x.Upsert(fmt.Sprintf("%064x", i), Meta{Confidence: 1}, randCode(&s)); err != nil {
			t.Fatal(err)
		}
	}
	if &x.codes.cs[1][0] != &codes[0] || &x.table[0] != &table[0] || cap(x.scales) != n {
		t.Fatal("filling a reserved index reallocated it")
	}
	perRecord := float64(x.Bytes()) / float64(n)
	floor := float64(words*8 + x.cfg.PrefixWords*8 + idBytes + 13)
	if perRecord < floor || perRecord > floor+12 {
		t.Fatalf("Bytes: %.1f a record; want %v plus a slot table of at most 12", perRecord, floor)
	}
	// Past what was reserved, the last chunk grows; the full one stays.
	first := &x.codes.cs[0][0]
	if err := x.Upsert("one more", Meta{}, randCode(&s)); err != nil {
		t.Fatal(err)
	}
	if &x.codes.cs[0][0] != first {
		t.Fatal("growing moved a full chunk")
	}
	checkTable(t, x)
}

func compress1() (c compress.Code) {
	c.Scale = 1
	c.Bits[0] = 1
	return c
}
