package gpuidx

import (
	"context"
	"fmt"
	"math"
	"slices"
	"sync"

	"github.com/dso-proxy/dso/compress"
)

// Searching: the prefix pass (the nearest lists or a scan of every
// prefix), the full-code pass, the exact re-ranking.

// Search returns the best K records for q, best first. It honours ctx
// cancellation between blocks of the scan.
func (x *CPU) Search(ctx context.Context, q Query) ([]Hit, error) {
	if q.K == 0 {
		q.K = 10
	}
	if q.K < 0 || q.Candidates < 0 || q.Rerank < 0 || q.Probe < 0 {
		return nil, fmt.Errorf("gpuidx: search k=%d: %w", q.K, ErrQuery)
	}
	if q.Mode > ModePrefix {
		return nil, fmt.Errorf("gpuidx: search mode %v: %w", q.Mode, ErrQuery)
	}
	if q.Vector != nil && len(q.Vector) != compress.Dim || q.Vector == nil && (q.Code == nil || q.Mode.rerank()) {
		return nil, fmt.Errorf("gpuidx: search with a %d-component vector in mode %v: %w", len(q.Vector), q.Mode, ErrQuery)
	}
	qc := q.Code
	if qc == nil {
		c, err := compress.Encode(q.Vector)
		if err != nil {
			return nil, fmt.Errorf("gpuidx: search: %w", err)
		}
		qc = &c
	}

	x.mu.RLock()
	defer x.mu.RUnlock()
	n := x.n
	var allowed []bool
	if q.Domain != "" {
		allowed = make([]bool, len(x.domains))
		for i, d := range x.domains {
			allowed[i] = DomainMatch(q.Domain, d)
		}
	}
	f := newFilter(allowed, q.MinConfidence, x.conf, x.flags, x.dom)
	keep := q.K
	if q.Mode.rerank() {
		keep = max(q.Rerank, x.cfg.Rerank, q.K)
		if q.Rerank > 0 {
			keep = max(q.Rerank, q.K)
		}
	}

	sc := scratchPool.Get().(*scratch)
	defer scratchPool.Put(sc)
	var top []cand
	if q.Mode.prefix() {
		c := q.Candidates
		if c == 0 {
			c = x.cfg.Candidates
		}
		given := c > 0
		if c == 0 {
			c = 1024 + n/256
		}
		c = max(c, keep)
		p := x.cfg.PrefixWords
		pre, err := x.candidates(ctx, q, qc.Bits[:p], c, keep, given, f, sc)
		if err != nil {
			return nil, err
		}
		sc.cands = pre
		// Full distance of each candidate.
		sc.slots, sc.dists = sc.slots[:0], sc.dists[:0]
		for _, cd := range pre {
			sc.slots = append(sc.slots, cd.slot)
		}
		sc.dists = slices.Grow(sc.dists, len(pre))[:len(pre)]
		sc.rel = slices.Grow(sc.rel[:0], len(pre))[:len(pre)]
		x.gather(&qc.Bits, sc.slots, sc.dists, sc.rel)
		// The candidates are in slot order, as the collector needs.
		sc.top.reset(keep, compress.Dim)
		for i, s := range sc.slots {
			sc.top.push(s, sc.dists[i])
		}
		top = best(pre[:0], []collector{sc.top}, keep, sc.top.hist)
	} else {
		var err error
		top, err = x.scan(ctx, qc.Bits[:], &x.codes, keep, f, sc, sc.cands[:0])
		if err != nil {
			return nil, err
		}
		sc.cands = top
	}
	slices.SortFunc(top, cmpCand)

	var norm float32
	if q.Mode.rerank() && len(top) > 0 {
		norm = rerankNorm(q.Vector)
		sc.dot.Reset(q.Vector)
	}
	hits := make([]Hit, len(top))
	for i, b := range top {
		s := int(b.slot)
		hits[i] = Hit{ID: x.idAt(s), Distance: int(b.dist)}
		if q.Mode.rerank() {
			hits[i].Score = norm * sc.dot.Dot(x.codes.row(s), 1)
		} else {
			hits[i].Score = float32(math.Cos(math.Pi * float64(b.dist) / compress.Dim))
		}
	}
	return finishHits(hits, q), nil
}

// candidates returns the best c records for the prefix q (w words) that
// pass f, in slot order: from the lists nearest q where the index keeps
// lists (fewer of them unless c was given), else, or when the lists hold
// fewer than keep records that pass f, from a scan of every prefix.
func (x *CPU) candidates(ctx context.Context, q Query, qp []uint64, c, keep int, given bool, f *filter, sc *scratch) ([]cand, error) {
	if x.ls != nil && !q.Exhaustive {
		if cap(sc.ldist) < x.ls.count() {
			sc.ldist = make([]uint16, x.ls.count())
		}
		probe := q.Probe
		if probe <= 0 {
			probe = x.cfg.Probe
		}
		if cap(sc.hist) < len(qp)*64+1 {
			sc.hist = make([]uint32, len(qp)*64+1)
		}
		sc.probe = x.ls.probeLists(qp, probe, sc.ldist[:x.ls.count()], sc.hist[:len(qp)*64+1], sc.probe[:0])
		if !given {
			c = max(keep, min(c, listCandidates))
		}
		sc.top.reset(c, len(qp)*64)
		if err := x.ls.scanLists(ctx, qp, sc.probe, f, &sc.top); err != nil {
			return nil, fmt.Errorf("gpuidx: search: %w", err)
		}
		if len(sc.top.slots) >= keep {
			out := best(sc.cands[:0], []collector{sc.top}, c, sc.hist[:len(qp)*64+1])
			slices.SortFunc(out, func(a, b cand) int { return int(a.slot - b.slot) })
			return out, nil
		}
	}
	if x.listsDue() {
		x.startTraining()
	}
	return x.scan(ctx, qp, &x.prefix, c, f, sc, sc.cands[:0])
}

