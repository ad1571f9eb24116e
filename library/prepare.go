package library

import (
	"context"
	"time"
)

// Ready returns nil when the space served is prepared, else an error
// wrapping ErrNotReady and the last failure.
func (l *Library) Ready() error { return l.cur.Load().ready() }

// Prepare prepares the space served now if it is not yet, waiting for it.
// The background work does the same; Prepare is for callers that would
// rather wait than be told ErrNotReady. An Offline library, which has no
// background work, prepares the space being moved to as well, so that
// what it writes is coded there too (as AddMany does in serve once the
// move has prepared it); where that space cannot be prepared, it warns
// and writes in the served space alone, for the move to re-embed later.
func (l *Library) Prepare(ctx context.Context) error {
	if err := l.prepareState(ctx, l.cur.Load()); err != nil {
		return err
	}
	if next := l.next.Load(); l.cfg.Offline && next != nil {
		if err := l.prepareState(ctx, next); err != nil {
			l.log.Warn("experience library: the space being moved to is not ready; writing in the served space only", "space", next.space.Name, "err", err.Error())
		}
	}
	return nil
}

// prepareTimeout bounds one PrepareInBackground.
const prepareTimeout = time.Minute

// PrepareInBackground starts preparing the space, unless it is ready or
// one such preparation is running already, and returns at once. The work
// keeps ctx's values (a client's credentials for an embedding backend that
// has no key of its own) but not its deadline: a request that finds the
// space not ready goes on uninjected, and a later one finds it ready. A
// request that finds a preparation running has its ctx kept: should that
// one fail, the space is prepared once more with the latest such ctx.
func (l *Library) PrepareInBackground(ctx context.Context) {
	if l.Ready() == nil || l.bg.Err() != nil {
		return
	}
	if !l.trying.CompareAndSwap(false, true) {
		l.again.Store(&ctx)
		return
	}
	l.helpers.Add(1)
	go func() {
		defer l.helpers.Done()
		for {
			l.prepareFor(ctx)
			l.trying.Store(false)
			next := l.again.Swap(nil)
			if next == nil || l.Ready() == nil || l.bg.Err() != nil || !l.trying.CompareAndSwap(false, true) {
				return
			}
			ctx = *next
		}
	}()
}

// prepareFor prepares the space with ctx's values, bounded in time and by
// the library's life.
func (l *Library) prepareFor(ctx context.Context) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), prepareTimeout)
	defer cancel()
	stop := context.AfterFunc(l.bg, cancel)
	defer stop()
	_ = l.Prepare(ctx)
}

// Background retry bounds for preparing a space.
const (
	prepRetryMin = time.Second
	prepRetryMax = 30 * time.Second
)

// awaitPrepared prepares st, retrying with backoff and saying once at warn
// level that it cannot, until it is prepared or ctx is done.
func (l *Library) awaitPrepared(ctx context.Context, st *state, what string) bool {
	wait := prepRetryMin
	warned := false
	for l.prepareState(ctx, st) != nil {
		if ctx.Err() != nil {
			return false
		}
		if !warned {
			l.log.Warn("experience library: "+what, "space", st.space.Name, "err", st.ready().Error())
			warned = true
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return false
		case <-t.C:
		}
		wait = min(2*wait, prepRetryMax)
	}
	return true
}
