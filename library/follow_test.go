package library_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/dso-proxy/dso/compress"
	"github.com/dso-proxy/dso/gpuidx"
	"github.com/dso-proxy/dso/library"
	"github.com/dso-proxy/dso/store"
)

// eventually fails the test unless cond holds within a few seconds,
// checking every 10ms.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting: %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// following is a library (over its own handle on path, with an index the
// test can inspect) whose Follow runs until the test ends.
func following(t *testing.T, path string, every time.Duration) (*library.Library, *gpuidx.CPU) {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	idx := gpuidx.NewCPU(gpuidx.CPUConfig{})
	lib, err := library.New(ctx, library.Config{Store: st, Index: idx, Space: hashSpace(512, 3)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lib.Close() })
	if err := lib.Prepare(ctx); err != nil {
		t.Fatal(err)
	}
	fctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		lib.Follow(fctx, every)
	}()
	// Cleanups run last-in first-out: Follow stops before its store closes.
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return lib, idx
}

// writer is a second library over a second handle on the same file: to
// SQLite, another process.
func writer(t *testing.T, path string) *library.Library {
	t.Helper()
	lib, _ := open(t, filepath.Dir(path))
	return lib
}

func found(t *testing.T, lib *library.Library, q []float32, id string) bool {
	t.Helper()
	res, err := lib.Search(context.Background(), library.Query{Vector: q, K: 3, MinRelevance: &all})
	if err != nil {
		return false
	}
	for _, r := range res {
		if r.ID == id {
			return true
		}
	}
	return false
}

// What another process adds, retires, re-scores, re-codes and deletes
// reaches a following library's index.
func TestFollowAnotherProcess(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), store.FileName)
	w := writer(t, path)
	lib, idx := following(t, path, 10*time.Millisecond)

	text := "Close files you wrote and check the error."
	q := vector(t, w, text)
	e, _, err := w.Add(ctx, store.Experience{Text: text, Domain: "code.go", Confidence: 0.8})
	if err != nil {
		t.Fatal(err)
	}
	other, _, err := w.Add(ctx, store.Experience{Text: "Rest the dough before rolling it.", Domain: "cooking", Confidence: 0.8})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "the added experience is found", func() bool { return found(t, lib, q, e.ID) })

	// Search would hide a retired record anyway (it reads the status from
	// the store), so look at the index itself.
	retired := store.StatusRetired
	if _, err := w.Update(ctx, e.ID, store.Update{Status: &retired}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the index marks it retired", func() bool {
		m, _, ok := idx.Get(e.ID)
		return ok && m.Retired
	})
	if found(t, lib, q, e.ID) {
		t.Error("a retired experience is found")
	}

	conf := 0.3
	if _, err := w.Update(ctx, other.ID, store.Update{Confidence: &conf}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the index has the new confidence", func() bool {
		m, _, ok := idx.Get(other.ID)
		return ok && m.Confidence == float32(conf)
	})

	// A new code (the record re-embedded) replaces the indexed one.
	c, err := compress.Encode(vector(t, w, "something else entirely"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Store().UpdateExperience(ctx, other.ID, store.Update{Code: b, Space: w.Space().Name}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the index has the new code", func() bool {
		_, got, ok := idx.Get(other.ID)
		return ok && got == c
	})

	if err := w.Delete(ctx, other.ID); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the deleted experience leaves the index", func() bool {
		_, _, ok := idx.Get(other.ID)
		return !ok
	})
	if lib.Len() != 1 {
		t.Errorf("index holds %d; want 1 (the retired one)", lib.Len())
	}
	if err := lib.FollowErr(); err != nil {
		t.Errorf("FollowErr = %v", err)
	}
}

// A write made after New rebuilt the index but before Follow started is
// not missed: Follow starts from the position taken before the rebuild.
func TestFollowFromBeforeStart(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), store.FileName)
	w := writer(t, path)
	lib, _ := openSpace(t, filepath.Dir(path), hashSpace(512, 3))
	text := "Use contexts with deadlines for outgoing requests."
	q := vector(t, w, text)
	e, _, err := w.Add(ctx, store.Experience{Text: text, Confidence: 0.8})
	if err != nil {
		t.Fatal(err)
	}
	if lib.Len() != 0 {
		t.Fatal("the index saw the write without following")
	}
	fctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); lib.Follow(fctx, time.Hour) }()
	defer func() { cancel(); <-done }()
	// The first poll runs at once, not after the first interval.
	eventually(t, "the earlier write is found", func() bool { return found(t, lib, q, e.ID) })
}

// A record whose code does not decode is kept out of the index and
// reported, and does not hold up the changes after it.
func TestFollowSkipsBadRecord(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), store.FileName)
	w := writer(t, path)
	lib, _ := openSpace(t, filepath.Dir(path), hashSpace(512, 3))
	bad := make([]byte, store.CodeSize) // the store checks the length only
	bad[0] = 0xff                       // no such code version
	if _, _, err := w.Store().PutExperiences(ctx, []store.Experience{{Text: "undecodable", Confidence: 0.5, Code: bad, Space: w.Space().Name}}); err != nil {
		t.Fatal(err)
	}
	text := "Prefer small interfaces."
	q := vector(t, w, text)
	e, _, err := w.Add(ctx, store.Experience{Text: text, Confidence: 0.8})
	if err != nil {
		t.Fatal(err)
	}
	fctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	// One poll, then an interval longer than the test: FollowErr holds
	// that poll's outcome.
	go func() { defer close(done); lib.Follow(fctx, time.Hour) }()
	defer func() { cancel(); <-done }()
	eventually(t, "the good record after the bad one is found", func() bool { return found(t, lib, q, e.ID) })
	eventually(t, "the bad record is reported", func() bool { return lib.FollowErr() != nil })
	if lib.Len() != 1 {
		t.Errorf("index holds %d; want 1", lib.Len())
	}
}

// A follower whose position was pruned from the change log resyncs from
// the records instead of missing what the pruned rows said.
func TestFollowAfterPrune(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), store.FileName)
	w := writer(t, path)
	lib, _ := openSpace(t, filepath.Dir(path), hashSpace(512, 3))
	var qs [][]float32
	var ids []string
	for i := range 5 {
		text := fmt.Sprintf("Lesson number %d about pruning logs.", i)
		q := vector(t, w, text)
		e, _, err := w.Add(ctx, store.Experience{Text: text, Confidence: 0.8})
		if err != nil {
			t.Fatal(err)
		}
		qs, ids = append(qs, q), append(ids, e.ID)
	}
	if _, err := w.Store().PruneChanges(ctx, 1); err != nil {
		t.Fatal(err)
	}
	fctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); lib.Follow(fctx, 10*time.Millisecond) }()
	defer func() { cancel(); <-done }()
	eventually(t, "every record is indexed", func() bool { return lib.Len() == len(ids) })
	for i, id := range ids {
		if !found(t, lib, qs[i], id) {
			t.Errorf("record %d not found after the resync", i)
		}
	}
	// Following goes on from the log's end.
	text := "A lesson written after the resync."
	q := vector(t, w, text)
	e, _, err := w.Add(ctx, store.Experience{Text: text, Confidence: 0.8})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "a later write is found", func() bool { return found(t, lib, q, e.ID) })
	if err := lib.FollowErr(); err != nil {
		t.Errorf("FollowErr = %v", err)
	}
}
