// Package library is the experience library as retrieval sees it: it lives
// in one embedding space, embeds texts in it (with a cache), maps the
// vectors into the canonical space, encodes them as BitDelta codes, keeps
// the search index in step with the store, judges which matches are
// relevant enough to inject (a gate calibrated on the library itself), and
// moves stored experiences into its space when the space changes.
//
// It owns no HTTP and no prompt building: proxy calls it on the request path
// and for the experience API; learn adds what it distils through it.
package library

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

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
	// ErrNotReady: the library's embedding space is not usable yet (its
	// embedder has not answered); the error wraps the last failure.
	ErrNotReady = errors.New("library: embedding space not ready")
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
	// Space is the library's embedding space. Required.
	Space Space
	// Index is searched (CPU or GPU backend); nil means a new CPU index
	// with default settings. The library does not close it.
	Index gpuidx.Index
	// Seed is the lift's seed; it must be the same on every node of a
	// network. 0 means DefaultSeed.
	Seed uint64
	// Adapter, when set, maps the space's vectors into a network's
	// reference space before centring.
	Adapter *align.Adapter
	// CacheSize is how many embeddings are cached. 0 means 4096; negative
	// disables the cache.
	CacheSize int
	// GateQuantile, GateFloorQuantile and GateSample tune the gate's
	// calibration; zero means DefaultGateQuantile, DefaultGateFloorQuantile
	// and DefaultGateSample.
	GateQuantile      float64
	GateFloorQuantile float64
	GateSample        int
	// Logger receives the library's operational events (space ready,
	// re-embedding, failures). Nil discards.
	Logger *slog.Logger
}

// Library ties embedding, alignment, encoding, index and store together.
// It is safe for concurrent use. Its space is prepared in the background
// (New does not wait for the embedder); Ready says when it can serve.
type Library struct {
	cfg     Config
	store   *store.SQLite
	idx     gpuidx.Index
	lift    *align.Lift
	space   Space
	adapter *align.Adapter
	cache   *lru.Cache[string, []float32]
	log     *slog.Logger

	prep       atomic.Pointer[prepared] // nil until the space is ready
	floorValue float32                  // set once with prep
	gate       atomic.Pointer[Gate]
	prepMu     sync.Mutex            // serialises prepare
	prepErr    atomic.Pointer[error] // the last failure to prepare
	stale      atomic.Int64          // stored experiences not yet coded in this space

	kick   chan struct{}
	cancel context.CancelFunc
	done   chan struct{}

	follow follower // see Follow
}

