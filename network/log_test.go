package network

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// testIdentity makes a node identity named name.
func testIdentity(t testing.TB, name string) Identity {
	t.Helper()
	id, err := GenerateKey(filepath.Join(t.TempDir(), "node.key"), name)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func verifierOf(t testing.TB, id Identity) note.Verifier {
	t.Helper()
	v, err := note.NewVerifier(id.VerifierKey)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// experienceRecord signs the i'th test experience with id.
func experienceRecord(t testing.TB, id Identity, i int) []byte {
	t.Helper()
	return encoded(t, id.Signer, Record{Experience: &Experience{Network: "hanzo", Domain: "code.go",
		Text: fmt.Sprintf("Lesson %d: check errors.", i), Confidence: 0.5, Time: t0.Add(time.Duration(i) * time.Second)}})
}

func openTestLog(t testing.TB, id Identity, path string) *Log {
	t.Helper()
	l, err := OpenLog(context.Background(), LogConfig{Path: path, Origin: Origin(id.Signer.Name(), "hanzo"), Identity: id})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// appendN appends records [from, to) of id's test experiences.
func appendN(t testing.TB, l *Log, id Identity, from, to int) [][]byte {
	t.Helper()
	var rs [][]byte
	for i := from; i < to; i++ {
		rs = append(rs, experienceRecord(t, id, i))
	}
	if _, err := l.Append(context.Background(), rs...); err != nil {
		t.Fatal(err)
	}
	return rs
}

// serve serves l over HTTP on loopback and returns a fetcher for it.
func serve(t testing.TB, l TileSource) HTTPFetcher {
	t.Helper()
	mux := http.NewServeMux()
	mux.Handle("/log/hanzo/", http.StripPrefix("/log/hanzo", NewHandler(l, nil)))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return HTTPFetcher{Base: srv.URL + "/log/hanzo", Client: srv.Client()}
}

func TestLogInclusionAndConsistency(t *testing.T) {
	ctx := context.Background()
	id := testIdentity(t, "nodeA")
	v := verifierOf(t, id)
	l := openTestLog(t, id, filepath.Join(t.TempDir(), "log.db"))
	f := serve(t, l)
	var all [][]byte
	var prev Checkpoint
	// Sizes cross a full tile (256) and a level-1 tile boundary is not
	// needed for correctness, but a partial and a full tile are.
	for _, size := range []int{1, 2, 7, 256, 257, 600} {
		all = append(all, appendN(t, l, id, len(all), size)...)
		c, _, err := FetchCheckpoint(ctx, f, v, l.Origin())
		if err != nil {
			t.Fatal(err)
		}
		if c.Size != int64(size) {
			t.Fatalf("checkpoint size %d; want %d", c.Size, size)
		}
		if err := ProveConsistency(ctx, f, prev, c); err != nil {
			t.Fatalf("consistency %d..%d: %v", prev.Size, c.Size, err)
		}
		for _, i := range []int64{0, int64(size) / 2, int64(size) - 1} {
			if err := ProveInclusion(ctx, f, c, i, all[i]); err != nil {
				t.Fatalf("inclusion of %d at size %d: %v", i, size, err)
			}
		}
		got, err := FetchEntries(ctx, f, c, prev.Size, c.Size)
		if err != nil {
			t.Fatal(err)
		}
		for i, e := range got {
			if string(e) != string(all[prev.Size+int64(i)]) {
				t.Fatalf("entry %d differs", prev.Size+int64(i))
			}
		}
		prev = c
	}
	// A tampered entry is not included; nor is an index past the end.
	bad := append([]byte(nil), all[3]...)
	bad[10] ^= 1
	if err := ProveInclusion(ctx, f, prev, 3, bad); !errors.Is(err, ErrNotIncluded) {
		t.Errorf("tampered entry: %v; want ErrNotIncluded", err)
	}
	if err := ProveInclusion(ctx, f, prev, 4, all[3]); !errors.Is(err, ErrNotIncluded) {
		t.Errorf("entry at the wrong index: %v; want ErrNotIncluded", err)
	}
	if err := ProveInclusion(ctx, f, prev, prev.Size, all[3]); !errors.Is(err, ErrNotIncluded) {
		t.Errorf("index past the end: %v; want ErrNotIncluded", err)
	}
}

func TestLogCheckpointSignedByAnotherKey(t *testing.T) {
	ctx := context.Background()
	id, other := testIdentity(t, "nodeA"), testIdentity(t, "nodeA")
	l := openTestLog(t, id, filepath.Join(t.TempDir(), "log.db"))
	appendN(t, l, id, 0, 3)
	f := serve(t, l)
	if _, _, err := FetchCheckpoint(ctx, f, verifierOf(t, other), ""); !errors.Is(err, ErrCheckpointSignature) {
		t.Errorf("checkpoint checked with another key: %v; want ErrCheckpointSignature", err)
	}
	if _, _, err := FetchCheckpoint(ctx, f, verifierOf(t, id), "nodeA/other"); !errors.Is(err, ErrOrigin) {
		t.Errorf("checkpoint of another origin: %v; want ErrOrigin", err)
	}
}

// A log that rewrote its history, signed by the same key, fails the
// consistency proof against a checkpoint from before.
func TestLogRewrittenHistory(t *testing.T) {
	ctx := context.Background()
	id := testIdentity(t, "nodeA")
	v := verifierOf(t, id)
	dir := t.TempDir()
	honest := openTestLog(t, id, filepath.Join(dir, "a.db"))
	appendN(t, honest, id, 0, 300)
	old, _, err := FetchCheckpoint(ctx, serve(t, honest), v, "")
	if err != nil {
		t.Fatal(err)
	}
	forked := openTestLog(t, id, filepath.Join(dir, "b.db"))
	appendN(t, forked, id, 0, 100)
	appendN(t, forked, id, 1000, 1001) // record 100 differs
	appendN(t, forked, id, 101, 400)
	ff := serve(t, forked)
	c, _, err := FetchCheckpoint(ctx, ff, v, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := ProveConsistency(ctx, ff, old, c); !errors.Is(err, ErrInconsistent) {
		t.Errorf("rewritten history: %v; want ErrInconsistent", err)
	}
	// Same size, another root.
	same := openTestLog(t, id, filepath.Join(dir, "c.db"))
	appendN(t, same, id, 1, 301)
	sc, _, err := FetchCheckpoint(ctx, serve(t, same), v, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := ProveConsistency(ctx, serve(t, same), old, sc); !errors.Is(err, ErrInconsistent) {
		t.Errorf("two roots at one size: %v; want ErrInconsistent", err)
	}
}

func TestLogReopenAndOwnership(t *testing.T) {
	ctx := context.Background()
	id := testIdentity(t, "nodeA")
	path := filepath.Join(t.TempDir(), "log.db")
	l, err := OpenLog(ctx, LogConfig{Path: path, Origin: "nodeA/hanzo", Identity: id})
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, l, id, 0, 5)
	cp, _ := l.Checkpoint(ctx)
	l.Close()
	l = openTestLog(t, id, path)
	if l.Size() != 5 {
		t.Errorf("reopened size %d; want 5", l.Size())
	}
	if again, _ := l.Checkpoint(ctx); string(again) != string(cp) {
		t.Errorf("reopened checkpoint differs")
	}
	other := testIdentity(t, "nodeB")
	if _, err := OpenLog(ctx, LogConfig{Path: path, Origin: "nodeA/hanzo", Identity: other}); !errors.Is(err, ErrWrongLog) {
		t.Errorf("open with another key: %v; want ErrWrongLog", err)
	}
	if _, err := l.Append(ctx, experienceRecord(t, other, 0)); !errors.Is(err, ErrNotAuthor) {
		t.Errorf("append another author's record: %v; want ErrNotAuthor", err)
	}
	if _, err := l.Append(ctx, []byte{1, 1, 0}); !errors.Is(err, ErrMalformed) {
		t.Errorf("append junk: %v; want ErrMalformed", err)
	}
	if l.Size() != 5 {
		t.Errorf("size %d after refused appends; want 5", l.Size())
	}
}

func TestHandler(t *testing.T) {
	id := testIdentity(t, "nodeA")
	l := openTestLog(t, id, filepath.Join(t.TempDir(), "log.db"))
	appendN(t, l, id, 0, 300)
	f := serve(t, l)
	for _, tt := range []struct {
		path   string
		status int
		cache  string
	}{
		{"checkpoint", 200, cacheCheckpoint},
		{"tile/0/000", 200, cacheFullTile},
		{"tile/0/001.p/44", 200, cachePartialTile},
		{"tile/0/000.p/3", 200, cachePartialTile},
		{"tile/0/001", 404, ""},
		{"tile/0/001.p/45", 404, ""},
		{"tile/1/000.p/1", 200, cachePartialTile},
		{"tile/1/000", 404, ""},
		{"tile/entries/000", 200, cacheFullTile},
		{"tile/entries/001.p/44", 200, cachePartialTile},
		{"tile/entries/002.p/1", 404, ""},
		{"tile/8/0/000", 404, ""},
		{"tile/0/x000/000", 404, ""},
		{"../checkpoint", 404, ""},
	} {
		t.Run(tt.path, func(t *testing.T) {
			resp, err := f.Client.Get(f.Base + "/" + tt.path)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d; want %d (%q)", resp.StatusCode, tt.status, body)
			}
			if got := resp.Header.Get("Cache-Control"); got != tt.cache {
				t.Errorf("Cache-Control %q; want %q", got, tt.cache)
			}
		})
	}
	resp, err := f.Client.Post(f.Base+"/checkpoint", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST: %d; want 405", resp.StatusCode)
	}
	// A hash tile is exactly the stored hashes tlog computes.
	data, err := f.Fetch(context.Background(), "tile/0/000.p/3")
	if err != nil {
		t.Fatal(err)
	}
	h, err := tlog.HashFromTile(tlog.Tile{H: 8, L: 0, N: 0, W: 3}, data, tlog.StoredHashIndex(0, 2))
	if err != nil || h != tlog.RecordHash(experienceRecord(t, id, 2)) {
		t.Errorf("tile hash of record 2: %v, %v", h, err)
	}
}

func TestLogPublish(t *testing.T) {
	ctx := context.Background()
	id := testIdentity(t, "nodeA")
	path := filepath.Join(t.TempDir(), "log.db")
	l := openTestLog(t, id, path)
	e1, e2 := *sampleExperience(), *sampleExperience()
	e2.Text = "Another lesson."
	n, err := l.Publish(ctx, []Experience{e1, e2, e1})
	if err != nil || n != 2 || l.Size() != 2 {
		t.Fatalf("Publish = %d, %v; size %d; want 2 new", n, err, l.Size())
	}
	e1.Confidence = 0.1 // the same experience: same network, domain and text
	if n, err := l.Publish(ctx, []Experience{e1}); err != nil || n != 0 {
		t.Errorf("republish = %d, %v; want 0", n, err)
	}
	l.Close()
	l = openTestLog(t, id, path)
	if n, err := l.Publish(ctx, []Experience{e2}); err != nil || n != 0 || l.Size() != 2 {
		t.Errorf("republish after reopening = %d, %v, size %d; want 0, size 2", n, err, l.Size())
	}
	bad := e1
	bad.Network = "Not An ID"
	if _, err := l.Publish(ctx, []Experience{bad}); !errors.Is(err, ErrMalformed) {
		t.Errorf("publish malformed: %v; want ErrMalformed", err)
	}
	// What was published verifies, in order.
	f := serve(t, l)
	c, _, err := FetchCheckpoint(ctx, f, verifierOf(t, id), l.Origin())
	if err != nil {
		t.Fatal(err)
	}
	entries, err := FetchEntries(ctx, f, c, 0, c.Size)
	if err != nil {
		t.Fatal(err)
	}
	r, err := Open(entries[1], note.VerifierList(verifierOf(t, id)))
	if err != nil || r.Experience.Text != e2.Text {
		t.Errorf("entry 1 = %+v, %v", r.Experience, err)
	}
}

// Two handles on one file (two processes on one data directory) append
// in turn without losing or overwriting each other's records.
func TestLogTwoHandles(t *testing.T) {
	ctx := context.Background()
	id := testIdentity(t, "nodeA")
	path := filepath.Join(t.TempDir(), "log.db")
	a, b := openTestLog(t, id, path), openTestLog(t, id, path)
	appendN(t, a, id, 0, 3)
	appendN(t, b, id, 3, 5)
	appendN(t, a, id, 5, 6)
	if a.Size() != 6 {
		t.Fatalf("size %d; want 6", a.Size())
	}
	f := serve(t, a)
	c, _, err := FetchCheckpoint(ctx, f, verifierOf(t, id), "")
	if err != nil {
		t.Fatal(err)
	}
	for i := range 6 {
		if err := ProveInclusion(ctx, f, c, int64(i), experienceRecord(t, id, i)); err != nil {
			t.Errorf("record %d: %v", i, err)
		}
	}
}
