package library

import (
	"context"
	"fmt"

	"github.com/dso-proxy/dso/compress"
	"github.com/dso-proxy/dso/store"
)

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
// While the library moves to a new space, new experiences are coded in
// both: the old space's code serves now, the new one after the move.
func (l *Library) AddMany(ctx context.Context, es []store.Experience) ([]store.Experience, []bool, error) {
	if err := checkTexts(textsOf(es)); err != nil {
		return nil, nil, err
	}
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
	var fresh []int
	for i := range es {
		if !known[ids[i]] {
			fresh = append(fresh, i)
		}
	}
	l.mu.RLock()
	defer l.mu.RUnlock()
	cur, next := l.cur.Load(), l.next.Load()
	texts := make([]string, len(fresh))
	for j, i := range fresh {
		texts[j] = KeyedText(es[i])
	}
	es = append([]store.Experience(nil), es...) // the codes go on copies
	var curCodes []compress.Code
	if len(fresh) > 0 {
		var bs [][]byte
		if curCodes, bs, err = l.codesOf(ctx, cur, texts); err != nil {
			return nil, nil, err
		}
		for j, i := range fresh {
			es[i].Code, es[i].Space = bs[j], cur.space.Name
		}
	}
	got, created, err := l.store.PutExperiences(ctx, es)
	if err != nil {
		return nil, nil, err
	}
	l.seen.drop(ids...)
	for j, i := range fresh {
		if created[i] {
			if err := l.indexPut(cur, got[i], curCodes[j]); err != nil {
				return got, created, fmt.Errorf("library: index: %w", err)
			}
		}
	}
	if next != nil && len(fresh) > 0 {
		// Best effort: what is not coded in the new space now is
		// re-embedded by the move before it completes.
		if err := l.codeForNext(ctx, next, got, created, fresh); err != nil {
			l.log.Warn("experience library: coding new experiences in the space being moved to", "space", next.space.Name, "err", err.Error())
		}
	}
	l.poke()
	return got, created, nil
}

func idsOf(es []store.Experience) []string {
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = e.ID
	}
	return out
}

// KeyedText is what an experience is embedded as: its text, after the
// question it was learned from when it has one (store.Experience.Key), so
// that one code answers to both.
func KeyedText(e store.Experience) string {
	if k := store.NormalizeText(e.Key); k != "" {
		return k + "\n" + store.NormalizeText(e.Text)
	}
	return e.Text
}

func keyedTexts(es []store.Experience) []string {
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = KeyedText(e)
	}
	return out
}

func textsOf(es []store.Experience) []string {
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = e.Text
	}
	return out
}

// codeForNext codes the created experiences among got[fresh] in the space
// being moved to, as pending codes, and indexes them there.
func (l *Library) codeForNext(ctx context.Context, next *state, got []store.Experience, created []bool, fresh []int) error {
	var batch []store.Experience
	for _, i := range fresh {
		if created[i] {
			batch = append(batch, got[i])
		}
	}
	if len(batch) == 0 || next.ready() != nil {
		return nil
	}
	return l.codeBatch(ctx, next, batch, true)
}

// Update changes an experience's confidence or status in the store and
// the indexes.
func (l *Library) Update(ctx context.Context, id string, u store.Update) (store.Experience, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	e, err := l.store.UpdateExperience(ctx, id, u)
	l.seen.drop(id) // even on an error: the store may have changed
	if err != nil {
		return e, err
	}
	for _, st := range l.states() {
		if m, c, ok := st.idx.Get(id); ok {
			if nm := meta(e); nm != m {
				if err := st.idx.Upsert(id, nm, c); err != nil {
					return e, err
				}
			}
		}
	}
	return e, nil
}

// GetExperience returns the stored experience id; store.ErrNotFound when
// there is none.
func (l *Library) GetExperience(ctx context.Context, id string) (store.Experience, error) {
	es, err := l.store.GetExperiences(ctx, []string{id})
	if err != nil {
		return store.Experience{}, err
	}
	if len(es) == 0 {
		return store.Experience{}, fmt.Errorf("experience %s: %w", id, store.ErrNotFound)
	}
	return es[0], nil
}

// Delete removes an experience from the store and the indexes.
func (l *Library) Delete(ctx context.Context, id string) error {
	l.mu.RLock()
	defer l.mu.RUnlock()
	err := l.store.DeleteExperience(ctx, id)
	l.seen.drop(id)
	if err != nil {
		return err
	}
	for _, st := range l.states() {
		st.idx.Delete(id)
	}
	l.poke()
	return nil
}

// states returns the state served and, during a move, the one being built.
func (l *Library) states() []*state {
	if next := l.next.Load(); next != nil {
		return []*state{l.cur.Load(), next}
	}
	return []*state{l.cur.Load()}
}
