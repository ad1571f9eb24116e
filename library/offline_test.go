package library_test

import (
	"context"
	"errors"
	"testing"

	"github.com/dso-proxy/dso/library"
	"github.com/dso-proxy/dso/store"
)

func experiences(texts []string) []store.Experience {
	es := make([]store.Experience, len(texts))
	for i, t := range texts {
		es[i] = store.Experience{Text: t, Domain: "code", Confidence: 0.8}
	}
	return es
}

func openOffline(t *testing.T, dir string, cfg library.Config) (*library.Library, *store.SQLite) {
	cfg.Offline = true
	return openConfig(t, dir, cfg)
}

// An Offline library (dso import's) holds no index, neither of what is
// stored nor of what it writes, and its Search says so; what it writes is
// coded as serve would code it, so a library opened later finds it.
func TestOfflineHoldsNoIndex(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	sp := hashSpace(512, 3)
	first, _ := openSpace(t, dir, sp)
	if _, _, err := first.AddMany(ctx, experiences(lessons[5:])); err != nil {
		t.Fatal(err)
	}
	first.Close()

	off, _ := openOffline(t, dir, library.Config{Space: sp})
	_, created, err := off.AddMany(ctx, experiences(lessons[:5]))
	if err != nil {
		t.Fatal(err)
	}
	for i, c := range created {
		if !c {
			t.Errorf("offline add of %q: not created", lessons[i])
		}
	}
	if off.Len() != 0 {
		t.Errorf("offline library indexes %d experiences; want none", off.Len())
	}
	if _, err := off.Search(ctx, library.Query{Vector: vector(t, off, "close a file")}); !errors.Is(err, library.ErrOffline) {
		t.Errorf("offline Search: %v; want ErrOffline", err)
	}
	off.Close()

	lib, _ := openSpace(t, dir, sp)
	if lib.Len() != len(lessons) {
		t.Fatalf("served library after the offline writes: %d indexed; want %d", lib.Len(), len(lessons))
	}
	q := "How do I close a file I opened and check the error from Close?"
	if res, err := lib.Search(ctx, library.Query{Vector: vector(t, lib, q), MinRelevance: &all}); err != nil || len(res) == 0 || res[0].Text != lessons[0] {
		t.Fatalf("served search for what the offline library wrote: %+v, %v", res, err)
	}
}

// While the store moves to a new space, an Offline library codes what it
// writes in both: the old space's code stored, the new one's pending, as
// serve does; and it moves nothing itself.
func TestOfflineCodesForTheMove(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	oldSpace, newSpace := hashSpace(512, 3), hashSpace(300, 11)
	first, _ := openSpace(t, dir, oldSpace)
	if _, _, err := first.AddMany(ctx, experiences(lessons[5:])); err != nil {
		t.Fatal(err)
	}
	first.Close()

	off, st := openOffline(t, dir, library.Config{Space: newSpace, Previous: func(name string) (library.Space, bool) {
		return oldSpace, name == oldSpace.Name
	}})
	if off.Moving() != newSpace.Name {
		t.Fatalf("offline library over an old space: moving to %q; want %q", off.Moving(), newSpace.Name)
	}
	got, _, err := off.AddMany(ctx, experiences(lessons[:5]))
	if err != nil {
		t.Fatal(err)
	}
	pending := map[string]bool{}
	if err := st.PendingCodes(ctx, newSpace.Name, func(id string, _ []byte) error { pending[id] = true; return nil }); err != nil {
		t.Fatal(err)
	}
	for _, e := range got {
		if e.Space != oldSpace.Name || len(e.Code) == 0 {
			t.Errorf("%q stored in space %q (code %d bytes); want a code in %q", e.Text, e.Space, len(e.Code), oldSpace.Name)
		}
		if !pending[e.ID] {
			t.Errorf("%q has no pending code in %q", e.Text, newSpace.Name)
		}
	}
	if len(pending) != len(got) {
		t.Errorf("%d pending codes; want only the %d written offline (the offline library re-embeds nothing)", len(pending), len(got))
	}
	if off.Len() != 0 {
		t.Errorf("offline library indexes %d experiences; want none", off.Len())
	}
}
