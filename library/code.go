package library

import (
	"context"
	"errors"
	"fmt"

	"github.com/dso-proxy/dso/compress"
	"github.com/dso-proxy/dso/store"
)

// Code returns the library's code of text when space names the space the
// library serves now, and false, without embedding, when it does not: what
// Add stores for an experience of that text with no key. Network admission
// compares it with the code a record carries.
func (l *Library) Code(ctx context.Context, space, text string) (compress.Code, bool, error) {
	st := l.cur.Load()
	if space != st.space.Name {
		return compress.Code{}, false, nil
	}
	if err := checkTexts([]string{text}); err != nil {
		return compress.Code{}, false, err
	}
	vs, err := l.vectors(ctx, st, []string{text})
	if err != nil {
		return compress.Code{}, false, err
	}
	c, err := compress.Encode(vs[0])
	if err != nil {
		return compress.Code{}, false, fmt.Errorf("library: encode: %w", err)
	}
	return c, true, nil
}

// ErrSpace: a code is of another space than the one the library serves.
var ErrSpace = errors.New("library: code of another space")

// AddCoded stores e with code, a code of its text in space, and indexes
// it, without embedding: for an experience whose code the library takes
// from elsewhere (the per-bit majority of the codes several network nodes
// published) while it cannot embed. space must be the one the library
// serves now (ErrSpace if not), and e must have no key (its code would be
// of the keyed text). A duplicate returns the stored record and false.
// While the library moves to a new space, the move re-embeds it.
func (l *Library) AddCoded(ctx context.Context, e store.Experience, space string, code compress.Code) (store.Experience, bool, error) {
	if err := checkTexts([]string{e.Text}); err != nil {
		return store.Experience{}, false, err
	}
	if e.Key != "" {
		return store.Experience{}, false, fmt.Errorf("library: add coded: %w: a keyed experience's code is of its question too", ErrSpace)
	}
	l.mu.RLock()
	defer l.mu.RUnlock()
	cur := l.cur.Load()
	if space != cur.space.Name {
		return store.Experience{}, false, fmt.Errorf("%w: %s, serving %s", ErrSpace, space, cur.space.Name)
	}
	b, err := code.MarshalBinary()
	if err != nil {
		return store.Experience{}, false, fmt.Errorf("library: add coded: %w", err)
	}
	e.Code, e.Space = b, space
	got, created, err := l.store.PutExperiences(ctx, []store.Experience{e})
	if err != nil {
		return store.Experience{}, false, err
	}
	l.seen.drop(got[0].ID)
	if created[0] {
		if err := l.indexPut(cur, got[0], code); err != nil {
			return got[0], true, fmt.Errorf("library: index: %w", err)
		}
	}
	l.poke()
	return got[0], created[0], nil
}
