package providers_test

import (
	"encoding/json"
	"slices"
	"testing"

	"github.com/dso-proxy/dso/providers"
	"github.com/ollama/ollama/api"
)

// legacyEmbedSeeds are /api/embeddings bodies, valid and not.
var legacyEmbedSeeds = []string{
	`{"model":"m","prompt":"hello"}`,
	`{"model":"m","prompt":"hi \u00e9\n","keep_alive":"5m","options":{"num_ctx":512}}`,
	`{"model":"m","prompt":""}`,
	`{"model":"m","prompt":"x","keep_alive":{}}`,
	`{"model":"","prompt":"x"}`,
	`{"model":"m","prompt":5}`,
	`{"model":"m"}`,
	`{"prompt":"x"}`,
	`[]`,
	`null`,
	``,
	`{"model":`,
}

func TestOllamaLegacyEmbedToOpenAI(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`{"model":"m","prompt":"hello"}`, `{"model":"m","input":"hello"}`},
		{`{"model":"m","prompt":"a\"b","keep_alive":0,"options":{"num_ctx":8}}`, `{"model":"m","input":"a\"b"}`},
		{`{"model":"m","prompt":""}`, ""},
		{`{"model":"m","prompt":[1]}`, ""},
		{`{"prompt":"x"}`, ""},
	} {
		out, info, err := providers.OllamaLegacyEmbedToOpenAI([]byte(tc.in))
		if tc.want == "" {
			if err == nil {
				t.Errorf("%s: got %s; want an error", tc.in, out)
			}
			continue
		}
		if err != nil || string(out) != tc.want || info.Model != "m" {
			t.Errorf("%s: got %s, %+v, %v; want %s", tc.in, out, info, err, tc.want)
		}
	}
}

func TestOpenAIEmbedResponseToOllamaLegacy(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.0023064255, -0.009327292,1e-7]}],"model":"m"}`, `{"embedding":[0.0023064255,-0.009327292,1e-7]}`},
		{`{"data":[{"index":1,"embedding":[1]},{"index":0,"embedding":[]}]}`, `{"embedding":[]}`},
		{`{"data":[{"index":0,"embedding":"AAAAAA=="}]}`, ""},
		{`{"data":[{"index":0,"embedding":null}]}`, ""},
		{`{"data":[{"index":1,"embedding":[1]}]}`, ""},
		{`{"data":[]}`, ""},
		{`{"error":{"message":"x"}}`, ""},
	} {
		out, err := providers.OpenAIEmbedResponseToOllamaLegacy([]byte(tc.in))
		if tc.want == "" {
			if err == nil {
				t.Errorf("%s: got %s; want an error", tc.in, out)
			}
			continue
		}
		if err != nil || string(out) != tc.want {
			t.Errorf("%s: got %s, %v; want %s", tc.in, out, err, tc.want)
		}
	}
}

// FuzzOllamaLegacyEmbedToOpenAI: on success the output is an OpenAI
// embeddings request for the same model whose one input is the prompt.
func FuzzOllamaLegacyEmbedToOpenAI(f *testing.F) {
	for _, s := range legacyEmbedSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		out, info, err := providers.OllamaLegacyEmbedToOpenAI(body)
		if err != nil {
			return
		}
		var in struct{ Model, Prompt string } // keep_alive, options: dropped
		if err := json.Unmarshal(body, &in); err != nil {
			t.Fatalf("accepted a body that does not decode: %q", body)
		}
		var got struct {
			Model string `json:"model"`
			Input string `json:"input"`
		}
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatalf("output %q: %v", out, err)
		}
		if got.Model != in.Model || got.Input != in.Prompt || info.Model != in.Model || in.Prompt == "" {
			t.Fatalf("%q became %q", body, out)
		}
	})
}

// FuzzOpenAIEmbedResponseToOllamaLegacy: on success the output is a legacy
// embeddings response whose vector is input 0's, number for number; the
// round trip through the legacy response back to OpenAI's shape keeps it.
func FuzzOpenAIEmbedResponseToOllamaLegacy(f *testing.F) {
	for _, s := range []string{
		`{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.0023064255,-0.009327292]}],"model":"m","usage":{"prompt_tokens":1,"total_tokens":1}}`,
		`{"data":[{"index":1,"embedding":[1]},{"index":0,"embedding":[2,3]}]}`,
		`{"data":[{"index":0,"embedding":"AAAAAA=="}]}`,
		`{"data":[{"index":0,"embedding":[1e400]}]}`,
		`{"data":[{"index":0}]}`,
		`{"data":null}`,
		`{}`,
		``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		out, err := providers.OpenAIEmbedResponseToOllamaLegacy(body)
		if err != nil {
			return
		}
		var got api.EmbeddingResponse
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatalf("output %q: %v", out, err)
		}
		var in struct {
			Data []struct {
				Index     int             `json:"index"`
				Embedding json.RawMessage `json:"embedding"`
			} `json:"data"`
		}
		if err := json.Unmarshal(body, &in); err != nil {
			t.Fatalf("accepted %q, which does not decode: %v", body, err)
		}
		var want []float64
		for _, d := range in.Data {
			if d.Index == 0 {
				if err := json.Unmarshal(d.Embedding, &want); err != nil {
					t.Fatalf("accepted %q, whose embedding is not numbers: %v", body, err)
				}
				break
			}
		}
		if want == nil || !slices.Equal(got.Embedding, want) {
			t.Fatalf("%q became %q", body, out)
		}
		back, err := json.Marshal(map[string]any{"data": []map[string]any{{"index": 0, "embedding": got.Embedding}}})
		if err != nil {
			t.Fatal(err)
		}
		again, err := providers.OpenAIEmbedResponseToOllamaLegacy(back)
		var twice api.EmbeddingResponse
		if err != nil || json.Unmarshal(again, &twice) != nil || !slices.Equal(twice.Embedding, got.Embedding) {
			t.Fatalf("round trip of %q: %q, %v", out, again, err)
		}
	})
}
