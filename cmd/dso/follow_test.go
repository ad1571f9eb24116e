package main

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/dso-proxy/dso/config"
	"github.com/dso-proxy/dso/store"
)

// A running serve searches what `dso import` writes to its data directory
// afterwards, without a restart. The search endpoint answers from the
// index (GET /v1/experiences/{id} would read the store and prove nothing).
func TestServeFollowsImport(t *testing.T) {
	data := t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + ln.Addr().String()
	cfg := config.Default()
	cfg.Listen = ln.Addr().String()
	cfg.Data = data
	cfg.Retrieval.Embedder = "hash"
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	serveUntilStopped(t, ln, cfg, slog.New(slog.DiscardHandler))

	text := "Check the error from Close on written files."
	id := store.ExperienceID("code.go", text)
	search := base + "/v1/experiences/search?q=" + url.QueryEscape(text)
	client := &http.Client{Timeout: wait}
	defer client.CloseIdleConnections()
	// found reports whether the search lists id; ok is false while the
	// search does not answer 200 (serve still starting).
	found := func() (hit, ok bool) {
		resp, err := client.Get(search)
		if err != nil {
			return false, false
		}
		defer resp.Body.Close()
		var page struct{ Data []struct{ ID string } }
		if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&page) != nil {
			return false, false
		}
		for _, d := range page.Data {
			if d.ID == id {
				return true, true
			}
		}
		return false, true
	}
	poll := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(wait)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting: %s", what)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	poll("serve answers searches", func() bool { _, ok := found(); return ok })
	if hit, _ := found(); hit {
		t.Fatal("the experience is found before it was imported")
	}

	in := filepath.Join(t.TempDir(), "in.jsonl")
	if err := os.WriteFile(in, []byte(`{"text":"`+text+`","domain":"code.go","confidence":0.9}`+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"import", "--data", data, "--embedder", "hash", "--file", in}, &out, &errb); code != 0 {
		t.Fatalf("import: exit %d: %s", code, errb.String())
	}
	poll("serve searches the imported experience", func() bool { hit, _ := found(); return hit })
}
