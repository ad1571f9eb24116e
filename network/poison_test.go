package network

import (
	"context"
	"testing"

	"github.com/dso-proxy/dso/compress"
	"github.com/dso-proxy/dso/library"
	"github.com/dso-proxy/dso/providers"
	"github.com/dso-proxy/dso/store"
)

// Code makes fakeLibrary a Library whose space no record names: codes
// are never compared.
func (l *fakeLibrary) Code(context.Context, string, string) (compress.Code, bool, error) {
	return compress.Code{}, false, nil
}

// An experience whose code, in the receiving library's space, is not its
// text's (the code of another text, or no code at all) is refused and
// counted as PoisonedCode, trusted author or not; its own code, or a code
// of another space, is not held against it.
func TestAdmitRefusesPoisonedCode(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st, err := store.OpenDir(ctx, dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	const space = "hash:256"
	lib, err := library.New(ctx, library.Config{Store: st,
		Space: library.Space{Name: space, Embedder: library.EmbedFunc(providers.NewHashEmbedder(256, 5).Embed)}})
	if err != nil {
		t.Fatal(err)
	}
	defer lib.Close()
	state := openTestState(t, dir)
	a := &Admitter{Network: "hanzo", Library: lib, State: state}

	codeOf := func(text string) ([]byte, compress.Code) {
		c, ok, err := lib.Code(ctx, space, text)
		if err != nil || !ok {
			t.Fatalf("Code(%q, %q): %v, %v", space, text, ok, err)
		}
		if _, ok, err := lib.Code(ctx, "hash:2048", text); ok || err != nil {
			t.Fatalf("Code in another space: %v, %v; want false", ok, err)
		}
		b, err := c.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		return b, c
	}
	honest := "Close the response body of every HTTP request, even when you do not read it."
	other := "The best time to plant tulip bulbs is in the autumn, before the ground freezes."
	honestCode, hc := codeOf(honest)
	otherCode, oc := codeOf(other)
	if d := compress.Hamming(&hc, &oc); d <= MaxCodeDistance {
		t.Fatalf("unrelated texts' codes %d bits apart, within MaxCodeDistance %d: the test proves nothing", d, MaxCodeDistance)
	}
	rec := func(text, space string, code []byte) Record {
		return Record{Author: "nodeX", Experience: &Experience{Network: "hanzo", Domain: "code.go", Text: text,
			Confidence: 0.8, Space: space, Code: code, Time: t0}}
	}
	for _, tt := range []struct {
		name    string
		r       Record
		trusted bool
		want    string
	}{
		{"its own code", rec(honest, space, honestCode), true, Admitted},
		{"another text's code", rec("Always wrap errors with the operation that failed.", space, otherCode), true, PoisonedCode},
		{"another text's code, untrusted", rec("Never log a request's API key.", space, otherCode), false, PoisonedCode},
		{"not a code", rec("Prefer table-driven tests in Go.", space, []byte("not a bitdelta code")), true, PoisonedCode},
		{"a code of another space", rec("Run go vet before committing.", "hash:2048", otherCode), true, Admitted},
		{"no code", rec("Check the error that Close returns on a written file.", "", nil), true, Admitted},
	} {
		got, err := a.Admit(ctx, tt.r, tt.trusted)
		if err != nil || got != tt.want {
			t.Errorf("%s: Admit = %q, %v; want %q", tt.name, got, err, tt.want)
		}
		e := tt.r.Experience
		_, created, err := lib.Add(ctx, store.Experience{Text: e.Text, Domain: e.Domain})
		if err != nil {
			t.Fatal(err)
		}
		if held := !created; held != (tt.want == Admitted) {
			t.Errorf("%s: in the library %v; want %v", tt.name, held, tt.want == Admitted)
		}
		if tt.want != Admitted {
			if err := lib.Delete(ctx, store.ExperienceID(e.Domain, e.Text)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, n, err := state.ListQuarantine(ctx, 10); err != nil || n != 0 {
		t.Errorf("quarantine holds %d, %v; a poisoned record is refused, not kept", n, err)
	}
}