// New builds a Library, fills the index from the store with every code made
// in cfg.Space, and starts preparing the space in the background: embedding
// the anchors, taking the space's centre, calibrating the gate, and
// re-embedding experiences whose codes are from another space. Call Close
// to stop that work.
func New(ctx context.Context, cfg Config) (*Library, error) {
	if cfg.Store == nil {
		return nil, errors.New("library: Config.Store is nil")
	}
	if cfg.Space.Name == "" || cfg.Space.Embedder == nil {
		return nil, errors.New("library: Config.Space needs a name and an embedder")
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
	if cfg.GateQuantile <= 0 || cfg.GateQuantile >= 1 {
		cfg.GateQuantile = DefaultGateQuantile
	}
	if cfg.GateFloorQuantile <= 0 || cfg.GateFloorQuantile >= 1 {
		cfg.GateFloorQuantile = DefaultGateFloorQuantile
	}
	if cfg.GateSample <= 0 {
		cfg.GateSample = DefaultGateSample
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	l := &Library{
		cfg:     cfg,
		store:   cfg.Store,
		idx:     cfg.Index,
		lift:    align.NewLift(cfg.Seed),
		space:   cfg.Space,
		adapter: cfg.Adapter,
		log:     cfg.Logger,
		kick:    make(chan struct{}, 1),
		done:    make(chan struct{}),
	}
	if cfg.CacheSize > 0 {
		c, err := lru.New[string, []float32](cfg.CacheSize)
		if err != nil {
			return nil, err
		}
		l.cache = c
	}
	// Follow replays the change log from here. Taking the cursor before the
	// rebuild means a write that races the rebuild is applied twice at
	// worst, never missed.
	from, err := cfg.Store.LastChange(ctx)
	if err != nil {
		return nil, fmt.Errorf("library: %w", err)
	}
	l.follow.seq = from
	var stale int64
	err = cfg.Store.EachExperience(ctx, func(e store.Experience) error {
		if len(e.Code) == 0 || e.Space != cfg.Space.Name {
			stale++
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
	l.stale.Store(stale)
	notReady := error(ErrNotReady)
	l.prepErr.Store(&notReady)
	bg, cancel := context.WithCancel(context.WithoutCancel(ctx))
	l.cancel = cancel
	go l.run(bg)
	return l, nil
}

// Close stops the background work. It does not close the store or index.
func (l *Library) Close() error {
	l.cancel()
	<-l.done
	return nil
}

// Space returns the library's embedding space.
func (l *Library) Space() Space { return l.space }

// Seed returns the seed of the library's lift into the canonical space.
func (l *Library) Seed() uint64 { return l.lift.Seed() }

// Len is the number of indexed experiences.
func (l *Library) Len() int { return l.idx.Len() }

// Stale is the number of stored experiences not yet coded in the
// library's space (they are being re-embedded).
func (l *Library) Stale() int { return int(l.stale.Load()) }

// Ready returns nil when the space is prepared, else an error wrapping
// ErrNotReady and the last failure.
func (l *Library) Ready() error {
	if l.prep.Load() != nil {
		return nil
	}
	return *l.prepErr.Load()
}

// Prepare prepares the space now if it is not yet, waiting for it. The
// background work does the same; Prepare is for callers that would rather
// wait than be told ErrNotReady.
func (l *Library) Prepare(ctx context.Context) error {
	if l.prep.Load() != nil {
		return nil
	}
	l.prepMu.Lock()
	defer l.prepMu.Unlock()
	if l.prep.Load() != nil {
		return nil
	}
	p, err := l.prepare(ctx)
	if err == nil {
		var f float32
		if f, err = l.floor(ctx, p); err == nil {
			l.floorValue = f
			l.prep.Store(p)
			l.log.Info("experience library space ready", "space", l.space.Name, "dims", p.dim, "experiences", l.idx.Len(), "gate_floor", f)
			l.poke()
			return nil
		}
	}
	err = fmt.Errorf("%w: %w", ErrNotReady, err)
	l.prepErr.Store(&err)
	return err
}

func meta(e store.Experience) gpuidx.Meta {
	return gpuidx.Meta{Domain: e.Domain, Confidence: float32(e.Confidence), Retired: e.Status == store.StatusRetired}
}

func (l *Library) cached(text string) ([]float32, bool) {
	if l.cache == nil {
		return nil, false
	}
	return l.cache.Get(text)
}

func (l *Library) remember(text string, v []float32) {
	if l.cache != nil {
		l.cache.Add(text, v)
	}
}

// Vector embeds text in the library's space (from the cache when it can)
// and maps it into the canonical space.
func (l *Library) Vector(ctx context.Context, text string) ([]float32, error) {
	vs, err := l.Vectors(ctx, []string{text})
	if err != nil {
		return nil, err
	}
	return vs[0], nil
}

// Vectors is Vector for several texts, embedded in batches.
func (l *Library) Vectors(ctx context.Context, texts []string) ([][]float32, error) {
	raw, err := l.Embed(ctx, texts...)
	if err != nil {
		return nil, err
	}
	out := make([][]float32, len(raw))
	for i, v := range raw {
		if out[i], err = l.Align(v); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Embed embeds texts in the library's space (the first half of Vectors),
// preparing the space first if it is not yet.
func (l *Library) Embed(ctx context.Context, texts ...string) ([][]float32, error) {
	if l.prep.Load() == nil {
		if err := l.Prepare(ctx); err != nil {
			return nil, err
		}
	}
	for _, t := range texts {
		if strings.TrimSpace(t) == "" {
			return nil, ErrNoText
		}
	}
	return l.embedAll(ctx, texts)
}

// Align maps a vector of the library's space into the canonical space
// (the second half of Vectors).
func (l *Library) Align(v []float32) ([]float32, error) {
	p := l.prep.Load()
	if p == nil {
		return nil, l.Ready()
	}
	if len(v) != p.dim {
		return nil, fmt.Errorf("library: space %s gave a %d-dim vector, want %d", l.space.Name, len(v), p.dim)
	}
	out, err := p.pipe.Canonical(nil, v)
	if err != nil {
		return nil, fmt.Errorf("library: aligning: %w", err)
	}
	return out, nil
}

// Query is one retrieval.
type Query struct {
	// Vector is the canonical query vector (from Vector).
	Vector []float32
	// K is how many experiences to return at most; 0 means 5.
	K int
	// Domain keeps experiences in this domain or below it ("" keeps all).
	Domain string
	// MinConfidence drops experiences below it.
	MinConfidence float64
	// MinRelevance, when set, replaces the calibrated gate.
	MinRelevance *float32
	// IncludeGated keeps the matches below the gate too, marked so (for
	// showing what retrieval would do).
	IncludeGated bool
}

// NoGate is a MinRelevance that lets every match through.
var NoGate = float32(-2)

// rerankDepth is how many candidates are re-ranked exactly for k hits:
// exact, but a 3840-float dot product per candidate, so few.
func rerankDepth(k int) int { return max(8*k, 32) }

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
	if q.MinRelevance != nil {
		return *q.MinRelevance
	}
	if g := l.gate.Load(); g != nil {
		return g.Value
	}
	return l.floorValue
}

// Search returns the best experiences for q that clear the gate (and,
// with IncludeGated, those that do not), best first. Retired experiences
// are never returned.
func (l *Library) Search(ctx context.Context, q Query) ([]Result, error) {
	p := l.prep.Load()
	if p == nil {
		return nil, l.Ready()
	}
	if l.idx.Len() == 0 {
		return nil, ErrEmpty
	}
	if q.K <= 0 {
		q.K = 5
	}
	depth := max(q.K, bgDepth)
	hits, err := l.idx.Search(ctx, gpuidx.Query{
		Vector: q.Vector, K: depth, Domain: store.NormalizeDomain(q.Domain), MinConfidence: float32(q.MinConfidence),
		Rerank: rerankDepth(depth),
	})
	if err != nil {
		return nil, fmt.Errorf("library: search: %w", err)
	}
	ahits, err := p.anchors.Search(ctx, anchorQuery(q.Vector, bgDepth))
	if err != nil {
		return nil, fmt.Errorf("library: search: %w", err)
	}
	bg := background(hits, ahits, "")
	gate := l.GateFor(q)
	hits = hits[:min(q.K, len(hits))]
	ids := make([]string, 0, len(hits))
	byID := make(map[string]gpuidx.Hit, len(hits))
	for _, h := range hits {
		if q.IncludeGated || h.Score-bg >= gate {
			ids = append(ids, h.ID)
			byID[h.ID] = h
		}
	}
	if len(ids) == 0 {
		return nil, nil
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
		h := byID[e.ID]
		rel := h.Score - bg
		out = append(out, Result{Experience: e, Score: h.Score, Relevance: rel, Passed: rel >= gate})
	}
	return out, nil
}

// Add embeds e.Text in the library's space, stores e with its code and
// indexes it. A duplicate (same domain and text) returns the stored record
// and false, without embedding.
func (l *Library) Add(ctx context.Context, e store.Experience) (store.Experience, bool, error) {
	got, created, err := l.AddMany(ctx, []store.Experience{e})
	if err != nil {
		return store.Experience{}, false, err
	}
	return got[0], created[0], nil
}

// AddMany is Add for several experiences, stored in one transaction.
func (l *Library) AddMany(ctx context.Context, es []store.Experience) ([]store.Experience, []bool, error) {
	ids := make([]string, len(es))
	for i, e := range es {
		ids[i] = store.ExperienceID(e.Domain, e.Text)
	}
	have, err := l.store.GetExperiences(ctx, ids)
	if err != nil {
		return nil, nil, err
	}
	known := make(map[string]bool, len(have))
	for _, e := range have {
		known[e.ID] = true
	}
	var texts []string
	var at []int
	for i, e := range es {
		if !known[ids[i]] {
			texts, at = append(texts, e.Text), append(at, i)
		}
	}
	canon := make([][]float32, len(es))
	if len(texts) > 0 {
		vs, err := l.Vectors(ctx, texts)
		if err != nil {
			return nil, nil, err
		}
		for j, i := range at {
			canon[i] = vs[j]
		}
	}
	return l.addVectors(ctx, es, canon)
}

// addVectors stores es with the codes of their canonical vectors (nil for
// those already stored) and indexes the new ones.
func (l *Library) addVectors(ctx context.Context, es []store.Experience, canonical [][]float32) ([]store.Experience, []bool, error) {
	es = append([]store.Experience(nil), es...) // the codes go on copies
	codes := make([]compress.Code, len(es))
	for i := range es {
		if canonical[i] == nil {
			continue
		}
		c, err := compress.Encode(canonical[i])
		if err != nil {
			return nil, nil, fmt.Errorf("library: encode: %w", err)
		}
		b, err := c.MarshalBinary()
		if err != nil {
			return nil, nil, err
		}
		codes[i], es[i].Code, es[i].Space = c, b, l.space.Name
	}
	got, created, err := l.store.PutExperiences(ctx, es)
	if err != nil {
		return nil, nil, err
	}
	for i, e := range got {
		if created[i] && canonical[i] != nil {
			if err := l.idx.Upsert(e.ID, meta(e), codes[i]); err != nil {
				return got, created, fmt.Errorf("library: index: %w", err)
			}
		}
	}
	l.poke()
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
	l.poke()
	return nil
}

// Store returns the underlying store.
func (l *Library) Store() *store.SQLite { return l.store }

// poke wakes the background work (a change may call for calibration).
func (l *Library) poke() {
	select {
	case l.kick <- struct{}{}:
	default:
	}
}

// Background retry bounds for preparing the space.
const (
	prepRetryMin = time.Second
	prepRetryMax = 30 * time.Second
)

// run prepares the space (retrying with backoff), moves stale experiences
// into it, and keeps the gate calibrated, until Close.
func (l *Library) run(ctx context.Context) {
	defer close(l.done)
	wait := prepRetryMin
	warned := false
	for l.Prepare(ctx) != nil {
		if ctx.Err() != nil {
			return
		}
		if !warned {
			l.log.Warn("experience library: embedding space not ready; chats go through without injection until it is",
				"space", l.space.Name, "err", l.Ready().Error())
			warned = true
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		wait = min(2*wait, prepRetryMax)
	}
	l.reembed(ctx)
	tick := time.NewTicker(recalibrateEvery)
	defer tick.Stop()
	for {
		if l.gateStale(time.Now()) {
			if err := l.calibrate(ctx); err != nil && ctx.Err() == nil {
				l.log.Warn("experience library: calibrating the relevance gate failed", "space", l.space.Name, "err", err.Error())
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-l.kick:
		case <-tick.C:
		}
	}
}
