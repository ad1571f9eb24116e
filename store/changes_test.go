package store

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// Writes through a second handle on the file (to SQLite, another process)
// appear in the first handle's change log: inserts, updates, deletes.
func TestChangesFromAnotherHandle(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), FileName)
	reader := openTest(t, path, Options{})
	writer := openTest(t, path, Options{})

	start, err := reader.LastChange(ctx)
	if err != nil || start != 0 {
		t.Fatalf("LastChange on a new file = %d, %v; want 0", start, err)
	}
	if ids, last, err := reader.Changes(ctx, start, 0); err != nil || len(ids) != 0 || last != start {
		t.Fatalf("Changes on a new file = %v, %d, %v; want none", ids, last, err)
	}

	before := time.Now()
	got, _, err := writer.PutExperiences(ctx, []Experience{
		{Text: "first lesson", Confidence: 0.5, Code: code(1), Space: "hash:8"},
		{Text: "second lesson", Confidence: 0.5},
	})
	if err != nil {
		t.Fatal(err)
	}
	a, b := got[0].ID, got[1].ID
	// A duplicate writes no row, so it logs no change.
	if _, created, err := writer.PutExperience(ctx, Experience{Text: "first lesson", Confidence: 0.9}); err != nil || created {
		t.Fatalf("duplicate: %v %v", created, err)
	}
	ids, last, err := reader.Changes(ctx, start, 0)
	if err != nil || !slices.Equal(ids, []string{a, b}) || last != start+2 {
		t.Fatalf("after inserts: Changes = %v, %d, %v; want [a b], %d", ids, last, err, start+2)
	}

	retired := StatusRetired
	if _, err := writer.UpdateExperience(ctx, b, Update{Status: &retired}); err != nil {
		t.Fatal(err)
	}
	conf := 0.75
	if _, err := writer.UpdateExperience(ctx, b, Update{Confidence: &conf}); err != nil {
		t.Fatal(err)
	}
	if err := writer.DeleteExperience(ctx, a); err != nil {
		t.Fatal(err)
	}
	// b changed twice and a once: each id once, in order of first change.
	ids, last2, err := reader.Changes(ctx, last, 0)
	if err != nil || !slices.Equal(ids, []string{b, a}) || last2 != last+3 {
		t.Fatalf("after updates and a delete: Changes = %v, %d, %v; want [b a], %d", ids, last2, err, last+3)
	}
	if n, err := reader.LastChange(ctx); err != nil || n != last2 {
		t.Errorf("LastChange = %d, %v; want %d", n, err, last2)
	}

	// at is the wall clock of the write, in Unix nanoseconds.
	var at int64
	if err := reader.r.QueryRowContext(ctx, `SELECT at FROM experience_changes WHERE seq = ?`, last2).Scan(&at); err != nil {
		t.Fatal(err)
	}
	if got := time.Unix(0, at); got.Before(before.Truncate(time.Millisecond)) || got.After(time.Now().Add(time.Second)) {
		t.Errorf("at = %v; want between %v and now", got, before)
	}
}

// Changes pages by seq: limit bounds the rows read, and last continues.
func TestChangesPaging(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, "", Options{})
	var want []string
	for i := range 7 {
		e, _, err := s.PutExperience(ctx, Experience{Text: fmt.Sprintf("lesson %d", i), Confidence: 0.5})
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, e.ID)
	}
	var all []string
	var after int64
	pages := 0
	for {
		ids, last, err := s.Changes(ctx, after, 3)
		if err != nil {
			t.Fatal(err)
		}
		if len(ids) == 0 {
			if last != after {
				t.Errorf("empty page moved the cursor from %d to %d", after, last)
			}
			break
		}
		if len(ids) > 3 {
			t.Errorf("page of %d ids; limit 3", len(ids))
		}
		all, after = append(all, ids...), last
		pages++
	}
	if !slices.Equal(all, want) || pages != 3 || after != 7 {
		t.Errorf("paged %v in %d pages to %d; want %v in 3 pages to 7", all, pages, after, want)
	}
}

