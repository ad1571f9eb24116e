package library

import (
	"context"
	"errors"
	"time"

	"github.com/dso-proxy/dso/store"
)

// reembed brings every stored experience into the configured space from the
// text it keeps, a batch at a time. While the library serves an earlier
// space (a move), the new codes are kept as pending codes beside the old
// ones and indexed in the new state; once every experience has one, they
// replace the old codes in one transaction and the library serves the new
// state. Without a move, each batch's new codes replace the old at once and
// join the index. A failed batch is retried after a pause; the work
// resumes at the next start if the process stops.
func (l *Library) reembed(ctx context.Context) {
	next := l.next.Load()
	target := l.cur.Load()
	if next != nil {
		target = next
		if !l.awaitPrepared(ctx, next, "the space being moved to is not ready; the earlier space goes on serving") {
			return
		}
	}
	for ctx.Err() == nil {
		if l.stale.Load() > 0 || next != nil {
			l.log.Info("experience library: re-embedding experiences", "space", target.space.Name, "experiences", l.stale.Load())
		}
		if !l.codeAll(ctx, target, next != nil) {
			return
		}
		if next == nil {
			l.stale.Store(0)
			return
		}
		err := l.commitMove(ctx, next)
		if err == nil {
			return
		}
		if !errors.Is(err, store.ErrIncomplete) {
			l.pause(ctx, err)
		}
		// Experiences added meanwhile: another pass codes them.
	}
}

// codeAll codes, in st's space, every stored experience that has no code
// there yet (as pending codes when pending: then the new state's index,
// which holds every usable pending code, says which are done). It returns
// false when ctx ended first.
func (l *Library) codeAll(ctx context.Context, st *state, pending bool) bool {
	after := ""
	for ctx.Err() == nil {
		page, next, err := l.store.ListExperiences(ctx, store.ListOptions{After: after, Limit: 1000})
		if err != nil {
			l.pause(ctx, err)
			continue
		}
		var todo []store.Experience
		for _, e := range page {
			if len(e.Code) > 0 && e.Space == st.space.Name {
				continue
			}
			if _, _, done := st.idx.Get(e.ID); pending && done {
				continue
			}
			todo = append(todo, e)
		}
		for start := 0; start < len(todo) && ctx.Err() == nil; {
			batch := todo[start:min(start+embedBatch, len(todo))]
			if err := l.codeBatch(ctx, st, batch, pending); err != nil {
				l.pause(ctx, err)
				continue
			}
			l.stale.Add(-int64(len(batch)))
			start += len(batch)
		}
		if next == "" {
			return ctx.Err() == nil
		}
		after = next
	}
	return false
}

// codeBatch embeds batch's texts in st's space and stores the codes (as
// pending codes when pending), then indexes them in st.
func (l *Library) codeBatch(ctx context.Context, st *state, batch []store.Experience, pending bool) error {
	cs, bs, err := l.codesOf(ctx, st, keyedTexts(batch))
	if err != nil {
		return err
	}
	us := make([]store.CodeUpdate, len(batch))
	for i, e := range batch {
		us[i] = store.CodeUpdate{ID: e.ID, Code: bs[i], Space: st.space.Name}
	}
	if pending {
		err = l.store.PutPendingCodes(ctx, us)
	} else {
		err = l.store.SetCodes(ctx, us)
	}
	l.seen.drop(idsOf(batch)...)
	if err != nil {
		return err
	}
	for i, e := range batch {
		if err := l.indexPut(st, e, cs[i]); err != nil {
			return err
		}
	}
	l.poke()
	return nil
}

// commitMove makes the pending codes the stored ones and serves next, with
// no write in between. It fails with store.ErrIncomplete when an
// experience still lacks a code in next's space.
func (l *Library) commitMove(ctx context.Context, next *state) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	err := l.store.CommitPendingCodes(ctx, next.space.Name)
	l.seen.clear()
	if err != nil {
		return err
	}
	old := l.cur.Load()
	l.cur.Store(next)
	l.next.Store(nil)
	l.stale.Store(0)
	// The old space's codes are of no use now; the index the library made
	// for the new space serves until the next start, which loads the new
	// codes into the configured index.
	_ = l.eachIndexed(ctx, func(e store.Experience) error {
		old.idx.Delete(e.ID)
		return nil
	})
	l.log.Info("experience library: moved to the new space", "from", old.space.Name, "to", next.space.Name, "experiences", next.idx.Len())
	l.poke()
	return nil
}

func (l *Library) pause(ctx context.Context, err error) {
	if ctx.Err() != nil {
		return
	}
	l.log.Warn("experience library: re-embedding paused", "err", err.Error())
	t := time.NewTimer(prepRetryMax)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
