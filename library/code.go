package library

import (
	"context"
	"fmt"

	"github.com/dso-proxy/dso/compress"
)

// Code returns the code the library gives text now, and the name of the
// space it is in: what Add stores for an experience of that text with no
// key. Network admission compares it with the code a record carries.
func (l *Library) Code(ctx context.Context, text string) (string, compress.Code, error) {
	if err := checkTexts([]string{text}); err != nil {
		return "", compress.Code{}, err
	}
	st := l.cur.Load()
	vs, err := l.vectors(ctx, st, []string{text})
	if err != nil {
		return "", compress.Code{}, err
	}
	c, err := compress.Encode(vs[0])
	if err != nil {
		return "", compress.Code{}, fmt.Errorf("library: encode: %w", err)
	}
	return st.space.Name, c, nil
}
