package library

import (
	"context"
	"fmt"

	"github.com/dso-proxy/dso/compress"
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
