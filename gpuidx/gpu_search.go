package gpuidx

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync/atomic"
	"time"

	"github.com/dso-proxy/dso/compress"
)

// The GPU index's searches: batching queries, launching the kernels, and
// turning their output into hits as CPU.Search does.

// Search returns the best K records for q, best first, exactly as a CPU
// index holding the same records would. Concurrent Searches share launches
// (GPUConfig.MaxBatch, BatchWait). ctx bounds the wait for the result; a
// launch under way is not interrupted.
func (g *GPU) Search(ctx context.Context, q Query) ([]Hit, error) {
	if err := checkQuery(&q); err != nil {
		return nil, err
	}
	r := &gpuRequest{ctx: ctx, q: q, done: make(chan gpuResult, 1)}
	select {
	case g.reqs <- r:
	case <-ctx.Done():
		return nil, fmt.Errorf("gpuidx: search: %w", ctx.Err())
	case <-g.quit:
		return nil, ErrClosed
	}
	select {
	case res := <-r.done:
		return res.hits, res.err
	case <-ctx.Done():
		return nil, fmt.Errorf("gpuidx: search: %w", ctx.Err())
	case <-g.done: // closed with r still queued
		select {
		case res := <-r.done:
			return res.hits, res.err
		default:
			return nil, ErrClosed
		}
	}
}

// SearchBatch runs qs in as few launches as MaxBatch allows and returns
// their hits in order.
func (g *GPU) SearchBatch(ctx context.Context, qs []Query) ([][]Hit, error) {
	qs = slices.Clone(qs)
	for i := range qs {
		if err := checkQuery(&qs[i]); err != nil {
			return nil, fmt.Errorf("query %d: %w", i, err)
		}
	}
	out := make([][]Hit, 0, len(qs))
	for len(qs) > 0 {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("gpuidx: search: %w", err)
		}
		m := min(len(qs), g.cfg.MaxBatch)
		hits, err := g.run(qs[:m])
		if err != nil {
			return nil, err
		}
		out = append(out, hits...)
		qs = qs[m:]
	}
	return out, nil
}

// loop gathers queued searches into launches.
func (g *GPU) loop() {
	defer close(g.done)
	var batch []*gpuRequest
	var qs []Query
	for {
		batch = batch[:0]
		select {
		case r := <-g.reqs:
			batch = append(batch, r)
		case <-g.quit:
			return
		}
		if g.cfg.BatchWait > 0 {
			t := time.NewTimer(g.cfg.BatchWait)
		wait:
			for len(batch) < g.cfg.MaxBatch {
				select {
				case r := <-g.reqs:
					batch = append(batch, r)
				case <-t.C:
					break wait
				}
			}
			t.Stop()
		}
	drain:
		for len(batch) < g.cfg.MaxBatch {
			select {
			case r := <-g.reqs:
				batch = append(batch, r)
			default:
				break drain
			}
		}
		live := batch[:0]
		qs = qs[:0]
		for _, r := range batch {
			if err := r.ctx.Err(); err != nil {
				r.done <- gpuResult{err: fmt.Errorf("gpuidx: search: %w", err)}
				continue
			}
			live = append(live, r)
			qs = append(qs, r.q)
		}
		if len(live) == 0 {
			continue
		}
		hits, err := g.run(qs)
		for i, r := range live {
			if err != nil {
				r.done <- gpuResult{err: err}
			} else {
				r.done <- gpuResult{hits: hits[i]}
			}
		}
	}
}

// checkQuery validates q as CPU.Search does and fills in its code and K.
func checkQuery(q *Query) error {
	if q.K == 0 {
		q.K = 10
	}
	if q.K < 0 || q.Candidates < 0 || q.Rerank < 0 {
		return fmt.Errorf("gpuidx: search k=%d: %w", q.K, ErrQuery)
	}
	if q.Mode > ModePrefix {
		return fmt.Errorf("gpuidx: search mode %v: %w", q.Mode, ErrQuery)
	}
	if q.Vector != nil && len(q.Vector) != compress.Dim || q.Vector == nil && (q.Code == nil || q.Mode.rerank()) {
		return fmt.Errorf("gpuidx: search with a %d-component vector in mode %v: %w", len(q.Vector), q.Mode, ErrQuery)
	}
	if q.Code == nil {
		c, err := compress.Encode(q.Vector)
		if err != nil {
			return fmt.Errorf("gpuidx: search: %w", err)
		}
		q.Code = &c
	}
	return nil
}

