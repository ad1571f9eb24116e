// Package library is the experience library as retrieval sees it: it lives
// in one embedding space, embeds texts in it (with a cache), maps the
// vectors into the canonical space, encodes them as BitDelta codes, keeps
// the search index in step with the store (and between runs in a snapshot
// beside it), judges which matches are
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
	"slices"
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
	// ErrEmbed: the space's embedder failed (or gave no usable vector).
	ErrEmbed = errors.New("library: embedding failed")
	// ErrOffline: an Offline library holds no index to search.
	ErrOffline = errors.New("library: offline: no index to search")
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

// recentSize is how many experiences searches keep to skip the store.
const recentSize = 4096

// Config configures a Library.
type Config struct {
	// Store holds the records. Required.
	Store Store
	// Space is the library's embedding space. Required.
	Space Space
	// Previous, when set, gives the embedder of an earlier space the
	// stored codes were made in (false when it has none). A library whose
	// codes are in such a space goes on serving them, with questions
	// embedded there, while it re-embeds every text into Space; then it
	// moves to Space in one step. Without it, experiences join Space's
	// index one by one as they are re-embedded.
	Previous func(name string) (Space, bool)
	// Index is searched (CPU or GPU backend); nil means a new CPU index
	// with default settings. The library does not close it.
	Index gpuidx.Index
	// NewIndex makes the index for the space a library moves to while
	// Index serves the old one; nil means a CPU index. The library closes
	// the one it made.
	NewIndex func() (gpuidx.Index, error)
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
	// Snapshot, when set, is the file that keeps the index between runs
	// (see SnapshotFile): New loads it, when the store vouches for it, in
	// place of reading every stored experience, and Close writes it. ""
	// means none. It needs a store that is a ChangeFinder and a
	// SpaceCounter (store.SQLite); with another it is not used.
	Snapshot string
	// Offline opens the library for a command that writes and exits (dso
	// import). It embeds and stores what it is given, in the spaces dso
	// serve would (the one it moves to as well), but holds no index: it
	// reads no stored code at start, indexes nothing it writes (a running
	// serve picks the writes up from the change log, a later one from the
	// store) and its Search fails with ErrOffline. Nor does it calibrate
	// the relevance gate or move experiences between spaces. All of that
	// is serve's work, and would only slow the writes and hold a large
	// store's codes in memory.
	Offline bool
}

// Library ties embedding, alignment, encoding, index and store together.
// It is safe for concurrent use. Its space is prepared in the background
// (New does not wait for the embedder); Ready says when it can serve.
type Library struct {
	cfg   Config
	store Store
	lift  *align.Lift
	cache *lru.Cache[string, []float32]
	seen  *recent // experiences searches returned, kept until they change
	log   *slog.Logger

	// mu is held for reading by every write (store and indexes), and for
	// writing by the move to a new space, so that no write lands between
	// the old state and the new.
	mu    sync.RWMutex
	cur   atomic.Pointer[state] // the state served
	next  atomic.Pointer[state] // the state being built for Space; nil when none
	owned gpuidx.Index          // an index the library made, closed by Close
	stale atomic.Int64          // stored experiences without a code in Space yet

	follow follower // see Follow

	kick    chan struct{}
	bg      context.Context // the background work's; done at Close
	cancel  context.CancelFunc
	done    chan struct{}
	helpers sync.WaitGroup // PrepareInBackground's goroutines
	trying  atomic.Bool    // a PrepareInBackground is running
	// again is the context of a request that found one running: should
	// that one fail (say, without the credentials this one brings), the
	// space is prepared again with it.
	again atomic.Pointer[context.Context]
}

// New builds a Library, fills the index from the store, and starts
// preparing the space in the background: embedding the anchors, taking the
// space's centre, calibrating the gate, and re-embedding experiences whose
// codes are from another space. Call Close to stop that work.
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
	if cfg.NewIndex == nil {
		cfg.NewIndex = func() (gpuidx.Index, error) { return gpuidx.NewCPU(gpuidx.CPUConfig{}), nil }
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
		cfg:   cfg,
		store: cfg.Store,
		lift:  align.NewLift(cfg.Seed),
		seen:  newRecent(recentSize),
		log:   cfg.Logger,
		kick:  make(chan struct{}, 1),
		done:  make(chan struct{}),
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
	if err := l.fill(ctx, from); err != nil {
		if l.owned != nil {
			l.owned.Close()
		}
		return nil, fmt.Errorf("library: rebuilding the index: %w", err)
	}
	l.bg, l.cancel = context.WithCancel(context.WithoutCancel(ctx))
	if cfg.Offline {
		close(l.done)
	} else {
		go l.run(l.bg)
	}
	return l, nil
}