// A write that rolls back takes its log row and its seq with it, so seqs
// stay consecutive and Changes does not mistake the hole for pruning.
func TestChangesRollback(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, "", Options{})
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO experiences (`+expColumns+`)
		VALUES (?, 'gone', '', 0.5, 'active', '', '', '', NULL, '', 1, 1, 0.5, '')`, ExperienceID("", "gone")); err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	e, _, err := s.PutExperience(ctx, Experience{Text: "kept", Confidence: 0.5})
	if err != nil {
		t.Fatal(err)
	}
	if ids, last, err := s.Changes(ctx, 0, 0); err != nil || !slices.Equal(ids, []string{e.ID}) || last != 1 {
		t.Errorf("Changes = %v, %d, %v; want [kept], 1", ids, last, err)
	}
}

// PruneChanges keeps the newest rows; a cursor behind them is told so,
// and LastChange survives a log pruned to nothing.
func TestPruneChanges(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, "", Options{})
	if n, err := s.PruneChanges(ctx, 0); err != nil || n != 0 {
		t.Fatalf("PruneChanges on an empty log = %d, %v", n, err)
	}
	const writes, keep = 20, 5
	for i := range writes {
		if _, _, err := s.PutExperience(ctx, Experience{Text: fmt.Sprintf("lesson %d", i), Confidence: 0.5}); err != nil {
			t.Fatal(err)
		}
	}
	n, err := s.PruneChanges(ctx, keep)
	if err != nil || n != writes-keep {
		t.Fatalf("PruneChanges = %d, %v; want %d", n, err, writes-keep)
	}
	var rows int
	if err := s.r.QueryRowContext(ctx, `SELECT count(*) FROM experience_changes`).Scan(&rows); err != nil || rows != keep {
		t.Fatalf("log holds %d rows, %v; want %d", rows, err, keep)
	}
	// Pruning again drops nothing; the table stays at keep however often.
	if n, err := s.PruneChanges(ctx, keep); err != nil || n != 0 {
		t.Errorf("second PruneChanges = %d, %v; want 0", n, err)
	}
	// A cursor at the edge of what is kept reads on; one behind it cannot.
	if ids, last, err := s.Changes(ctx, writes-keep, 0); err != nil || len(ids) != keep || last != writes {
		t.Errorf("Changes from the oldest kept = %d ids, %d, %v", len(ids), last, err)
	}
	if _, _, err := s.Changes(ctx, writes-keep-1, 0); !errors.Is(err, ErrChangesPruned) {
		t.Errorf("Changes from a pruned cursor: %v; want ErrChangesPruned", err)
	}
	if _, _, err := s.Changes(ctx, 0, 0); !errors.Is(err, ErrChangesPruned) {
		t.Errorf("Changes from 0 after pruning: %v; want ErrChangesPruned", err)
	}

	// Even with every row gone, LastChange still knows the newest seq, and
	// the next write continues from it.
	if _, err := s.PruneChanges(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := s.w.ExecContext(ctx, `DELETE FROM experience_changes`); err != nil {
		t.Fatal(err)
	}
	if last, err := s.LastChange(ctx); err != nil || last != writes {
		t.Errorf("LastChange of an emptied log = %d, %v; want %d", last, err, writes)
	}
	e, _, err := s.PutExperience(ctx, Experience{Text: "after the prune", Confidence: 0.5})
	if err != nil {
		t.Fatal(err)
	}
	if ids, last, err := s.Changes(ctx, writes, 0); err != nil || !slices.Equal(ids, []string{e.ID}) || last != writes+1 {
		t.Errorf("Changes after an emptied log = %v, %d, %v", ids, last, err)
	}
}

// After Close, the change log methods say so.
func TestChangesClosed(t *testing.T) {
	s := openTest(t, "", Options{})
	s.Close()
	ctx := context.Background()
	if _, _, err := s.Changes(ctx, 0, 0); !errors.Is(err, ErrClosed) {
		t.Errorf("Changes after Close: %v", err)
	}
	if _, err := s.LastChange(ctx); !errors.Is(err, ErrClosed) {
		t.Errorf("LastChange after Close: %v", err)
	}
	if _, err := s.PruneChanges(ctx, 0); !errors.Is(err, ErrClosed) {
		t.Errorf("PruneChanges after Close: %v", err)
	}
}

// ChangeAt names the write logged at a seq, and says when the log no
// longer holds it.
func TestChangeAt(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, "", Options{})
	if _, err := s.ChangeAt(ctx, 1); !errors.Is(err, ErrNotFound) {
		t.Fatalf("ChangeAt on an empty log: %v", err)
	}
	before := time.Now().Truncate(time.Millisecond)
	var ids []string
	for i := range 3 {
		e, _, err := s.PutExperience(ctx, Experience{Text: fmt.Sprintf("lesson %d", i), Confidence: 0.5})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, e.ID)
	}
	for i, id := range ids {
		c, err := s.ChangeAt(ctx, int64(i+1))
		if err != nil || c.Seq != int64(i+1) || c.ID != id || c.At.Before(before) || c.At.After(time.Now().Add(time.Second)) {
			t.Fatalf("ChangeAt(%d) = %+v, %v; want %s, written since %v", i+1, c, err, id, before)
		}
	}
	if _, err := s.PruneChanges(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ChangeAt(ctx, 1); !errors.Is(err, ErrNotFound) {
		t.Fatalf("ChangeAt of a pruned row: %v", err)
	}
	if c, err := s.ChangeAt(ctx, 3); err != nil || c.ID != ids[2] {
		t.Fatalf("ChangeAt of the kept row = %+v, %v", c, err)
	}
}
