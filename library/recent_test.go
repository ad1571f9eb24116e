package library_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/dso-proxy/dso/library"
	"github.com/dso-proxy/dso/store"
)

// Searches keep the experiences they loaded; what they return must still
// be what the store holds after each kind of change: the library's own
// update and delete, and another process's update and delete reaching it
// through the change log.
func TestSearchSeesChangesToWhatItLoaded(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), store.FileName)
	w := writer(t, path)
	lib, _ := following(t, path, 10*time.Millisecond)

	text := "Close files you wrote and check the error."
	q := vector(t, lib, text)
	e, _, err := lib.Add(ctx, store.Experience{Text: text, Domain: "code.go", Confidence: 0.8})
	if err != nil {
		t.Fatal(err)
	}
	confidence := func() (float64, bool) {
		res, err := lib.Search(ctx, library.Query{Vector: q, K: 3, MinRelevance: &all})
		if errors.Is(err, library.ErrEmpty) {
			return 0, false
		}
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range res {
			if r.ID == e.ID {
				return r.Confidence, true
			}
		}
		return 0, false
	}
	if c, ok := confidence(); !ok || c != 0.8 {
		t.Fatalf("after add: confidence %v, found %v", c, ok)
	}

	own := 0.4
	if _, err := lib.Update(ctx, e.ID, store.Update{Confidence: &own}); err != nil {
		t.Fatal(err)
	}
	if c, _ := confidence(); c != own {
		t.Fatalf("after the library's own update: confidence %v; want %v", c, own)
	}

	// Another process changes the row; the follower brings it.
	other := 0.6
	if _, err := w.Store().UpdateExperience(ctx, e.ID, store.Update{Confidence: &other}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the other process's confidence is returned", func() bool {
		c, _ := confidence()
		return c == other
	})

	if err := w.Store().DeleteExperience(ctx, e.ID); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the other process's delete hides it", func() bool {
		_, ok := confidence()
		return !ok
	})

	// The library's own delete, of a record searches have loaded.
	e2, _, err := lib.Add(ctx, store.Experience{Text: text, Domain: "code", Confidence: 0.7})
	if err != nil {
		t.Fatal(err)
	}
	e = e2
	if _, ok := confidence(); !ok {
		t.Fatal("re-added experience not found")
	}
	if err := lib.Delete(ctx, e.ID); err != nil {
		t.Fatal(err)
	}
	if _, ok := confidence(); ok {
		t.Fatal("deleted experience still returned")
	}
}
