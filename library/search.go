package library

import (
	"cmp"
	"context"
	"fmt"
	"slices"

	"github.com/dso-proxy/dso/gpuidx"
	"github.com/dso-proxy/dso/store"
)

// Query is one retrieval.
type Query struct {
	// Vector is the canonical query vector (from Vector).
	Vector []float32
	// Text is the question Vector was embedded from, for the lexical
	// part of relevance; without it relevance is the embedding's alone.
	Text string
	// K is how many experiences to return at most; 0 means 5.
	K int
	// Domain keeps experiences in this domain or below it ("" keeps all).
	Domain string
	// MinConfidence drops experiences below it.
	MinConfidence float64
	// MinRelevance, when set, replaces the calibrated gate.
	MinRelevance *float32
	// Stricter, when set, raises the gate (or MinRelevance) to it where
	// it is higher: what a client may ask of a gate it cannot lower.
	Stricter *float32
	// IncludeGated keeps the matches below the gate too, marked so (for
	// showing what retrieval would do).
	IncludeGated bool
	// WholeDomain, when above K, injects a small domain whole: if no more
	// than WholeDomain experiences pass the domain and confidence filters,
	// every one of them that clears the gate is returned; a larger domain
	// gets the best K. (A small library of merged rules is best shown
	// entire, as Training-Free GRPO does; the gate still keeps out what
	// is unrelated to the question.)
	WholeDomain int
}

// NoGate is a MinRelevance that lets every match through.
var NoGate = float32(-2)

// rerankDepth is how many candidates are re-ranked exactly for k hits
// wanted: exact, but a 3840-float dot product per candidate, so few. (It
// is at least bgDepth, so the background's ranks come from the re-ranked
// candidates too.)
func rerankDepth(k int) int { return max(8*k, 32, bgDepth) }

// Result is one retrieved experience.
type Result struct {
	store.Experience
	// Score estimates the cosine between query and experience.
	Score float32
	// Relevance is Score less the query's background; the gate compares it.
	Relevance float32
	// Passed says whether it cleared the gate.
	Passed bool
}

// GateFor returns the relevance threshold q is judged by.
func (l *Library) GateFor(q Query) float32 {
	g := l.gate(q)
	if q.Stricter != nil && *q.Stricter > g {
		return *q.Stricter
	}
	return g
}

func (l *Library) gate(q Query) float32 {
	if q.MinRelevance != nil {
		return *q.MinRelevance
	}
	st := l.cur.Load()
	if g := st.gate.Load(); g != nil {
		return g.Value
	}
	if p := st.prep.Load(); p != nil {
		return p.floor
	}
	return 0
}

// IndexQuery is the index query Search makes for the canonical vector v
// when it wants k results, before its filters: the depth the gate's
// background reads, and a re-ranking no deeper than those ranks need.
// dso bench index measures the index with it.
func IndexQuery(v []float32, k int) gpuidx.Query {
	return gpuidx.Query{Vector: v, K: max(k, bgDepth), Rerank: rerankDepth(k)}
}

// Search returns the best experiences for q that clear the gate (and,
// with IncludeGated, those that do not), most relevant first. Retired
// experiences are never returned. q.Vector must come from this library's
// Vector (or Align) of the space it serves.
func (l *Library) Search(ctx context.Context, q Query) ([]Result, error) {
	if l.cfg.Offline {
		return nil, ErrOffline
	}
	st := l.cur.Load()
	p := st.prep.Load()
	if p == nil {
		return nil, st.ready()
	}
	if st.idx.Len() == 0 {
		return nil, ErrEmpty
	}
	if q.K <= 0 {
		q.K = 5
	}
	want := max(q.K, q.WholeDomain+1) // one more than whole tells a large domain
	iq := IndexQuery(q.Vector, want)
	iq.Domain, iq.MinConfidence = store.NormalizeDomain(q.Domain), float32(q.MinConfidence)
	hits, err := st.idx.Search(ctx, iq)
	if err != nil {
		return nil, fmt.Errorf("library: search: %w", err)
	}
	if q.WholeDomain > q.K && len(hits) <= q.WholeDomain {
		q.K = q.WholeDomain
	}
	ahits, err := p.anchors.Search(ctx, anchorQuery(q.Vector, bgDepth))
	if err != nil {
		return nil, fmt.Errorf("library: search: %w", err)
	}
	g := st.gate.Load()
	var lex *lexicon
	if g != nil && q.Text != "" {
		lex = g.lex
	}
	byID := make(map[string]store.Experience, len(hits))
	var texts []string
	if lex != nil {
		// The lexical part reads every hit's text; the store has the
		// last word on each (the index may lag a concurrent change).
		if err := l.load(ctx, hits, byID); err != nil {
			return nil, err
		}
		texts = make([]string, len(hits))
		for i, h := range hits {
			texts[i] = KeyedText(byID[h.ID])
		}
	}
	rel := lex.relevances(q.Text, hits, ahits, texts)
	order := make([]int, len(hits))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return cmp.Compare(rel[b], rel[a]) })
	gate := l.GateFor(q)
	var keep []gpuidx.Hit
	var keepRel []float32
	for _, i := range order {
		if len(keep) == q.K {
			break
		}
		e, loaded := byID[hits[i].ID]
		if loaded && (e.Status == store.StatusRetired || e.Confidence < q.MinConfidence) {
			continue
		}
		if q.IncludeGated || rel[i] >= gate {
			keep = append(keep, hits[i])
			keepRel = append(keepRel, rel[i])
		}
	}
	if len(keep) == 0 {
		return nil, nil
	}
	if err := l.load(ctx, keep, byID); err != nil {
		return nil, err
	}
	out := make([]Result, 0, len(keep))
	for i, h := range keep {
		e, ok := byID[h.ID]
		// The index may lag a concurrent change; the store has the last word.
		if !ok || e.Status == store.StatusRetired || e.Confidence < q.MinConfidence {
			continue
		}
		out = append(out, Result{Experience: e, Score: h.Score, Relevance: keepRel[i], Passed: keepRel[i] >= gate})
	}
	return out, nil
}

// load puts the experiences of hits that byID lacks into it, from the
// cache of recent ones or the store.
func (l *Library) load(ctx context.Context, hits []gpuidx.Hit, byID map[string]store.Experience) error {
	var ids []string
	for _, h := range hits {
		if _, ok := byID[h.ID]; !ok {
			ids = append(ids, h.ID)
		}
	}
	if len(ids) == 0 {
		return nil
	}
	exps, err := l.seen.get(ctx, ids, l.store.GetExperiences)
	if err != nil {
		return fmt.Errorf("library: loading experiences: %w", err)
	}
	for _, e := range exps {
		byID[e.ID] = e
	}
	return nil
}
