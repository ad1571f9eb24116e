// Package library is the experience library as retrieval sees it: it embeds
// texts (with a cache), maps the vectors into the canonical space, encodes
// them as BitDelta codes, keeps the search index in step with the store, and
// answers "which experiences fit this query" with records and scores.
//
// It owns no HTTP and no prompt building: proxy calls it on the request path
// and for the experience API; learn adds what it distils through it.
package library

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/dso-proxy/dso/align"
	"github.com/dso-proxy/dso/compress"
	"github.com/dso-proxy/dso/gpuidx"
	"github.com/dso-proxy/dso/store"
	lru "github.com/hashicorp/golang-lru/v2"
)

// Errors callers branch on.
var (
	// ErrEmpty: the index holds no experiences, so there is nothing to find.
	ErrEmpty = errors.New("library: no experiences")
	// ErrNoText: there is no text to embed.
	ErrNoText = errors.New("library: empty text")
)

// Embedder embeds texts with a named model. providers' backends satisfy it;
// local embedders are adapted with EmbedFunc.
type Embedder interface {
	Embed(ctx context.Context, model string, texts []string) ([][]float32, error)
}

// EmbedFunc adapts a model-less local embedder (word vectors, hashing).
type EmbedFunc func(ctx context.Context, texts []string) ([][]float32, error)

// Embed implements Embedder; the model name is ignored.
func (f EmbedFunc) Embed(ctx context.Context, _ string, texts []string) ([][]float32, error) {
	return f(ctx, texts)
}

// DefaultSeed is the lift seed when a network names none.
const DefaultSeed = 0x64736f // "dso"

// Config configures a Library.
type Config struct {
	// Store holds the records. Required.
	Store *store.SQLite
	// Index is searched (CPU or GPU backend); nil means a new CPU index
	// with default settings. The library does not close it.
	Index gpuidx.Index
	// Seed is the lift's seed; it must be the same on every node of a
	// network. 0 means DefaultSeed.
	Seed uint64
	// Adapters map a source model name to its adapter into the reference
	// space. A model without one is taken to be the reference model.
	Adapters map[string]*align.Adapter
	// Mean is the reference space's mean, used when a model's adapter
	// carries none. Nil: no centring.
	Mean []float32
	// CacheSize is how many query embeddings are cached. 0 means 4096;
	// negative disables the cache.
	CacheSize int
}

// Library ties embedding, alignment, encoding, index and store together.
// It is safe for concurrent use.
type Library struct {
	store     *store.SQLite
	idx       gpuidx.Index
	lift      *align.Lift
	mean      []float32
	adapters  map[string]*align.Adapter
	pipelines map[string]*align.Pipeline
	cache     *lru.Cache[cacheKey, []float32]
	follow    follower // see Follow
}

type cacheKey struct{ model, text string }

// New builds a Library and fills the index from the store: every
// experience with a code is indexed.
func New(ctx context.Context, cfg Config) (*Library, error) {
	if cfg.Store == nil {
		return nil, errors.New("library: Config.Store is nil")
	}
	if cfg.Index == nil {
		cfg.Index = gpuidx.NewCPU(gpuidx.CPUConfig{})
	}
	if cfg.Seed == 0 {
		cfg.Seed = DefaultSeed
	}
	if cfg.CacheSize == 0 {
		cfg.CacheSize = 4096
	}
	l := &Library{
		store:     cfg.Store,
		idx:       cfg.Index,
		lift:      align.NewLift(cfg.Seed),
		mean:      cfg.Mean,
		adapters:  cfg.Adapters,
		pipelines: map[string]*align.Pipeline{},
	}
	if cfg.CacheSize > 0 {
		c, err := lru.New[cacheKey, []float32](cfg.CacheSize)
		if err != nil {
			return nil, err
		}
		l.cache = c
	}
	for model, a := range cfg.Adapters {
		mean := a.RefMean
		if mean == nil {
			mean = cfg.Mean
		}
		l.pipelines[model] = &align.Pipeline{Adapter: a, Mean: mean, Lift: l.lift}
	}
	// Follow replays the change log from here. Taking the cursor before the
	// rebuild means a write that races the rebuild is applied twice at
	// worst, never missed.
	from, err := cfg.Store.LastChange(ctx)
	if err != nil {
		return nil, fmt.Errorf("library: %w", err)
	}
	l.follow.seq = from
	err = cfg.Store.EachExperience(ctx, func(e store.Experience) error {
		if len(e.Code) == 0 {
			return nil
		}
		c, err := compress.Decode(e.Code)
		if err != nil {
			return fmt.Errorf("experience %s: %w", e.ID, err)
		}
		return l.idx.Upsert(e.ID, meta(e), c)
	})
	if err != nil {
		return nil, fmt.Errorf("library: rebuilding the index: %w", err)
	}
	return l, nil
}

// Len is the number of indexed experiences.
func (l *Library) Len() int { return l.idx.Len() }

func meta(e store.Experience) gpuidx.Meta {
	return gpuidx.Meta{Domain: e.Domain, Confidence: float32(e.Confidence), Retired: e.Status == store.StatusRetired}
}

// Embed embeds text with model through emb, from the cache when it can.
func (l *Library) Embed(ctx context.Context, emb Embedder, model, text string) ([]float32, error) {
	if strings.TrimSpace(text) == "" {
		return nil, ErrNoText
	}
	k := cacheKey{model, text}
	if l.cache != nil {
		if v, ok := l.cache.Get(k); ok {
			return v, nil
		}
	}
	vs, err := emb.Embed(ctx, model, []string{text})
	if err != nil {
		return nil, err
	}
	if len(vs) != 1 || len(vs[0]) == 0 {
		return nil, fmt.Errorf("library: embedder returned %d vectors", len(vs))
	}
	if l.cache != nil {
		l.cache.Add(k, vs[0])
	}
	return vs[0], nil
}

