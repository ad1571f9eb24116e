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
	const space = majoritySpace
	var down atomic.Bool
	st, lib := downableLibrary(t, dir, &down)
	state := openTestState(t, dir)
	a := &Admitter{Network: "hanzo", Library: lib, State: state, CannotEmbed: cannotEmbed}

	text := "Close the response body of every HTTP request, even when you do not read it."
	truth := trueCodes(t, text)[0]
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

// A majority code counts authors by their root of trust: three keys one
// node vouches for, publishing the same forged code, are one voice, and
// the experience waits for codes from three independent roots, whose
// majority is the honest code.
func TestMajorityCountsIndependentRoots(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	const space = majoritySpace
	down := atomic.Bool{}
	down.Store(true)
	st, lib := downableLibrary(t, dir, &down)
	text := "Close the response body of every HTTP request, even when you do not read it."
	truth := trueCodes(t, text)[0]
	honest, _ := truth.MarshalBinary()
	forged := truth
	for w := range forged.Bits {
		forged.Bits[w] = ^truth.Bits[w]
	}
	poison, _ := forged.MarshalBinary()
	roots := map[string]string{}
	rec := func(author, root string, code []byte) Record {
		id := testIdentity(t, author)
		roots[authorID(id.Signer.Name(), id.Signer.KeyHash())] = root
		r, err := Sign(id.Signer, Record{Experience: &Experience{Network: "hanzo", Domain: "code.go",
			Text: text, Confidence: 0.8, Space: space, Code: code, Time: t0}})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	a := &Admitter{Network: "hanzo", Library: lib, State: openTestState(t, dir), CannotEmbed: cannotEmbed,
		Root: func(author string) string { return roots[author] }}
	for _, tt := range []struct {
		r    Record
		want string // "" for an error: the record waits
	}{
		{rec("nodeX1", "nodeX", poison), ""},
		{rec("nodeX2", "nodeX", poison), ""},
		{rec("nodeX3", "nodeX", poison), ""}, // three authors, one root
		{rec("nodeA", "nodeA", honest), ""},
		{rec("nodeB", "nodeB", honest), AdmittedByMajority},
	} {
		got, err := a.Admit(ctx, tt.r, true)
		if tt.want == "" {
			if !errors.Is(err, ErrCannotEmbed) {
				t.Fatalf("%s: %q, %v; want it to wait for codes of more roots", tt.r.Author, got, err)
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
	if err := c.UnmarshalBinary(es[0].Code); err != nil || c.Bits != truth.Bits {
		t.Errorf("stored code differs from the honest one by %d bits (%v)", compress.Hamming(&c, &truth), err)
	}
}

// Three colluding roots can agree on a forged code while the library
// cannot embed; once it can, Verify finds the code is no code of the
// text and re-embeds it: the forged code serves no longer. An honest
// majority code is checked and kept.
func TestVerifyRefutesAForgedMajority(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	const space = majoritySpace
	var down atomic.Bool
	_, lib := downableLibrary(t, dir, &down)
	a := &Admitter{Network: "hanzo", Library: lib, State: openTestState(t, dir), CannotEmbed: cannotEmbed}
	forgedText, honestText := "Retry a failed request at once, forever.", "Close the response body of every HTTP request."
	cs := trueCodes(t, forgedText, honestText)
	truths := map[string]compress.Code{forgedText: cs[0], honestText: cs[1]}
	forged := truths[forgedText]
	for w := range forged.Bits {
		forged.Bits[w] = ^forged.Bits[w]
	}
	down.Store(true)
	for i, author := range []string{"nodeX", "nodeY", "nodeZ"} {
		for text, code := range map[string]compress.Code{forgedText: forged, honestText: truths[honestText]} {
			b, _ := code.MarshalBinary()
			r, err := Sign(testIdentity(t, author).Signer, Record{Experience: &Experience{Network: "hanzo", Domain: "code.go",
				Text: text, Confidence: 0.8, Space: space, Code: b, Time: t0}})
			if err != nil {
				t.Fatal(err)
			}
			out, err := a.Admit(ctx, r, true)
			if i < 2 && !errors.Is(err, ErrCannotEmbed) || i == 2 && (err != nil || out != AdmittedByMajority) {
				t.Fatalf("%s, %q: %q, %v", author, text, out, err)
			}
		}
	}
	code := func(text string) compress.Code {
		t.Helper()
		e, err := lib.GetExperience(ctx, store.ExperienceID("code.go", text))
		if err != nil {
			t.Fatal(err)
		}
		c, err := compress.Decode(e.Code)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	if c := code(forgedText); c.Bits != forged.Bits {
		t.Fatal("the forged majority was not stored: the check below proves nothing")
	}
	if v, err := a.Verify(ctx); err != nil || v != (Verified{}) {
		t.Fatalf("Verify while the library cannot embed: %+v, %v; want nothing checked", v, err)
	}
	down.Store(false)
	if v, err := a.Verify(ctx); err != nil || v != (Verified{Checked: 1, Refuted: 1}) {
		t.Fatalf("Verify: %+v, %v; want the honest code checked, the forged one refuted", v, err)
	}
	for text, truth := range truths {
		if c := code(text); c.Bits != truth.Bits {
			t.Errorf("%q: the stored code is %d bits from the library's own", text, compress.Hamming(&c, &truth))
		}
	}
	if v, err := a.Verify(ctx); err != nil || v != (Verified{}) {
		t.Errorf("Verify again: %+v, %v; want nothing left to check", v, err)
	}
	id := store.ExperienceID("code.go", forgedText)
	if !lib.Active(id) {
		t.Error("the re-embedded experience is not active in the index")
	}
}

// majoritySpace is the space of the majority tests' libraries.
const majoritySpace = "hash:256"

// downableLibrary opens a library of majoritySpace over a store in dir,
// whose embedder fails while down is set, prepared while it is up.
func downableLibrary(t *testing.T, dir string, down *atomic.Bool) (*store.SQLite, *library.Library) {
	t.Helper()
	ctx := context.Background()
	st, err := store.OpenDir(ctx, dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	h := providers.NewHashEmbedder(256, 5)
	lib, err := library.New(ctx, library.Config{Store: st, Space: library.Space{Name: majoritySpace,
		Embedder: library.EmbedFunc(func(ctx context.Context, texts []string) ([][]float32, error) {
			if down.Load() {
				return nil, errors.New("connection refused")
			}
			return h.Embed(ctx, texts)
		})}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lib.Close() })
	if !down.Load() {
		if err := lib.Prepare(ctx); err != nil {
			t.Fatal(err)
		}
	}
	return st, lib
}

// trueCodes are the codes of texts in majoritySpace, as the honest
// authors make them: from another library of the space (the one under
// test would keep the vectors in its cache, and check codes while down).
func trueCodes(t *testing.T, texts ...string) []compress.Code {
	t.Helper()
	var up atomic.Bool
	_, other := downableLibrary(t, t.TempDir(), &up)
	out := make([]compress.Code, len(texts))
	for i, text := range texts {
		c, ok, err := other.Code(context.Background(), majoritySpace, text)
		if err != nil || !ok {
			t.Fatalf("code of %q: %v, %v", text, ok, err)
		}
		out[i] = c
	}
	return out
}

// cannotEmbed is the Admitter's CannotEmbed as dso serve sets it.
func cannotEmbed(err error) bool {
	return errors.Is(err, library.ErrEmbed) || errors.Is(err, library.ErrNotReady)
}