// histCut returns the smallest distance t at which hist holds k records up
// to and including t, how many records lie below t, and whether hist holds
// k records.
func histCut(hist []uint32, k int) (t, below int, ok bool) {
	sum := 0
	for d, h := range hist {
		if sum+int(h) >= k {
			return d, sum, true
		}
		sum += int(h)
	}
	last := len(hist) - 1
	return last, sum - int(hist[last]), false
}

// tieSlack is how many surplus records at the cut-off distance a query may
// compact before the ties pass bounds them by slot.
const tieSlack = 4096

// tiePasses counts the launches of the ties pass, for tests.
var tiePasses atomic.Int64

// run searches qs (at most MaxBatch, checked) in one launch of each kernel.
func (g *GPU) run(qs []Query) ([][]Hit, error) {
	g.launchMu.Lock()
	defer g.launchMu.Unlock()
	g.mu.RLock()
	defer g.mu.RUnlock()
	if g.closed {
		return nil, ErrClosed
	}
	out := make([][]Hit, len(qs))
	n := g.host.n
	if n == 0 {
		for i := range out {
			out[i] = []Hit{}
		}
		return out, nil
	}
	hits, err := g.launch(qs, n)
	if err != nil {
		return nil, fmt.Errorf("gpuidx: gpu search: %w", err)
	}
	return hits, nil
}

func grown[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n, n+n/4)
	}
	return s[:n]
}

