package library

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dso-proxy/dso/compress"
	"github.com/dso-proxy/dso/store"
)

// Follow tuning.
const (
	// followBatch is how many change log rows one store read takes.
	followBatch = 1000
	// followMaxBatches bounds the work of one poll, so a burst of writes
	// (a large import) is applied over several ticks instead of holding
	// the poll, and its cancellation, for the whole burst.
	followMaxBatches = 16
	// pruneEvery is how many polls pass between prunes of the change log:
	// with a 1s interval, once a minute.
	pruneEvery = 60
)

// errUnindexable marks a record the follower could not index (a code that
// does not decode, an index that refuses it). Such a record is removed
// from the index and skipped: reading it again would not help, and it must
// not hold up the changes behind it.
var errUnindexable = errors.New("library: record not indexable")

// follower is the state Follow keeps in a Library.
type follower struct {
	mu  sync.Mutex // protects following fields; held for a whole poll
	seq int64      // last change log seq applied to the index
	err error      // outcome of the last poll

	// away is whether the last poll found the store unreachable
	// (store.ErrUnavailable): read on every request, so not behind mu,
	// which a poll holds while it waits on the store.
	away atomic.Bool
}

// Follow keeps the index in step with writes that other processes (dso
// import, dso learn, another serve or replica) make to the store: at once
// and then once per interval every (or as soon as a change is logged, with
// a store that is a ChangeWaiter), it reads the store's change log from where the
// index stands and re-syncs each experience named there. It starts from the log position taken
// before New rebuilt the index, so nothing written since is missed. It
// also prunes the change log now and then (see store.PruneChanges).
//
// Follow blocks until ctx is done; run it in a goroutine and cancel ctx to
// stop it. A poll that fails leaves the position where it was and is
// retried at the next tick; FollowErr reports the last poll's outcome. A
// record that cannot be indexed is dropped from the index and skipped.
// Writes made through this Library are in the log too; re-applying them
// is harmless. every must be positive.
func (l *Library) Follow(ctx context.Context, every time.Duration) {
	if every <= 0 {
		panic(fmt.Sprintf("library: Follow interval %v is not positive", every))
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for n := 0; ctx.Err() == nil; n++ {
		err := l.poll(ctx)
		if n%pruneEvery == 0 && ctx.Err() == nil {
			if _, perr := l.store.PruneChanges(ctx, store.DefaultKeepChanges); perr != nil {
				err = errors.Join(err, fmt.Errorf("library: follow: %w", perr))
			}
		}
		if ctx.Err() != nil {
			return // a poll cut short by the stop is no failure worth keeping
		}
		l.follow.mu.Lock()
		l.follow.err = err
		l.follow.away.Store(errors.Is(err, store.ErrUnavailable))
		seq := l.follow.seq
		l.follow.mu.Unlock()
		l.awaitChange(ctx, t.C, seq, every, err != nil)
	}
}

// awaitChange waits for the next poll: until the store says a change was
// logged after seq, where it can (a ChangeWaiter), else until the tick.
// After a failed poll, or when the wait itself fails (the store is down),
// it waits for the tick, so a store that is away is not asked in a loop.
func (l *Library) awaitChange(ctx context.Context, tick <-chan time.Time, seq int64, every time.Duration, failed bool) {
	if w, ok := l.store.(ChangeWaiter); ok && !failed {
		_, err := w.WaitChanges(ctx, seq, every)
		if err == nil {
			return
		}
		if errors.Is(err, store.ErrUnavailable) && ctx.Err() == nil {
			l.follow.away.Store(true) // said now, not after the tick's poll
		}
	}
	select {
	case <-ctx.Done():
	case <-tick:
	}
}

// StoreAway reports whether Follow's last poll found the store
// unreachable: what it serves may be stale, and what is written to the
// store fails, until a poll succeeds. It never waits.
func (l *Library) StoreAway() bool { return l.follow.away.Load() }

// FollowErr returns the error of Follow's last poll, nil when it
// succeeded or Follow has not run.
func (l *Library) FollowErr() error {
	l.follow.mu.Lock()
	defer l.follow.mu.Unlock()
	return l.follow.err
}

// poll applies the changes logged since the last poll, up to
// followMaxBatches pages of them.
func (l *Library) poll(ctx context.Context) error {
	l.follow.mu.Lock()
	defer l.follow.mu.Unlock()
	var skipped []error
	for range followMaxBatches {
		ids, last, err := l.store.Changes(ctx, l.follow.seq, followBatch)
		switch {
		case errors.Is(err, store.ErrChangesPruned):
			err = l.resync(ctx)
		case err != nil:
			err = fmt.Errorf("library: follow: %w", err)
		case len(ids) == 0:
			return errors.Join(skipped...)
		default:
			if err = l.sync(ctx, ids); err == nil || errors.Is(err, errUnindexable) {
				l.follow.seq = last
			}
		}
		if err != nil {
			if !errors.Is(err, errUnindexable) {
				// The position stays where it was; the next tick retries.
				return errors.Join(append(skipped, err)...)
			}
			skipped = append(skipped, err)
		}
	}
	l.poke() // the gate may need calibrating again
	return errors.Join(skipped...)
}

// resync brings the whole index up to date after the change log was pruned
// past the follower's position, and moves the position to the log's end
// as it was before the walk. Every stored experience is re-applied; an
// experience deleted in the pruned stretch stays in the index, but Search
// loads records from the store and drops it there. A store failure leaves
// the position alone; records that could not be indexed are reported as
// by sync. Called with follow.mu held.
func (l *Library) resync(ctx context.Context) error {
	from, err := l.store.LastChange(ctx)
	if err != nil {
		return fmt.Errorf("library: follow: %w", err)
	}
	l.seen.clear() // what was missed includes deletions apply never sees
	var skipped []error
	err = l.store.EachExperience(ctx, func(e store.Experience) error {
		if err := l.apply(e.ID, e, true); err != nil {
			skipped = append(skipped, err)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("library: follow: resync: %w", err)
	}
	l.follow.seq = from
	return errors.Join(skipped...)
}

// sync re-syncs the index with the store for each id: a missing
// experience, or one without a code, leaves the index; one with a code is
// indexed, or re-indexed when its meta or code changed. A store failure
// changes nothing and is returned as is; records that could not be indexed
// are reported by an error wrapping errUnindexable, after the rest were
// applied.
func (l *Library) sync(ctx context.Context, ids []string) error {
	es, err := l.store.GetExperiences(ctx, ids)
	if err != nil {
		return fmt.Errorf("library: sync: %w", err)
	}
	byID := make(map[string]store.Experience, len(es))
	for _, e := range es {
		byID[e.ID] = e
	}
	var skipped []error
	for _, id := range ids {
		e, ok := byID[id]
		if err := l.apply(id, e, ok); err != nil {
			skipped = append(skipped, err)
		}
	}
	return errors.Join(skipped...)
}

// apply makes the index entries for id match e (stored says whether e
// exists): in the state served, and during a move in the state being
// built, each holds e only when e's code is of its space (another process
// may have written it with another embedder).
func (l *Library) apply(id string, e store.Experience, stored bool) error {
	l.mu.RLock()
	defer l.mu.RUnlock()
	l.seen.drop(id)
	var errs []error
	for i, st := range l.states() {
		if i > 0 && stored && e.Space != st.space.Name {
			// Its code in the space being built, if any, is a pending
			// one: keep it, with e's meta.
			if m, c, ok := st.idx.Get(id); ok && m != meta(e) {
				if err := st.idx.Upsert(id, meta(e), c); err != nil {
					errs = append(errs, err)
				}
			}
			continue
		}
		if err := applyTo(st, id, e, stored); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func applyTo(st *state, id string, e store.Experience, stored bool) error {
	if !stored || len(e.Code) == 0 || e.Space != st.space.Name {
		st.idx.Delete(id)
		return nil
	}
	c, err := compress.Decode(e.Code)
	if err != nil {
		st.idx.Delete(id)
		return fmt.Errorf("%w: experience %.16s: %w", errUnindexable, id, err)
	}
	m := meta(e)
	if om, oc, ok := st.idx.Get(id); ok && om == m && oc == c {
		return nil
	}
	if err := st.idx.Upsert(id, m, c); err != nil {
		st.idx.Delete(id)
		return fmt.Errorf("%w: experience %.16s: %w", errUnindexable, id, err)
	}
	return nil
}
