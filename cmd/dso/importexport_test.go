package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dso-proxy/dso/config"
	"github.com/dso-proxy/dso/store"
)

func TestImportExportRoundTrip(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	in := filepath.Join(dir, "in.jsonl")
	lines := `{"text":"Check the error from Close on written files.","domain":"code.go","confidence":0.9}
{"text":"Season soup at the end.","domain":"cooking"}

{"text":"Prefer small interfaces.","domain":"code.go","status":"retired"}
`
	if err := os.WriteFile(in, []byte(lines), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var out, errb bytes.Buffer
	args := []string{"import", "--data", data, "--embedder", "hash:256", "--file", in}
	if code := run(ctx, args, &out, &errb); code != 0 {
		t.Fatalf("import: %d %s", code, errb.String())
	}
	if !strings.Contains(out.String(), "imported 3 experiences (3 new") {
		t.Errorf("import said %q", out.String())
	}
	out.Reset()
	if code := run(ctx, args, &out, &errb); code != 0 || !strings.Contains(out.String(), "0 new, 3 already present") {
		t.Errorf("re-import: %d %q", code, out.String())
	}

	out.Reset()
	if code := run(ctx, []string{"export", "--data", data}, &out, &errb); code != 0 {
		t.Fatalf("export: %d %s", code, errb.String())
	}
	got := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(got) != 3 || !strings.Contains(out.String(), `"text":"Season soup at the end.","domain":"cooking","confidence":0.5,"status":"active"`) ||
		!strings.Contains(out.String(), `"status":"retired"`) {
		t.Errorf("export:\n%s", out.String())
	}

	// Every imported experience has a code, so the index rebuilds with all.
	st, err := store.OpenDir(ctx, data, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	cfg := config.Default()
	cfg.Retrieval.Embedder = "hash:256"
	lib, err := openLibrary(ctx, st, cfg, 0, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer lib.Close()
	if lib.Len() != 3 || lib.Stale() != 0 {
		t.Errorf("index holds %d, %d to re-embed; want 3, 0", lib.Len(), lib.Stale())
	}
}

func TestImportRejectsBadFileWhole(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	in := filepath.Join(dir, "bad.jsonl")
	os.WriteFile(in, []byte(`{"text":"fine lesson"}
{"text":""}
not json
{"text":"x","confidence":7}
`), 0o600)
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"import", "--data", data, "--embedder", "hash:64", "--file", in}, &out, &errb); code == 0 {
		t.Fatal("a bad file was accepted")
	}
	for _, want := range []string{"line 2: text is required", "line 3: not a JSON object", "line 4: confidence"} {
		if !strings.Contains(errb.String(), want) {
			t.Errorf("error lacks %q: %s", want, errb.String())
		}
	}
	if _, err := os.Stat(filepath.Join(data, store.FileName)); err == nil {
		t.Error("a store was written for a rejected file")
	}
}