// gather writes to dists[i] the full distance of q to the code of slots[i],
// splitting long lists between two goroutines; rel is scratch as long as
// slots.
func (x *CPU) gather(q *[words]uint64, slots []int32, dists []uint16, rel []int32) {
	if x.cfg.Workers < 2 || len(slots) < 8192 {
		x.gatherChunks(q, slots, dists, rel)
		return
	}
	h := len(slots) / 2
	done := make(chan struct{})
	go func() {
		x.gatherChunks(q, slots[h:], dists[h:], rel[h:])
		close(done)
	}()
	x.gatherChunks(q, slots[:h], dists[:h], rel[:h])
	<-done
}

// gatherChunks is gather for one goroutine: each run of slots in one chunk
// of codes (slots come in slot order) is gathered from that chunk, by
// their slots in it, written to rel.
func (x *CPU) gatherChunks(q *[words]uint64, slots []int32, dists []uint16, rel []int32) {
	for i := 0; i < len(slots); {
		k := int(slots[i]) >> chunkShift
		j := i
		for ; j < len(slots) && int(slots[j])>>chunkShift == k; j++ {
			rel[j] = slots[j] & chunkMask
		}
		hammingGather(q[:], x.codes.chunk(k), rel[i:j], dists[i:j])
		i = j
	}
}

// rerankNorm turns q·sign(code) into a cosine estimate: for a code of a
// vector at angle θ to q, E[q·sign(v)] = ‖q‖·√Dim·√(2/π)·cos θ when the
// lifted components are Gaussian-like.
func rerankNorm(q []float32) float32 {
	var s float64
	for _, f := range q {
		s += float64(f) * float64(f)
	}
	if s == 0 {
		return 0
	}
	return float32(math.Sqrt(math.Pi/2) / (math.Sqrt(s) * math.Sqrt(compress.Dim)))
}

// scratch holds a search's reusable buffers.
type scratch struct {
	cols  []collector
	errs  []error
	hist  []uint32
	slots []int32
	rel   []int32 // slots within their chunk
	dists []uint16
	cands []cand
	top   collector
	dot   compress.DotTable // the query's, for re-ranking
	ldist []uint16          // the query's distance to each list
	probe []int32           // the lists it reads
}

var scratchPool = sync.Pool{New: func() any { return new(scratch) }}

const block = 512

// perWorker is the fewest records a scan hands to a worker of its own.
const perWorker = 256 << 10

// scan computes the distance of q (w words) to every record's w-word row of
// rs using all workers, and appends to out the best k records passing f
// by (distance, slot), in slot order.
func (x *CPU) scan(ctx context.Context, q []uint64, rs *rows[uint64], k int, f *filter, sc *scratch, out []cand) ([]cand, error) {
	n := x.n
	w := rs.w
	// A worker per perWorker records at most: below that, handing half a
	// scan to another goroutine costs more CPU (waking it, its cache
	// misses) than it saves in time, measured through HTTP at 100,000.
	workers := max(1, min(x.cfg.Workers, n/perWorker))
	per := (n + workers - 1) / workers
	per = (per + block - 1) / block * block
	if len(sc.cols) < workers {
		sc.cols = make([]collector, workers)
		sc.errs = make([]error, workers)
	}
	cols, errs := sc.cols[:workers], sc.errs[:workers]
	maxDist := w * 64
	var wg sync.WaitGroup
	for wi := range workers {
		lo, hi := wi*per, min((wi+1)*per, n)
		cols[wi].reset(k, maxDist)
		errs[wi] = nil
		if lo >= hi {
			continue
		}
		if wi == workers-1 { // the last range runs here
			errs[wi] = scanRange(ctx, q, rs, lo, hi, f, &cols[wi])
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[wi] = scanRange(ctx, q, rs, lo, hi, f, &cols[wi])
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, fmt.Errorf("gpuidx: search: %w", err)
		}
	}
	if cap(sc.hist) < maxDist+1 {
		sc.hist = make([]uint32, maxDist+1)
	}
	return best(out, cols, k, sc.hist[:maxDist+1]), nil
}

// scanRange scans records lo to hi-1 of rs; lo is a multiple of block, so
// no block spans two chunks.
func scanRange(ctx context.Context, q []uint64, rs *rows[uint64], lo, hi int, f *filter, c *collector) error {
	var dist [block]uint16
	var below [block / 8]uint8
	w := rs.w
	for b := lo; b < hi; b += block {
		if err := ctx.Err(); err != nil {
			return err
		}
		m := min(block, hi-b)
		rows := rs.span(b, m)
		if hammingBelow(q, rows, m, w, c.limit, dist[:m], below[:m/8]) {
			c.addBelow(dist[:m], below[:m/8], b, f)
			continue
		}
		hamming(q, rows, m, w, dist[:m])
		c.add(dist[:m], b, f)
	}
	return nil
}

// finishHits orders re-ranked hits by score (stable, so equal scores keep
// their Hamming order) and keeps the best q.K. Both backends end with it,
// which keeps their results identical.
func finishHits(hits []Hit, q Query) []Hit {
	if q.Mode.rerank() {
		slices.SortStableFunc(hits, func(a, b Hit) int {
			switch {
			case a.Score > b.Score:
				return -1
			case a.Score < b.Score:
				return 1
			}
			return 0
		})
	}
	if len(hits) > q.K {
		hits = hits[:q.K]
	}
	return hits
}
