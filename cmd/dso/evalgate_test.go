package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"

	"github.com/dso-proxy/dso/internal/shareddata"
	"github.com/dso-proxy/dso/providers"
)

// lexicalBackend is an OpenAI-compatible backend whose embedding model is
// a hashed lexical embedder in its own space (1024 dims, its own seed): a
// stand-in for a backend's embedding model, as different from dso's
// built-in space as another model would be.
func lexicalBackend(t *testing.T) *httptest.Server {
	h := providers.NewHashEmbedder(1024, 99)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/embeddings" {
			http.Error(w, `{"error":{"message":"not here"}}`, http.StatusNotFound)
			return
		}
		var req struct {
			Input []string `json:"input"`
			Model string   `json:"model"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.Model != "lexical" {
			http.Error(w, `{"error":{"message":"bad request"}}`, http.StatusBadRequest)
			return
		}
		vs, _ := h.Embed(r.Context(), req.Input)
		type item struct {
			Object    string    `json:"object"`
			Index     int       `json:"index"`
			Embedding []float32 `json:"embedding"`
		}
		data := make([]item, len(vs))
		for i, v := range vs {
			data[i] = item{"embedding", i, v}
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"object": "list", "data": data, "model": req.Model})
	}))
	t.Cleanup(srv.Close)
	return srv
}

// The relevance gate meets its targets on the STS-B dev split through the
// served path, with the defaults, in two spaces: GloVe word vectors and a
// backend's lexical embedding model. (The built-in default, hash:2048, is
// the same kind of space as the second: dso eval gate --pairs FILE.)
//
//	go test -run TestEvalGate -v ./cmd/dso   (logs each curve)
func TestEvalGate(t *testing.T) {
	if testing.Short() {
		t.Skip("stores 2,520 experiences per space")
	}
	pairs := filepath.Join(shareddata.Dir(t), "stsb", "stsb-en-dev.csv")
	be := lexicalBackend(t)
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"glove", []string{"--embedder", "wordvec:" + shareddata.GloVe(t)}},
		{"backend-lexical", []string{"--backend", "openai:" + be.URL + "/v1", "--embedder", "model:lexical"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			args := append([]string{"eval", "gate", "--pairs", pairs}, tc.args...)
			if code := run(context.Background(), args, &out, &errb); code != 0 {
				t.Fatalf("eval gate: %d\n%s", code, errb.String())
			}
			var rep gateReport
			if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
				t.Fatal(err)
			}
			for _, p := range rep.Curve {
				t.Logf("min score %6.3f: hit %.3f, false injection %.3f", p.MinScore, p.Hit, p.FalseInjection)
			}
			t.Logf("%s: gate %.3f: hit %.3f, false injection %.3f (%d experiences, %d+%d questions)",
				rep.Space, rep.Gate, rep.Default.Hit, rep.Default.FalseInjection, rep.Corpus, rep.Positives, rep.Negatives)
			if rep.Corpus < 2000 || rep.Positives < 100 || rep.Negatives < 100 {
				t.Fatalf("split: %d experiences, %d+%d questions", rep.Corpus, rep.Positives, rep.Negatives)
			}
			if rep.Default.Hit < 0.70 || rep.Default.FalseInjection > 0.35 {
				t.Errorf("%s at the default gate: hit %.3f (want >= 0.70), false injection %.3f (want <= 0.35)",
					rep.Space, rep.Default.Hit, rep.Default.FalseInjection)
			}
			// The gate is what makes the difference: with none, every
			// unrelated question gets notes.
			if rep.Curve[0].FalseInjection < 0.9 {
				t.Errorf("without a gate only %.3f of unrelated questions got notes; the split is not testing the gate", rep.Curve[0].FalseInjection)
			}
		})
	}
}
