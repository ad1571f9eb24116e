package network

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/dso-proxy/dso/compress"
	"github.com/dso-proxy/dso/library"
	"github.com/dso-proxy/dso/providers"
	"github.com/dso-proxy/dso/store"
)

// While the library cannot embed, a trusted experience waits until three
// trusted authors have published codes of it, then enters the library
// with their per-bit majority: one poisoned code among them changes
// nothing, and the code stored is the one the library would have made.
func TestAdmitByMajorityWhileTheLibraryCannotEmbed(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st, err := store.OpenDir(ctx, dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	const space = "hash:256"
	h := providers.NewHashEmbedder(256, 5)
	var down atomic.Bool
	lib, err := library.New(ctx, library.Config{Store: st, Space: library.Space{Name: space,
		Embedder: library.EmbedFunc(func(ctx context.Context, texts []string) ([][]float32, error) {
			if down.Load() {
				return nil, errors.New("connection refused")
			}
			return h.Embed(ctx, texts)
		})}})
	if err != nil {
		t.Fatal(err)
	}
	defer lib.Close()
	if err := lib.Prepare(ctx); err != nil {
		t.Fatal(err)
	}
	state := openTestState(t, dir)
	a := &Admitter{Network: "hanzo", Library: lib, State: state,
		CannotEmbed: func(err error) bool { return errors.Is(err, library.ErrEmbed) || errors.Is(err, library.ErrNotReady) }}

	text := "Close the response body of every HTTP request, even when you do not read it."
	// The honest authors' code: another library of the same space (this
	// one would keep the vector in its cache).
	st2, err := store.OpenDir(ctx, t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st2.Close()
	other, err := library.New(ctx, library.Config{Store: st2, Space: library.Space{Name: space, Embedder: library.EmbedFunc(h.Embed)}})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	truth, ok, err := other.Code(ctx, space, text)
	if err != nil || !ok {
		t.Fatal(err)
	}
	honest, _ := truth.MarshalBinary()
	var forged compress.Code
	for w := range forged.Bits {
		forged.Bits[w] = 0x5555555555555555
	}
	forged.Scale = truth.Scale
	poison, _ := forged.MarshalBinary()
	rec := func(author string, code []byte) Record {
		r, err := Sign(testIdentity(t, author).Signer, Record{Experience: &Experience{Network: "hanzo", Domain: "code.go",
			Text: text, Confidence: 0.8, Space: space, Code: code, Time: t0}})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	down.Store(true)
	for _, tt := range []struct {
		r    Record
		want string // "" for an error: the record waits
	}{
		{rec("nodeA", honest), ""},
		{rec("nodeM", poison), ""},
		{rec("nodeB", honest), AdmittedByMajority},
	} {
		got, err := a.Admit(ctx, tt.r, true)
		if tt.want == "" {
			if !errors.Is(err, ErrCannotEmbed) {
				t.Fatalf("%s: %q, %v; want it to wait for more codes", tt.r.Author, got, err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Fatalf("%s: %q, %v; want %q", tt.r.Author, got, err, tt.want)
		}
	}
	es, err := st.GetExperiences(ctx, []string{store.ExperienceID("code.go", text)})
	if err != nil || len(es) != 1 {
		t.Fatalf("stored: %+v, %v", es, err)
	}
	var c compress.Code
	if err := c.UnmarshalBinary(es[0].Code); err != nil || c.Bits != truth.Bits || es[0].Space != space {
		t.Errorf("stored code in %q differs from the library's own (%v)", es[0].Space, err)
	}
	if got, _ := state.Codes(ctx, ExperienceID("hanzo", "code.go", text), space); len(got) != 0 {
		t.Errorf("%d codes kept after admission", len(got))
	}
}
