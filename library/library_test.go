package library_test

import (
	"context"
	"errors"
	"testing"

	"github.com/dso-proxy/dso/library"
	"github.com/dso-proxy/dso/providers"
	"github.com/dso-proxy/dso/store"
)

var emb = library.EmbedFunc(providers.NewHashEmbedder(512, 3).Embed)

func open(t *testing.T, dir string) (*library.Library, *store.SQLite) {
	t.Helper()
	st, err := store.OpenDir(context.Background(), dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	lib, err := library.New(context.Background(), library.Config{Store: st})
	if err != nil {
		t.Fatal(err)
	}
	return lib, st
}

func canon(t *testing.T, lib *library.Library, text string) []float32 {
	t.Helper()
	v, err := lib.Embed(context.Background(), emb, "hash", text)
	if err != nil {
		t.Fatal(err)
	}
	c, err := lib.Canonical("hash", v)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestLibrary(t *testing.T) {
	dir := t.TempDir()
	lib, _ := open(t, dir)
	ctx := context.Background()
	if _, err := lib.Search(ctx, library.Query{Vector: canon(t, lib, "x")}); !errors.Is(err, library.ErrEmpty) {
		t.Fatalf("empty library: %v", err)
	}
	texts := []struct{ text, domain string }{
		{"Close files you wrote and check the error.", "code.go"},
		{"Use contexts with deadlines for outgoing requests.", "code.go"},
		{"Rest the dough before rolling it.", "cooking"},
	}
	var es []store.Experience
	var vs [][]float32
	for _, x := range texts {
		es = append(es, store.Experience{Text: x.text, Domain: x.domain, Confidence: 0.8})
		vs = append(vs, canon(t, lib, x.text))
	}
	got, created, err := lib.AddMany(ctx, es, vs)
	if err != nil || len(got) != 3 || !created[0] || es[0].Code != nil {
		t.Fatalf("AddMany: %v %v (input modified: %v)", err, created, es[0].Code != nil)
	}
	if _, c, _ := lib.Add(ctx, es[0], vs[0]); c {
		t.Error("a duplicate was added")
	}

	q := canon(t, lib, "Close files you wrote and check the error.")
	res, err := lib.Search(ctx, library.Query{Vector: q, K: 2})
	if err != nil || len(res) != 2 || res[0].ID != got[0].ID || res[0].Text != texts[0].text {
		t.Fatalf("search: %+v %v", res, err)
	}
	if res, _ := lib.Search(ctx, library.Query{Vector: q, Domain: "cooking"}); len(res) != 1 || res[0].Domain != "cooking" {
		t.Errorf("domain filter: %+v", res)
	}
	if res, _ := lib.Search(ctx, library.Query{Vector: q, MinConfidence: 0.9}); len(res) != 0 {
		t.Errorf("confidence filter: %+v", res)
	}
	retired := store.StatusRetired
	if _, err := lib.Update(ctx, got[0].ID, store.Update{Status: &retired}); err != nil {
		t.Fatal(err)
	}
	if res, _ := lib.Search(ctx, library.Query{Vector: q, K: 3}); len(res) != 2 || res[0].ID == got[0].ID {
		t.Errorf("retired returned: %+v", res)
	}
	if err := lib.Delete(ctx, got[1].ID); err != nil || lib.Len() != 2 {
		t.Errorf("delete: %v, len %d", err, lib.Len())
	}

	// The index is rebuilt from the store on start, retired status included.
	lib2, _ := open(t, dir)
	if lib2.Len() != 2 {
		t.Fatalf("rebuilt index holds %d", lib2.Len())
	}
	if res, _ := lib2.Search(ctx, library.Query{Vector: q, K: 3}); len(res) != 1 || res[0].Domain != "cooking" {
		t.Errorf("after restart: %+v", res)
	}
}

// The embedding cache answers a repeated text without calling the embedder.
func TestEmbedCache(t *testing.T) {
	lib, _ := open(t, t.TempDir())
	calls := 0
	counting := library.EmbedFunc(func(ctx context.Context, texts []string) ([][]float32, error) {
		calls++
		return emb(ctx, texts)
	})
	for i := 0; i < 3; i++ {
		if _, err := lib.Embed(context.Background(), counting, "m", "same text"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := lib.Embed(context.Background(), counting, "other-model", "same text"); err != nil {
		t.Fatal(err)
	}
	if calls != 2 {
		t.Errorf("embedder called %d times; want 2 (one per model)", calls)
	}
	if _, err := lib.Embed(context.Background(), counting, "m", "  "); !errors.Is(err, library.ErrNoText) {
		t.Errorf("blank text: %v", err)
	}
}