func (g *GPU) launch(qs []Query, n int) ([][]Hit, error) {
	d, s := g.dev, &g.s
	B := len(qs)
	p := g.cfg.PrefixWords
	nd := len(g.host.domains)
	mw := (nd + 31) / 32

	// Per-query parameters.
	s.hqcodes = grown(s.hqcodes, B*words)
	s.hqp = grown(s.hqp, 4*B)
	s.hmasks = s.hmasks[:0]
	s.needs = grown(s.needs, B)
	keeps := make([]int, B)
	anyRerank := false
	for b, q := range qs {
		copy(s.hqcodes[b*words:], q.Code.Bits[:])
		keep := q.K
		if q.Mode.rerank() {
			anyRerank = true
			keep = max(q.Rerank, g.cfg.Rerank, q.K)
			if q.Rerank > 0 {
				keep = max(q.Rerank, q.K)
			}
		}
		keeps[b] = keep
		s.needs[b] = keep
		nw := words
		if q.Mode.prefix() {
			c := q.Candidates
			if c == 0 {
				c = g.cfg.Candidates
			}
			if c == 0 {
				c = 1024 + n/256
			}
			s.needs[b] = max(c, keep)
			nw = p
		}
		usep := int32(0)
		if q.Mode.prefix() {
			usep = 1
		}
		mo := int32(-1)
		if q.Domain != "" {
			mo = int32(len(s.hmasks))
			for w := range mw {
				var m uint32
				for j := w * 32; j < min(nd, w*32+32); j++ {
					if DomainMatch(q.Domain, g.host.domains[j]) {
						m |= 1 << (j - w*32)
					}
				}
				s.hmasks = append(s.hmasks, int32(m))
			}
		}
		s.hqp[4*b], s.hqp[4*b+1], s.hqp[4*b+2], s.hqp[4*b+3] = usep, int32(nw), int32(math.Float32bits(q.MinConfidence)), mo
	}
	if len(s.hmasks) == 0 {
		s.hmasks = append(s.hmasks, 0)
	}
	for _, e := range []struct {
		b    *buffer
		size uintptr
	}{{&s.qcodes, uintptr(g.cfg.MaxBatch) * words * 8}, {&s.qp, uintptr(g.cfg.MaxBatch) * 16}, {&s.masks, uintptr(len(s.hmasks)) * 4},
		{&s.hist, uintptr(g.cfg.MaxBatch) * histStride * 4}, {&s.thr, uintptr(g.cfg.MaxBatch) * 4}, {&s.slim, uintptr(g.cfg.MaxBatch) * 4},
		{&s.off, uintptr(g.cfg.MaxBatch) * 4}, {&s.lim, uintptr(g.cfg.MaxBatch) * 4}, {&s.cnt, uintptr(g.cfg.MaxBatch) * 4}} {
		if err := d.ensure(e.b, e.size); err != nil {
			return nil, err
		}
	}
	if err := errors.Join(write(d, s.qcodes, 0, s.hqcodes), write(d, s.qp, 0, s.hqp), write(d, s.masks, 0, s.hmasks),
		d.zero(s.hist, uintptr(B)*histStride*4)); err != nil {
		return nil, err
	}

	// Pass 1: distances, filters and histograms.
	if err := d.setArgs(g.kScan, g.codes, g.prefix, int32(p), g.conf, g.flags, g.domBuf, s.masks, s.qcodes, s.qp,
		int32(n), int32(g.cap), g.dist, s.hist); err != nil {
		return nil, err
	}
	if err := d.launch(g.kScan, n, B, g.wg); err != nil {
		return nil, err
	}
	s.hhist = grown(s.hhist, B*histStride)
	if err := read(d, s.hist, 0, s.hhist); err != nil {
		return nil, err
	}

	// The cut-off distance of each query; bound large ties by slot.
	s.hthr, s.hslim = grown(s.hthr, B), grown(s.hslim, B)
	s.hoff, s.hlim = grown(s.hoff, B), grown(s.hlim, B)
	s.below, s.counts = grown(s.below, B), grown(s.counts, B)
	bigTies := false
	for b, q := range qs {
		maxDist := words * 64
		if q.Mode.prefix() {
			maxDist = p * 64
		}
		h := s.hhist[b*histStride : b*histStride+maxDist+1]
		t, below, ok := histCut(h, s.needs[b])
		s.hthr[b], s.hslim[b], s.below[b] = int32(t), int32(n), below
		s.counts[b] = below + int(h[t])
		if ok && int(h[t])-(s.needs[b]-below) > tieSlack {
			bigTies = true
		}
	}
	if bigTies {
		tiePasses.Add(1)
		ng := (n + g.wg - 1) / g.wg
		if err := d.ensure(&s.groups, uintptr(B*ng)*4); err != nil {
			return nil, err
		}
		// Only the queries with large ties take part.
		thr := make([]int32, B)
		for b := range qs {
			thr[b] = -1
			h := s.hhist[b*histStride:]
			t := int(s.hthr[b])
			if int(h[t])-(s.needs[b]-s.below[b]) > tieSlack {
				thr[b] = int32(t)
			}
		}
		if err := write(d, s.thr, 0, thr); err != nil {
			return nil, err
		}
		if err := d.setArgs(g.kTies, g.dist, int32(n), int32(g.cap), s.thr, s.groups, int32(ng)); err != nil {
			return nil, err
		}
		if err := d.launch(g.kTies, n, B, g.wg); err != nil {
			return nil, err
		}
		s.hgroups = grown(s.hgroups, B*ng)
		if err := read(d, s.groups, 0, s.hgroups); err != nil {
			return nil, err
		}
		for b := range qs {
			if thr[b] < 0 {
				continue
			}
			need, got := s.needs[b]-s.below[b], 0
			for gi, c := range s.hgroups[b*ng : (b+1)*ng] {
				got += int(c)
				if got >= need {
					s.hslim[b] = int32(min(n, (gi+1)*g.wg))
					break
				}
			}
			s.counts[b] = s.below[b] + got
		}
	}
	total := 0
	for b := range qs {
		s.hoff[b], s.hlim[b] = int32(total), int32(s.counts[b])
		total += s.counts[b]
	}
	if err := d.ensure(&s.out, uintptr(max(total, 1))*8); err != nil {
		return nil, err
	}
	if err := errors.Join(write(d, s.thr, 0, s.hthr), write(d, s.slim, 0, s.hslim), write(d, s.off, 0, s.hoff),
		write(d, s.lim, 0, s.hlim), d.zero(s.cnt, uintptr(B)*4)); err != nil {
		return nil, err
	}

	// Pass 2: compact the candidates.
	if err := d.setArgs(g.kCompact, g.dist, int32(n), int32(g.cap), s.thr, s.slim, s.off, s.lim, s.cnt, s.out); err != nil {
		return nil, err
	}
	if err := d.launch(g.kCompact, n, B, g.wg); err != nil {
		return nil, err
	}
	s.hout = grown(s.hout, total)
	s.hcnt = grown(s.hcnt, B)
	if err := errors.Join(read(d, s.out, 0, s.hout), read(d, s.cnt, 0, s.hcnt)); err != nil {
		return nil, err
	}
	tops := make([][]uint64, B)
	for b := range qs {
		if int(s.hcnt[b]) != s.counts[b] {
			return nil, fmt.Errorf("compacted %d candidates for query %d, expected %d", s.hcnt[b], b, s.counts[b])
		}
		l := s.hout[s.hoff[b] : int(s.hoff[b])+s.counts[b]]
		slices.Sort(l)
		tops[b] = l[:min(len(l), s.needs[b])]
	}

	// Pass 3: full distances of the prefix candidates.
	s.hpq, s.hps = s.hpq[:0], s.hps[:0]
	for b, q := range qs {
		if q.Mode.prefix() {
			for _, v := range tops[b] {
				s.hpq = append(s.hpq, int32(b))
				s.hps = append(s.hps, int32(uint32(v)))
			}
		}
	}
	if m := len(s.hps); m > 0 {
		s.hgout = grown(s.hgout, m)
		if err := g.pairs(m); err != nil {
			return nil, err
		}
		if err := errors.Join(d.ensure(&s.gout, uintptr(m)*2),
			d.setArgs(g.kGather, g.codes, s.qcodes, s.pq, s.ps, int32(m), s.gout)); err != nil {
			return nil, err
		}
		if err := d.launch(g.kGather, m, 1, 64); err != nil {
			return nil, err
		}
		if err := read(d, s.gout, 0, s.hgout); err != nil {
			return nil, err
		}
		j := 0
		for b, q := range qs {
			if !q.Mode.prefix() {
				continue
			}
			l := tops[b]
			for i, v := range l {
				l[i] = uint64(s.hgout[j])<<32 | v&0xFFFFFFFF
				j++
			}
			slices.Sort(l)
			tops[b] = l[:min(len(l), keeps[b])]
		}
	}

	// Pass 4: exact re-ranking.
	var scores []float32
	if anyRerank {
		s.hpq, s.hps = s.hpq[:0], s.hps[:0]
		s.hqvec = grown(s.hqvec, B*compress.Dim)
		s.hqnorm = grown(s.hqnorm, B)
		for b, q := range qs {
			if !q.Mode.rerank() {
				continue
			}
			copy(s.hqvec[b*compress.Dim:], q.Vector)
			s.hqnorm[b] = rerankNorm(q.Vector)
			for _, v := range tops[b] {
				s.hpq = append(s.hpq, int32(b))
				s.hps = append(s.hps, int32(uint32(v)))
			}
		}
		if m := len(s.hps); m > 0 {
			if err := errors.Join(g.pairs(m),
				d.ensure(&s.qvec, uintptr(g.cfg.MaxBatch)*compress.Dim*4), d.ensure(&s.qnorm, uintptr(g.cfg.MaxBatch)*4),
				d.ensure(&s.rout, uintptr(m)*4)); err != nil {
				return nil, err
			}
			if err := errors.Join(write(d, s.qvec, 0, s.hqvec), write(d, s.qnorm, 0, s.hqnorm),
				d.setArgs(g.kRerank, g.codes, s.qvec, s.qnorm, s.pq, s.ps, int32(m), s.rout)); err != nil {
				return nil, err
			}
			if err := d.launch(g.kRerank, m, 1, 64); err != nil {
				return nil, err
			}
			s.hrout = grown(s.hrout, m)
			if err := read(d, s.rout, 0, s.hrout); err != nil {
				return nil, err
			}
			scores = s.hrout
		}
	}

	// Hits, as CPU.Search builds them.
	res := make([][]Hit, B)
	j := 0
	for b, q := range qs {
		hits := make([]Hit, len(tops[b]))
		for i, v := range tops[b] {
			dist := int(v >> 32)
			hits[i] = Hit{ID: g.host.idAt(int(uint32(v))), Distance: dist}
			if q.Mode.rerank() {
				hits[i].Score = scores[j]
				j++
			} else {
				hits[i].Score = float32(math.Cos(math.Pi * float64(dist) / compress.Dim))
			}
		}
		res[b] = finishHits(hits, q)
	}
	return res, nil
}

// pairs uploads the (query, slot) pairs in s.hpq, s.hps.
func (g *GPU) pairs(m int) error {
	d, s := g.dev, &g.s
	return errors.Join(d.ensure(&s.pq, uintptr(m)*4), d.ensure(&s.ps, uintptr(m)*4),
		write(d, s.pq, 0, s.hpq), write(d, s.ps, 0, s.hps))
}
