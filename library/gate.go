package library

import (
	"context"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/dso-proxy/dso/gpuidx"
)

// Relevance is judged relative to the background, not by the raw score: a
// query's cosine to its best match means little on its own, since every
// space, and every region of a library, has its own level of similarity
// between unrelated texts. A match is relevant when it stands out from the
// query's background: the mean score of its 5th to 9th best matches among
// the library and the anchors (ranks far enough down that a few stored
// near-copies of the answer do not raise the background, and filled by the
// anchors where the library is small).
const (
	bgFrom  = 4 // 0-based rank of the first background match
	bgTo    = 9 // one past the last
	bgDepth = bgTo
)

// background returns the mean score of the bgFrom..bgTo-1 best of the two
// score-sorted hit lists, skipping the id skip in lib (a text compared
// with the library that holds it).
func background(lib, anchors []gpuidx.Hit, skip string) float32 {
	as := scores(anchors, "")
	return mergedMean(scores(lib, skip), as, len(as))
}

// scores returns the scores of hits but skip's, in their order.
func scores(hits []gpuidx.Hit, skip string) []float32 {
	out := make([]float32, 0, len(hits))
	for _, h := range hits {
		if h.ID != skip {
			out = append(out, h.Score)
		}
	}
	return out
}

// Gate is a calibrated relevance threshold.
type Gate struct {
	// Value is the threshold: experiences whose relevance is below it are
	// not injected.
	Value float32 `json:"value"`
	// Floor is what the anchors alone give (how far an everyday text
	// stands out among unrelated ones, under the library's word weights).
	// The gate is the floor: they are reported apart for a gate set by
	// hand.
	Floor float32 `json:"floor"`
	// Size is the number of indexed experiences it was calibrated on;
	// Sampled how many of their texts gave the word weights.
	Size    int       `json:"library_size"`
	Sampled int       `json:"sampled"`
	At      time.Time `json:"calibrated_at"`
	// lex weighs words for the lexical part of relevance; nil below
	// minGateLibrary experiences.
	lex *lexicon
}

// Calibration defaults.
const (
	// DefaultGateQuantile: the gate is this quantile of the relevance
	// each anchor has to its nearest other anchor under the library's word
	// weights (how far an everyday text stands out among unrelated ones),
	// so that a question unrelated to everything stored rarely gets a
	// note. Chosen on STS-B train (dso eval gate --slices 4), reported on
	// dev; see docs/retrieval.md.
	DefaultGateQuantile = 0.95
	// DefaultGateFloorQuantile is that quantile for a library too small
	// to weigh words by (below minGateLibrary experiences), whose
	// relevance is the embedding's alone.
	DefaultGateFloorQuantile = 0.8
	// DefaultGateSample is how many of the library's texts a calibration
	// reads for its word weights.
	DefaultGateSample = 4096
	// minGateLibrary: below this many experiences the library's texts
	// are too few to weigh words by, and relevance is the embedding's
	// alone.
	minGateLibrary = 32
)

// anchorQuery searches the few hundred anchors: a full Hamming scan is
// cheap there, and the background needs exact scores only for its few
// ranks.
func anchorQuery(v []float32, k int) gpuidx.Query {
	return gpuidx.Query{Vector: v, K: k, Mode: gpuidx.ModeFullRerank, Rerank: 2 * k}
}

// quantile returns the q-quantile of xs (sorted in place).
func quantile(xs []float32, q float64) float32 {
	if len(xs) == 0 {
		return 0
	}
	slices.Sort(xs)
	return xs[min(len(xs)-1, int(q*float64(len(xs))))]
}