// fill fills the index: from the snapshot where there is one the store
// vouches for, else from the store. When the stored codes are mostly of an
// earlier space that Previous can still embed in, that space is served
// while a second index is built for Space. from is where the change log
// stood before.
func (l *Library) fill(ctx context.Context, from int64) error {
	counts, err := l.countSpaces(ctx)
	if err != nil {
		return err
	}
	if prev, moving := l.moveFrom(counts); moving {
		return l.rebuildMoving(ctx, counts, prev)
	}
	target := newState(l.cfg.Space, l.cfg.Adapter, l.cfg.Index)
	l.cur.Store(target)
	l.stale.Store(int64(sumExcept(counts, l.cfg.Space.Name)))
	if l.cfg.Offline {
		return nil
	}
	if ok, err := l.restore(ctx, target, counts, from); ok || err != nil {
		return err
	}
	target.idx.Reserve(target.idx.Len() + counts[l.cfg.Space.Name])
	return l.eachIndexed(ctx, target.index)
}

// countSpaces counts the stored experiences by the space of their code
// ("" for none): from the store where it can (a SpaceCounter), else
// reading them all.
func (l *Library) countSpaces(ctx context.Context) (map[string]int, error) {
	if sc, ok := l.store.(SpaceCounter); ok {
		return sc.CountSpaces(ctx)
	}
	counts := map[string]int{}
	err := l.store.EachExperience(ctx, func(e store.Experience) error {
		if len(e.Code) > 0 {
			counts[e.Space]++
		} else {
			counts[""]++
		}
		return nil
	})
	return counts, err
}

// moveFrom returns the earlier space to serve while moving to Space: the
// one most codes are in, when they are more than Space's and Previous can
// embed there.
func (l *Library) moveFrom(counts map[string]int) (Space, bool) {
	old, most := "", 0
	for sp, n := range counts {
		if sp != "" && sp != l.cfg.Space.Name && n > most {
			old, most = sp, n
		}
	}
	if most <= counts[l.cfg.Space.Name] || l.cfg.Previous == nil {
		return Space{}, false
	}
	return l.cfg.Previous(old)
}

// rebuildMoving serves prev's codes from the configured index and builds
// a second index for Space, from the store.
func (l *Library) rebuildMoving(ctx context.Context, counts map[string]int, prev Space) error {
	target := newState(l.cfg.Space, l.cfg.Adapter, l.cfg.Index)
	if l.cfg.Offline {
		// Both spaces, to code what is written in each; neither indexed.
		l.cur.Store(newState(prev, nil, l.cfg.Index))
		l.next.Store(target)
		return nil
	}
	idx, err := l.cfg.NewIndex()
	if err != nil {
		return err
	}
	l.owned = idx
	target.idx = idx
	serving := newState(prev, nil, l.cfg.Index)
	l.cur.Store(serving)
	l.next.Store(target)
	serving.idx.Reserve(serving.idx.Len() + counts[prev.Name])
	target.idx.Reserve(target.idx.Len() + sumExcept(counts, "")) // every coded experience, once re-embedded
	// Codes already made for the move, indexed with their rows' meta in
	// the one walk below; an undecodable one is left out, and so made again.
	pendingCodes := map[string]compress.Code{}
	err = l.store.PendingCodes(ctx, target.space.Name, func(id string, code []byte) error {
		if c, err := compress.Decode(code); err == nil {
			pendingCodes[id] = c
		}
		return nil
	})
	if err != nil {
		return err
	}
	pending := 0
	err = l.eachIndexed(ctx, func(e store.Experience) error {
		if err := serving.index(e); err != nil {
			return err
		}
		if c, ok := pendingCodes[e.ID]; ok {
			pending++
			return target.idx.Upsert(e.ID, meta(e), c)
		}
		return target.index(e)
	})
	if err != nil {
		return err
	}
	l.stale.Store(int64(max(0, sumExcept(counts, l.cfg.Space.Name)-pending)))
	l.log.Info("experience library: serving the codes of the earlier space while moving to the new one",
		"from", prev.Name, "to", target.space.Name, "experiences", serving.idx.Len(), "to_reembed", l.stale.Load())
	return nil
}

func sumExcept(counts map[string]int, skip string) int {
	n := 0
	for sp, c := range counts {
		if sp != skip {
			n += c
		}
	}
	return n
}

