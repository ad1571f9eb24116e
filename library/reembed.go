package library

import (
	"context"
	"time"

	"github.com/dso-proxy/dso/compress"
	"github.com/dso-proxy/dso/store"
)

// reembed moves every stored experience whose code is missing or from
// another embedding space into the library's space, from the text it
// keeps, a batch at a time, indexing each batch as it is stored. A failed
// batch is retried after a pause; the work resumes at the next start if
// the process stops.
func (l *Library) reembed(ctx context.Context) {
	if l.stale.Load() == 0 {
		return
	}
	l.log.Info("experience library: re-embedding experiences into the library's space", "space", l.space.Name, "experiences", l.stale.Load())
	after := ""
	for ctx.Err() == nil {
		page, next, err := l.store.ListExperiences(ctx, store.ListOptions{After: after, Limit: 1000})
		if err != nil {
			l.pause(ctx, err)
			continue
		}
		var stale []store.Experience
		for _, e := range page {
			if len(e.Code) == 0 || e.Space != l.space.Name {
				stale = append(stale, e)
			}
		}
		for start := 0; start < len(stale) && ctx.Err() == nil; {
			batch := stale[start:min(start+embedBatch, len(stale))]
			if err := l.reembedBatch(ctx, batch); err != nil {
				l.pause(ctx, err)
				continue
			}
			l.stale.Add(-int64(len(batch)))
			start += len(batch)
		}
		if next == "" {
			break
		}
		after = next
	}
	if ctx.Err() == nil {
		l.stale.Store(0)
		l.log.Info("experience library: re-embedding done", "space", l.space.Name, "experiences", l.idx.Len())
	}
}

func (l *Library) reembedBatch(ctx context.Context, batch []store.Experience) error {
	texts := make([]string, len(batch))
	for i, e := range batch {
		texts[i] = e.Text
	}
	vs, err := l.Vectors(ctx, texts)
	if err != nil {
		return err
	}
	us := make([]store.CodeUpdate, len(batch))
	codes := make([]compress.Code, len(batch))
	for i, e := range batch {
		c, err := compress.Encode(vs[i])
		if err != nil {
			return err
		}
		b, err := c.MarshalBinary()
		if err != nil {
			return err
		}
		codes[i], us[i] = c, store.CodeUpdate{ID: e.ID, Code: b, Space: l.space.Name}
	}
	if err := l.store.SetCodes(ctx, us); err != nil {
		return err
	}
	for i, e := range batch {
		if err := l.idx.Upsert(e.ID, meta(e), codes[i]); err != nil {
			return err
		}
	}
	l.poke()
	return nil
}

func (l *Library) pause(ctx context.Context, err error) {
	if ctx.Err() != nil {
		return
	}
	l.log.Warn("experience library: re-embedding paused", "space", l.space.Name, "err", err.Error())
	t := time.NewTimer(prepRetryMax)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