// floor computes the anchors-only gate: each anchor against the others,
// with lex's lexical part (nil: the embedding's alone).
func (l *Library) floor(ctx context.Context, p *prepared, lex *lexicon) (float32, error) {
	rel := make([]float32, 0, len(p.anchorVecs))
	for i, v := range p.anchorVecs {
		hits, err := p.anchors.Search(ctx, anchorQuery(v, bgDepth+1))
		if err != nil {
			return 0, err
		}
		self := anchorID(i)
		bg := background(nil, hits, self)
		var lq termVec
		var lbg float32
		if lex != nil {
			lq = lex.anchors[i]
			lbg = mergedMean(nil, lex.anchorScores(lq, i), len(lex.anchors)-1)
		}
		best, ok := float32(0), false
		for _, h := range hits {
			if h.ID == self {
				continue
			}
			r := h.Score - bg
			if lex != nil {
				r = hybrid(r, lq.cos(lex.anchors[anchorIndex(h.ID)])-lbg)
			}
			if !ok || r > best {
				best, ok = r, true
			}
		}
		if ok {
			rel = append(rel, best)
		}
	}
	if lex == nil {
		return quantile(rel, l.cfg.GateFloorQuantile), nil
	}
	return quantile(rel, l.cfg.GateQuantile), nil
}

// calibrate recomputes st's gate: the words of a sample of its texts
// give the lexicon its document frequencies, and under those weights the
// anchors give the gate. It embeds nothing, so it costs a store read of
// the sample and a search of the anchors per anchor.
//
// (A gate taken from how far each sampled experience stands out from its
// nearest other experience was measured on STS-B train and dropped: it
// ran against the threshold each genre needed, lowest where unanswered
// questions stood out most. See docs/retrieval.md.)
func (l *Library) calibrate(ctx context.Context, st *state) error {
	p := st.prep.Load()
	if p == nil {
		return st.ready()
	}
	g := Gate{Floor: p.floor, Value: p.floor, Size: st.idx.Len(), At: time.Now()}
	if g.Size >= minGateLibrary {
		sample, err := l.store.SampleExperiences(ctx, st.space.Name, l.cfg.GateSample)
		if err != nil {
			return fmt.Errorf("library: calibrating the gate: %w", err)
		}
		texts := make([]string, len(sample))
		for i, e := range sample {
			texts[i] = KeyedText(e)
		}
		lex := newLexicon(texts, Anchors())
		floor, err := l.floor(ctx, p, lex)
		if err != nil {
			return fmt.Errorf("library: calibrating the gate: %w", err)
		}
		g.lex, g.Floor, g.Value, g.Sampled = lex, floor, floor, len(texts)
	}
	st.gate.Store(&g)
	return nil
}

// Gate returns the current calibrated gate; ok is false before the space
// is ready.
func (l *Library) Gate() (Gate, bool) {
	g := l.cur.Load().gate.Load()
	if g == nil {
		return Gate{}, false
	}
	return *g, true
}

// gateStale reports whether st changed enough since its last calibration
// to calibrate again: by a tenth at once; at all, once the changes have
// stopped (the size has not moved for recalibrateEvery); or at all after
// maxGateAge. A calibration reads up to GateSample texts, so a steady
// trickle of writes must not set one off every few seconds: while writes
// go on, a gate is at most maxGateAge old or a tenth of the library
// behind.
func gateStale(st *state, now time.Time) bool {
	n := st.idx.Len()
	if int(st.gateLook.Swap(int64(n))) != n {
		st.gateChanged.Store(now.UnixNano())
	}
	g := st.gate.Load()
	if g == nil {
		return true
	}
	if n == g.Size {
		return false
	}
	d := math.Abs(float64(n - g.Size))
	quiet := now.Sub(time.Unix(0, st.gateChanged.Load())) >= recalibrateEvery
	return d >= max(8, 0.1*float64(g.Size)) || quiet || now.Sub(g.At) >= maxGateAge
}

// recalibrateEvery is how often the library looks at its gate (besides
// after each write): a library that stopped changing recalibrates within
// it.
const recalibrateEvery = 5 * time.Second

// maxGateAge bounds how stale a gate may grow while writes go on.
const maxGateAge = 10 * time.Minute