// Canonical maps a vector from model's space into the canonical space.
func (l *Library) Canonical(model string, v []float32) ([]float32, error) {
	p, ok := l.pipelines[model]
	if !ok {
		p = &align.Pipeline{Mean: l.meanFor(len(v)), Lift: l.lift}
	}
	out, err := p.Canonical(nil, v)
	if err != nil {
		return nil, fmt.Errorf("library: aligning a %d-dim vector from %q: %w", len(v), model, err)
	}
	return out, nil
}

// meanFor returns the configured mean when it fits the vector's dims.
func (l *Library) meanFor(dim int) []float32 {
	if len(l.mean) == dim {
		return l.mean
	}
	return nil
}

// Query is one retrieval.
type Query struct {
	// Vector is the canonical query vector (from Canonical).
	Vector []float32
	// K is how many experiences to return; 0 means 5.
	K int
	// Domain keeps experiences in this domain or below it ("" keeps all).
	Domain string
	// MinConfidence drops experiences below it.
	MinConfidence float64
}

// Re-ranking depth: rerankPerHit candidates per hit wanted, at least
// minRerank.
const (
	rerankPerHit = 8
	minRerank    = 32
)

// Result is one retrieved experience.
type Result struct {
	store.Experience
	Score float32
}

// Search returns the best experiences for q, best first. Retired
// experiences are never returned.
func (l *Library) Search(ctx context.Context, q Query) ([]Result, error) {
	if l.idx.Len() == 0 {
		return nil, ErrEmpty
	}
	if q.K <= 0 {
		q.K = 5
	}
	// Re-ranking is exact but costs a 3840-float dot product per
	// candidate; the few experiences a prompt holds need few candidates.
	hits, err := l.idx.Search(ctx, gpuidx.Query{
		Vector: q.Vector, K: q.K, Domain: store.NormalizeDomain(q.Domain), MinConfidence: float32(q.MinConfidence),
		Rerank: max(rerankPerHit*q.K, minRerank),
	})
	if err != nil {
		return nil, fmt.Errorf("library: search: %w", err)
	}
	if len(hits) == 0 {
		return nil, nil
	}
	ids := make([]string, len(hits))
	score := make(map[string]float32, len(hits))
	for i, h := range hits {
		ids[i] = h.ID
		score[h.ID] = h.Score
	}
	exps, err := l.store.GetExperiences(ctx, ids)
	if err != nil {
		return nil, fmt.Errorf("library: loading experiences: %w", err)
	}
	out := make([]Result, 0, len(exps))
	for _, e := range exps {
		// The index may lag a concurrent change; the store has the last word.
		if e.Status == store.StatusRetired || e.Confidence < q.MinConfidence {
			continue
		}
		out = append(out, Result{Experience: e, Score: score[e.ID]})
	}
	return out, nil
}

// Add stores e with the code of its canonical vector and indexes it. A
// duplicate (same domain and text) returns the stored record and false.
func (l *Library) Add(ctx context.Context, e store.Experience, canonical []float32) (store.Experience, bool, error) {
	got, created, err := l.AddMany(ctx, []store.Experience{e}, [][]float32{canonical})
	if err != nil {
		return store.Experience{}, false, err
	}
	return got[0], created[0], nil
}

// AddMany is Add for several experiences, stored in one transaction.
func (l *Library) AddMany(ctx context.Context, es []store.Experience, canonical [][]float32) ([]store.Experience, []bool, error) {
	if len(es) != len(canonical) {
		return nil, nil, fmt.Errorf("library: %d experiences but %d vectors", len(es), len(canonical))
	}
	es = append([]store.Experience(nil), es...) // the codes go on copies
	codes := make([]compress.Code, len(es))
	for i := range es {
		c, err := compress.Encode(canonical[i])
		if err != nil {
			return nil, nil, fmt.Errorf("library: encode: %w", err)
		}
		b, err := c.MarshalBinary()
		if err != nil {
			return nil, nil, err
		}
		codes[i], es[i].Code = c, b
	}
	got, created, err := l.store.PutExperiences(ctx, es)
	if err != nil {
		return nil, nil, err
	}
	for i, e := range got {
		if created[i] {
			if err := l.idx.Upsert(e.ID, meta(e), codes[i]); err != nil {
				return got, created, fmt.Errorf("library: index: %w", err)
			}
		}
	}
	return got, created, nil
}

// Update changes an experience's confidence or status in the store and
// the index.
func (l *Library) Update(ctx context.Context, id string, u store.Update) (store.Experience, error) {
	e, err := l.store.UpdateExperience(ctx, id, u)
	if err != nil {
		return e, err
	}
	if m, c, ok := l.idx.Get(id); ok {
		nm := meta(e)
		if nm != m {
			if err := l.idx.Upsert(id, nm, c); err != nil {
				return e, err
			}
		}
	}
	return e, nil
}

// Delete removes an experience from the store and the index.
func (l *Library) Delete(ctx context.Context, id string) error {
	if err := l.store.DeleteExperience(ctx, id); err != nil {
		return err
	}
	l.idx.Delete(id)
	return nil
}

// Store returns the underlying store.
func (l *Library) Store() *store.SQLite { return l.store }
