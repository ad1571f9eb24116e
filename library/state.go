package library

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/dso-proxy/dso/align"
	"github.com/dso-proxy/dso/compress"
	"github.com/dso-proxy/dso/gpuidx"
	"github.com/dso-proxy/dso/store"
)

// state is the library in one embedding space: the index of the codes made
// there and what it takes to embed, encode and judge relevance there. A
// library serves one state; while it moves to a new space it builds a
// second one beside it.
type state struct {
	space   Space
	adapter *align.Adapter
	idx     gpuidx.Index

	prep    atomic.Pointer[prepared] // nil until the space is ready
	prepErr atomic.Pointer[error]    // the last failure to prepare
	prepMu  sync.Mutex               // serialises prepare
	gate    atomic.Pointer[Gate]
	// gateLook is the index's size when gateStale last looked, and
	// gateChanged when it last saw it move (Unix nanoseconds).
	gateLook    atomic.Int64
	gateChanged atomic.Int64
}

func newState(sp Space, a *align.Adapter, idx gpuidx.Index) *state {
	st := &state{space: sp, adapter: a, idx: idx}
	notReady := error(ErrNotReady)
	st.prepErr.Store(&notReady)
	return st
}

// ready returns nil when st is prepared, else why not.
func (st *state) ready() error {
	if st.prep.Load() != nil {
		return nil
	}
	return *st.prepErr.Load()
}

// index puts e's code in st's index when it was made in st's space.
func (st *state) index(e store.Experience) error {
	if len(e.Code) == 0 || e.Space != st.space.Name {
		return nil
	}
	c, err := compress.Decode(e.Code)
	if err != nil {
		return fmt.Errorf("experience %s: %w", e.ID, err)
	}
	return st.idx.Upsert(e.ID, meta(e), c)
}

// indexPut puts e's code c, written in st's space, in st's index; an
// Offline library keeps none.
func (l *Library) indexPut(st *state, e store.Experience, c compress.Code) error {
	if l.cfg.Offline {
		return nil
	}
	return st.idx.Upsert(e.ID, meta(e), c)
}

// prepared is what a state needs before it can encode: the pipeline into
// the canonical space, the anchors' codes and the gate's floor.
type prepared struct {
	pipe    *align.Pipeline
	anchors *gpuidx.CPU
	// anchorVecs are the anchors' canonical vectors, for calibration.
	anchorVecs [][]float32
	dim        int
	floor      float32
}

// embedAll embeds texts in st's space in batches, through the cache.
func (l *Library) embedAll(ctx context.Context, st *state, texts []string) ([][]float32, error) {
	out := make([][]float32, len(texts))
	var miss []int
	for i, t := range texts {
		if v, ok := l.cached(st, t); ok {
			out[i] = v
		} else {
			miss = append(miss, i)
		}
	}
	for start := 0; start < len(miss); start += embedBatch {
		idx := miss[start:min(start+embedBatch, len(miss))]
		batch := make([]string, len(idx))
		for j, i := range idx {
			batch[j] = texts[i]
		}
		vs, err := safeEmbed(ctx, st.space, batch)
		if err != nil {
			return nil, fmt.Errorf("%w in %s: %w", ErrEmbed, st.space.Name, err)
		}
		if len(vs) != len(batch) {
			return nil, fmt.Errorf("%w in %s: %d vectors for %d texts", ErrEmbed, st.space.Name, len(vs), len(batch))
		}
		for j, i := range idx {
			if len(vs[j]) == 0 {
				return nil, fmt.Errorf("%w in %s: an empty vector", ErrEmbed, st.space.Name)
			}
			out[i] = vs[j]
			l.remember(st, texts[i], vs[j])
		}
	}
	return out, nil
}

// safeEmbed calls the space's embedder, turning a panic in it into an
// error: an embedder is outside code, and it runs in request paths and in
// the library's background work alike.
func safeEmbed(ctx context.Context, sp Space, texts []string) (vs [][]float32, err error) {
	defer func() {
		if p := recover(); p != nil {
			vs, err = nil, fmt.Errorf("embedder panicked: %v", p)
		}
	}()
	return sp.Embedder.Embed(ctx, sp.Model, texts)
}

// prepareState prepares st if it is not yet, waiting for it.
func (l *Library) prepareState(ctx context.Context, st *state) error {
	if st.prep.Load() != nil {
		return nil
	}
	st.prepMu.Lock()
	defer st.prepMu.Unlock()
	if st.prep.Load() != nil {
		return nil
	}
	p, err := l.prepare(ctx, st)
	if err == nil {
		if p.floor, err = l.floor(ctx, p, nil); err == nil {
			st.prep.Store(p)
			l.log.Info("experience library space ready", "space", st.space.Name, "dims", p.dim, "experiences", st.idx.Len(), "gate_floor", p.floor)
			l.poke()
			return nil
		}
	}
	err = fmt.Errorf("%w: %w", ErrNotReady, err)
	st.prepErr.Store(&err)
	return err
}

