package proxy_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/dso-proxy/dso/config"
	oai "github.com/openai/openai-go/v3"
)

// Legacy completions through the official client: relayed byte for byte
// to an OpenAI backend that has them, translated to chat for an Ollama
// backend and for an OpenAI-type server that answers 404, streamed or not.
func TestCompletions(t *testing.T) {
	for _, c := range []struct {
		name, typ string
		chatOnly  bool
		want      string
	}{
		{"relayed", "openai", false, "\n\nThis is indeed a test"},
		{"ollama", "ollama", false, "The capital of France is Paris."},
		{"chat-only openai", "openai", true, "The capital of France is Paris."},
	} {
		t.Run(c.name, func(t *testing.T) {
			be := newBackend(t, c.typ)
			if c.chatOnly {
				be.setOverride(func(w http.ResponseWriter, r *http.Request, body []byte) bool {
					if r.URL.Path == "/v1/completions" {
						http.Error(w, "404 page not found", http.StatusNotFound)
						return true
					}
					return false
				})
			}
			fe := newFrontend(t, []config.Backend{backendCfg(c.typ, be)})
			cl := responsesClient(fe)
			ctx := context.Background()
			params := oai.CompletionNewParams{Model: "m", Prompt: oai.CompletionNewParamsPromptUnion{OfString: oai.String("Capital of France?")}, MaxTokens: oai.Int(20)}
			got, err := cl.Completions.New(ctx, params)
			if err != nil {
				t.Fatal(err)
			}
			if len(got.Choices) != 1 || got.Choices[0].Text != c.want || got.Usage.TotalTokens == 0 {
				t.Errorf("completion %+v; want text %q with usage", got, c.want)
			}
			last := be.last(t)
			if c.name == "relayed" {
				if last.Path != "/v1/completions" || !strings.Contains(string(last.Body), `"prompt":"Capital of France?"`) {
					t.Errorf("backend got %s %s", last.Path, last.Body)
				}
				return
			}
			if fc := lastChat(t, be); roles(fc) != "user" || !strings.Contains(string(fc.Messages[0].Content), "Capital of France?") {
				t.Errorf("backend got %s", last.Body)
			}
			stream := cl.Completions.NewStreaming(ctx, params)
			var text strings.Builder
			for stream.Next() {
				ch := stream.Current()
				if len(ch.Choices) > 0 {
					text.WriteString(ch.Choices[0].Text)
				}
			}
			if err := stream.Err(); err != nil || text.String() != c.want {
				t.Errorf("streamed %q, %v; want %q", text.String(), err, c.want)
			}
		})
	}
	be := newBackend(t, "ollama")
	fe := newFrontend(t, []config.Backend{ollamaCfg(be)})
	code, _, body := post(t, fe.URL+"/v1/completions", `{"model":"m","prompt":"x","echo":true}`)
	if code != http.StatusBadRequest || !strings.Contains(string(body), "echo") {
		t.Errorf("echo over a chat backend: %d %s; want 400 naming echo", code, body)
	}
}
