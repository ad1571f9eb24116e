package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dso-proxy/dso/config"
	"github.com/dso-proxy/dso/library"
	"github.com/dso-proxy/dso/store"
)

// Serve keeps its index in a snapshot beside the SQLite file: written when
// it closes, loaded when it starts again.
func TestServeKeepsIndexSnapshot(t *testing.T) {
	cfg := config.Default()
	cfg.Data = t.TempDir()
	rt, closeAll, err := openRetrieval(context.Background(), cfg, nil, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	var es []store.Experience
	for i := range 25 {
		es = append(es, store.Experience{Text: fmt.Sprintf("lesson %d: close what you open", i), Confidence: 0.8})
	}
	if _, _, err := rt.Library.AddMany(context.Background(), es); err != nil {
		t.Fatal(err)
	}
	closeAll()
	if _, err := os.Stat(filepath.Join(cfg.Data, library.SnapshotFile)); err != nil {
		t.Fatalf("serve wrote no snapshot beside its store: %v", err)
	}
	var logs bytes.Buffer
	rt, closeAll, err = openRetrieval(context.Background(), cfg, nil, slog.New(slog.NewJSONHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer closeAll()
	if !strings.Contains(logs.String(), "index loaded from its snapshot") || rt.Library.Len() != len(es) {
		t.Fatalf("the restart holds %d experiences, logging %s", rt.Library.Len(), logs.String())
	}
}

// Replicas over Redis keep no snapshot.
func TestNoSnapshotOverRedis(t *testing.T) {
	cfg := config.Default()
	cfg.Data = t.TempDir()
	var lc library.Config
	withSnapshot(cfg)(&lc)
	if lc.Snapshot != filepath.Join(cfg.Data, library.SnapshotFile) {
		t.Fatalf("SQLite: snapshot %q", lc.Snapshot)
	}
	cfg.Redis = "redis://127.0.0.1:47999/0"
	lc = library.Config{}
	withSnapshot(cfg)(&lc)
	if lc.Snapshot != "" {
		t.Fatalf("Redis: snapshot %q", lc.Snapshot)
	}
}