// prepare embeds the anchors in st's space, takes the space's centre from
// the store (or stores the anchors' mean as the centre when the space is
// new) and encodes the anchors.
func (l *Library) prepare(ctx context.Context, st *state) (*prepared, error) {
	texts := Anchors()
	raw, err := l.embedAll(ctx, st, texts)
	if err != nil {
		return nil, err
	}
	dim := len(raw[0])
	for _, v := range raw {
		if len(v) != dim {
			return nil, fmt.Errorf("library: space %s gives vectors of %d and %d dims", st.space.Name, dim, len(v))
		}
	}
	ref := raw
	if st.adapter != nil {
		ref = make([][]float32, len(raw))
		for i, v := range raw {
			if ref[i], err = st.adapter.Apply(nil, v); err != nil {
				return nil, fmt.Errorf("library: space %s: adapter: %w", st.space.Name, err)
			}
		}
	}
	sp, err := l.store.GetSpace(ctx, st.space.Name)
	if err != nil {
		mean := align.Mean(ref)
		// Codes stored before spaces kept a centre were made without one.
		if n, err := l.store.CountCodes(ctx, st.space.Name); err != nil {
			return nil, err
		} else if n > 0 {
			mean = make([]float32, len(ref[0]))
		}
		if sp, err = l.store.PutSpace(ctx, store.SpaceStats{Name: st.space.Name, Mean: mean}); err != nil {
			return nil, err
		}
	}
	if len(sp.Mean) != len(ref[0]) {
		return nil, fmt.Errorf("library: space %s was created with %d dims, its embedder now gives %d: name the new model as a new space",
			st.space.Name, len(sp.Mean), len(ref[0]))
	}
	p := &prepared{
		pipe:    &align.Pipeline{Adapter: st.adapter, Mean: sp.Mean, Lift: l.lift},
		anchors: gpuidx.NewCPU(gpuidx.CPUConfig{}),
		dim:     dim,
	}
	p.anchorVecs = make([][]float32, len(raw))
	for i, v := range raw {
		c, err := p.pipe.Canonical(nil, v)
		if err != nil {
			return nil, fmt.Errorf("library: space %s: %w", st.space.Name, err)
		}
		code, err := compress.Encode(c)
		if err != nil {
			return nil, err
		}
		p.anchorVecs[i] = c
		if err := p.anchors.Upsert(anchorID(i), gpuidx.Meta{Confidence: 1}, code); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// vectors embeds texts in st's space and maps them into the canonical
// space.
func (l *Library) vectors(ctx context.Context, st *state, texts []string) ([][]float32, error) {
	if err := l.prepareState(ctx, st); err != nil {
		return nil, err
	}
	out := make([][]float32, len(texts))
	err := inParts(len(texts), func(lo, hi int) error {
		vs, err := l.vectorsOf(ctx, st, texts[lo:hi])
		copy(out[lo:hi], vs)
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// codesOf embeds texts in st's space and encodes them, each in its
// canonical form and wire form: vectors then codes, without holding a
// batch's canonical vectors (16 KiB each) at once.
func (l *Library) codesOf(ctx context.Context, st *state, texts []string) ([]compress.Code, [][]byte, error) {
	if err := l.prepareState(ctx, st); err != nil {
		return nil, nil, err
	}
	cs := make([]compress.Code, len(texts))
	bs := make([][]byte, len(texts))
	err := inParts(len(texts), func(lo, hi int) error {
		scratch := make([]float32, align.LiftDim)
		// A few embedder batches at a time, coded before the next: the raw
		// vectors of a whole part (an import's 16k texts at 2,048
		// dimensions, 128 MB) would only be garbage a moment later.
		for from := lo; from < hi; from += codeChunk {
			to := min(hi, from+codeChunk)
			raw, err := l.embedAll(ctx, st, texts[from:to])
			if err != nil {
				return err
			}
			for i, v := range raw {
				c, err := alignInto(st, scratch, v)
				if err != nil {
					return err
				}
				if cs[from+i], err = compress.Encode(c); err != nil {
					return fmt.Errorf("library: encode: %w", err)
				}
				if bs[from+i], err = cs[from+i].MarshalBinary(); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	return cs, bs, nil
}

// codeChunk is how many texts codesOf embeds before it codes them.
const codeChunk = 16 * embedBatch

// inParts runs fn over [0, n) split into one part per core, in parallel,
// when n is large (an import, a re-embedding): the lift into the
// canonical space is CPU work, and so is a local embedder's.
func inParts(n int, fn func(lo, hi int) error) error {
	parts := min(runtime.GOMAXPROCS(0), n/embedBatch)
	if parts < 2 {
		return fn(0, n)
	}
	errs := make([]error, parts)
	var wg sync.WaitGroup
	size := (n + parts - 1) / parts
	for p := range parts {
		lo, hi := p*size, min(n, (p+1)*size)
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[p] = fn(lo, hi)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// vectorsOf is vectors, in this goroutine.
func (l *Library) vectorsOf(ctx context.Context, st *state, texts []string) ([][]float32, error) {
	raw, err := l.embedAll(ctx, st, texts)
	if err != nil {
		return nil, err
	}
	out := make([][]float32, len(raw))
	for i, v := range raw {
		if out[i], err = alignIn(st, v); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// alignIn maps a vector of st's space into the canonical space.
func alignIn(st *state, v []float32) ([]float32, error) {
	return alignInto(st, nil, v)
}

// alignInto is alignIn into dst (see align.Pipeline.Canonical).
func alignInto(st *state, dst, v []float32) ([]float32, error) {
	p := st.prep.Load()
	if p == nil {
		return nil, st.ready()
	}
	if len(v) != p.dim {
		return nil, fmt.Errorf("library: space %s gave a %d-dim vector, want %d", st.space.Name, len(v), p.dim)
	}
	out, err := p.pipe.Canonical(dst, v)
	if err != nil {
		return nil, fmt.Errorf("library: aligning: %w", err)
	}
	return out, nil
}
