package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dso-proxy/dso/align"
	"github.com/dso-proxy/dso/providers"
)

// dso align fit embeds the anchors through a backend's embedding model
// (an OpenAI-compatible server here) when given model:NAME.
func TestAlignFitThroughBackend(t *testing.T) {
	hash := providers.NewHashEmbedder(64, 9)
	var calls, texts int
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Model string   `json:"model"`
			Input []string `json:"input"`
		}
		if r.URL.Path != "/v1/embeddings" || json.NewDecoder(r.Body).Decode(&req) != nil || req.Model != "fake-embed" {
			http.Error(w, `{"error":{"message":"bad request"}}`, 400)
			return
		}
		calls++
		texts += len(req.Input)
		vs, _ := hash.Embed(r.Context(), req.Input)
		data := make([]map[string]any, len(vs))
		for i, v := range vs {
			data[i] = map[string]any{"object": "embedding", "index": i, "embedding": v}
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"object": "list", "data": data, "model": req.Model})
	}))
	defer be.Close()

	dir := t.TempDir()
	anchors := filepath.Join(dir, "anchors.txt")
	var lines []string
	for i := 0; i < 300; i++ {
		lines = append(lines, fmt.Sprintf("anchor sentence %d about topic %d and item %d", i, i%17, i%5))
	}
	os.WriteFile(anchors, []byte(strings.Join(lines, "\n")), 0o600)
	out := filepath.Join(dir, "a.dsoalign")
	var so, se bytes.Buffer
	args := []string{"--from", "model:fake-embed", "--backend", "openai:" + be.URL + "/v1", "--to", "hash:32", "--anchors", anchors, "--out", out}
	if err := alignFit(context.Background(), args, &so, &se); err != nil {
		t.Fatal(err, se.String())
	}
	if texts != 300 || calls < 2 {
		t.Errorf("backend embedded %d texts in %d calls; want 300 in batches", texts, calls)
	}
	a, err := align.LoadAdapter(out)
	if err != nil {
		t.Fatal(err)
	}
	if a.In != 64 || a.Out != 32 {
		t.Errorf("adapter %d→%d; want 64→32", a.In, a.Out)
	}
}
