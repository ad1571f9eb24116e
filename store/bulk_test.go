package store

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// A bulk load leaves no write-ahead log behind, even while another
// process (a running dso serve) holds the file open, so that closing the
// bulk writer's connection is not the last close that would remove it.
func TestBulkLoadTruncatesTheLog(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), FileName)
	other := openTest(t, path, Options{})
	if _, err := other.SchemaVersion(ctx); err != nil {
		t.Fatal(err)
	}
	bulk, err := Open(ctx, path, Options{BulkLoad: true})
	if err != nil {
		t.Fatal(err)
	}
	es := make([]Experience, 3000) // some 600 pages: text, code, id index
	for i := range es {
		es[i] = Experience{Text: fmt.Sprintf("bulk lesson %d", i), Domain: "bulk", Confidence: 0.5, Code: code(byte(i)), Space: "hash:8"}
	}
	if _, _, err := bulk.PutExperiences(ctx, es); err != nil {
		t.Fatal(err)
	}
	wal := path + "-wal"
	if fi, err := os.Stat(wal); err != nil || fi.Size() == 0 {
		t.Fatalf("log before Close: %v, %v; want the batch in it", fi, err)
	}
	if err := bulk.Close(); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(wal); err == nil && fi.Size() != 0 {
		t.Errorf("log after a bulk load's Close: %d bytes; want none", fi.Size())
	}
	got, err := other.GetExperiences(ctx, []string{ExperienceID("bulk", "bulk lesson 0"), ExperienceID("bulk", "bulk lesson 2999")})
	if err != nil || len(got) != 2 {
		t.Errorf("the other connection after the bulk load: %d of 2, %v", len(got), err)
	}
}