// Close stops the background work, writes the index snapshot (see
// Config.Snapshot) and closes the index the library made for a move, if
// any. It does not close the store or the configured index.
func (l *Library) Close() error {
	l.cancel()
	<-l.done
	l.helpers.Wait()
	err := l.saveSnapshot(context.Background())
	if err != nil {
		l.log.Warn("experience library: the index snapshot was not written; the next start reads the index from the store", "err", err.Error())
	}
	if l.owned != nil {
		err = errors.Join(err, l.owned.Close()) // made here, served or not
	}
	return err
}

// Seed returns the lift's seed.
func (l *Library) Seed() uint64 { return l.cfg.Seed }

// Space returns the embedding space the library serves now.
func (l *Library) Space() Space { return l.cur.Load().space }

// Moving returns the space the library is moving to while it serves an
// earlier one, or "".
func (l *Library) Moving() string {
	if st := l.next.Load(); st != nil {
		return st.space.Name
	}
	return ""
}

// IndexBytes is the memory the library's indexes hold: the one served,
// the one being built during a move, and the anchors'.
func (l *Library) IndexBytes() int64 {
	var n int64
	var seen []gpuidx.Index
	for _, st := range l.states() {
		if !slices.Contains(seen, st.idx) {
			seen = append(seen, st.idx)
			n += st.idx.Bytes()
		}
		if p := st.prep.Load(); p != nil {
			n += p.anchors.Bytes()
		}
	}
	return n
}

// Len is the number of experiences indexed in the space served.
func (l *Library) Len() int { return l.cur.Load().idx.Len() }

// Active reports whether experience id is in the index and not retired:
// a note retrieval may still inject.
func (l *Library) Active(id string) bool {
	m, _, ok := l.cur.Load().idx.Get(id)
	return ok && !m.Retired
}

// Stale is the number of stored experiences not yet coded in the
// configured space (they are being re-embedded).
func (l *Library) Stale() int { return int(l.stale.Load()) }

func meta(e store.Experience) gpuidx.Meta {
	return gpuidx.Meta{Domain: e.Domain, Confidence: float32(e.Confidence), Retired: e.Status == store.StatusRetired}
}

func (l *Library) cached(st *state, text string) ([]float32, bool) {
	if l.cache == nil {
		return nil, false
	}
	return l.cache.Get(st.space.Name + "\x00" + text)
}

func (l *Library) remember(st *state, text string, v []float32) {
	if l.cache != nil {
		l.cache.Add(st.space.Name+"\x00"+text, v)
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
	if err := checkTexts(texts); err != nil {
		return nil, err
	}
	return l.vectors(ctx, l.cur.Load(), texts)
}

func checkTexts(texts []string) error {
	for _, t := range texts {
		if strings.TrimSpace(t) == "" {
			return ErrNoText
		}
	}
	return nil
}

// Embed embeds texts in the library's space (the first half of Vectors),
// preparing the space first if it is not yet.
func (l *Library) Embed(ctx context.Context, texts ...string) ([][]float32, error) {
	if err := checkTexts(texts); err != nil {
		return nil, err
	}
	st := l.cur.Load()
	if err := l.prepareState(ctx, st); err != nil {
		return nil, err
	}
	return l.embedAll(ctx, st, texts)
}

// Align maps a vector of the library's space into the canonical space
// (the second half of Vectors).
func (l *Library) Align(v []float32) ([]float32, error) { return alignIn(l.cur.Load(), v) }

// Store returns the underlying store.
func (l *Library) Store() Store { return l.store }

// poke wakes the background work (a change may call for calibration).
func (l *Library) poke() {
	select {
	case l.kick <- struct{}{}:
	default:
	}
}

// run prepares the space served, moves stale experiences into the
// configured space, and keeps the gate calibrated, until Close.
func (l *Library) run(ctx context.Context) {
	defer close(l.done)
	if !l.awaitPrepared(ctx, l.cur.Load(), "embedding space not ready; chats go through without injection until it is") {
		return
	}
	l.reembed(ctx)
	tick := time.NewTicker(recalibrateEvery)
	defer tick.Stop()
	failing := false
	for {
		if st := l.cur.Load(); gateStale(st, time.Now()) {
			err := l.calibrate(ctx, st)
			switch {
			case err != nil && ctx.Err() == nil && !failing:
				l.log.Warn("experience library: calibrating the relevance gate failed; the last gate stays", "space", st.space.Name, "err", err.Error())
				failing = true
			case err == nil:
				failing = false
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
