package network

import (
	"context"
	"errors"
	"testing"

	"github.com/dso-proxy/dso/library"
	"github.com/dso-proxy/dso/providers"
	"github.com/dso-proxy/dso/store"
)

// An author that loses its standing takes back what the library holds on
// its word alone, into the quarantine (past its caps: it was admitted); what another author with standing
// published too stays at that author's confidence; the node's own lesson
// keeps its own. Should the author gain standing again, the quarantined
// record comes back, and the votes kept on it apply again.
func TestWithdrawTakesBackWhatAnAuthorLeft(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st, err := store.OpenDir(ctx, dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	lib, err := library.New(ctx, library.Config{Store: st,
		Space: library.Space{Name: "hash:256", Embedder: library.EmbedFunc(providers.NewHashEmbedder(256, 5).Embed)}})
	if err != nil {
		t.Fatal(err)
	}
	defer lib.Close()
	if err := lib.Prepare(ctx); err != nil {
		t.Fatal(err)
	}
	state := openTestState(t, dir)
	idF, idG := testIdentity(t, "nodeF"), testIdentity(t, "nodeG")
	f, g := authorID(idF.Signer.Name(), idF.Signer.KeyHash()), authorID(idG.Signer.Name(), idG.Signer.KeyHash())
	weights := map[string]float64{f: 1, g: 1, "V1": 1, "V2": 1}
	weight := func(k string) float64 { return weights[k] }
	v := &Voting{State: state, Library: lib, Weight: weight}
	a := &Admitter{Network: "hanzo", Library: lib, State: state, Voting: v, Weight: weight}

	only, shared, own := "Drain and close the response body before retrying.", "Give every outbound call a deadline.", "Log the request id."
	mine, _, err := lib.Add(ctx, store.Experience{Text: own, Domain: "code.go", Confidence: 0.3, Status: store.StatusActive})
	if err != nil {
		t.Fatal(err)
	}
	admit := func(id Identity, text string, conf float64) {
		t.Helper()
		r, err := Sign(id.Signer, Record{Experience: &Experience{Network: "hanzo", Domain: "code.go", Text: text, Confidence: conf, Time: t0}})
		if err != nil {
			t.Fatal(err)
		}
		if out, err := a.Admit(ctx, r, true); err != nil || out != Admitted {
			t.Fatalf("admit %q: %q, %v", text, out, err)
		}
	}
	admit(idF, only, 0.9)
	admit(idF, shared, 0.95)
	admit(idG, shared, 0.6)
	admit(idF, own, 0.9)
	for _, voter := range []string{"V1", "V2"} {
		if _, err := v.Vote(ctx, voter, Vote{Network: "hanzo", Experience: ExperienceID("hanzo", "code.go", only), Grade: Down, Time: t0}); err != nil {
			t.Fatal(err)
		}
	}
	get := func(text string) (store.Experience, bool) {
		t.Helper()
		e, err := lib.GetExperience(ctx, store.ExperienceID("code.go", text))
		if errors.Is(err, store.ErrNotFound) {
			return e, false
		}
		if err != nil {
			t.Fatal(err)
		}
		return e, true
	}
	if e, ok := get(only); !ok || e.Status != store.StatusRetired {
		t.Fatalf("before: F's lesson %+v (held %v); want it held, retired by the votes", e, ok)
	}

	weights[f] = 0
	state.maxQuarantine, state.maxPerAuthor = 0, 0 // full: what leaves the library is kept all the same
	n, err := a.Withdraw(ctx, f)
	if err != nil || n != 1 {
		t.Fatalf("Withdraw: %d, %v; want 1 experience taken back", n, err)
	}
	if _, ok := get(only); ok || lib.Active(store.ExperienceID("code.go", only)) {
		t.Error("F's lesson is still in the library")
	}
	if e, ok := get(shared); !ok || e.Confidence != 0.6 {
		t.Errorf("the shared lesson: %+v (held %v); want it at G's confidence, 0.6", e, ok)
	}
	if e, ok := get(own); !ok || e.Confidence != mine.Confidence || e.ID != mine.ID {
		t.Errorf("the node's own lesson: %+v (held %v); want it as it was, %+v", e, ok, mine)
	}
	q, err := state.Quarantined(ctx, "hanzo", f)
	if err != nil || len(q) != 1 || q[0].Text != only || q[0].Confidence != 0.9 {
		t.Fatalf("F's quarantine: %+v, %v; want its withdrawn lesson at its confidence", q, err)
	}
	if by, err := state.EndorsedBy(ctx, f, 10); err != nil || len(by) != 0 {
		t.Errorf("F still endorses %d experiences (%v); want none", len(by), err)
	}
	if n, err := a.Withdraw(ctx, f); err != nil || n != 0 {
		t.Errorf("Withdraw again: %d, %v; want nothing left to take back", n, err)
	}

	// F gains standing again: its record is admitted as any quarantined
	// one, and the votes kept on it retire it again.
	weights[f] = 1
	r, _ := Sign(idF.Signer, Record{Experience: &q[0]})
	if out, err := a.Admit(ctx, r, true); err != nil || out != Admitted {
		t.Fatalf("admitting F's record again: %q, %v", out, err)
	}
	if e, ok := get(only); !ok || e.Status != store.StatusRetired || e.Confidence != 0.9 {
		t.Errorf("F's lesson admitted again: %+v (held %v); want it at 0.9, retired by the votes kept", e, ok)
	}
}
