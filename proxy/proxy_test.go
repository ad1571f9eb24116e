package proxy_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/dso-proxy/dso/config"
	"github.com/ollama/ollama/api"
	openai "github.com/sashabaranov/go-openai"
)

func openaiClient(fe *frontend) *openai.Client {
	c := openai.DefaultConfig("client-key")
	c.BaseURL = fe.URL + "/v1"
	return openai.NewClientWithConfig(c)
}

func ollamaClient(t testing.TB, fe *frontend) *api.Client {
	u, err := url.Parse(fe.URL)
	if err != nil {
		t.Fatal(err)
	}
	return api.NewClient(u, http.DefaultClient)
}

// An unknown request field reaches an OpenAI backend unchanged (the body is
// byte-identical) and an unknown response field reaches the client.
func TestOpenAIPassthroughIsLossless(t *testing.T) {
	be := newBackend(t, "openai")
	fe := newFrontend(t, []config.Backend{openaiCfg(be)})
	reqBody := `{"model":"gpt-4o","messages":[{"role":"user","content":"Capital of France?"}],"x_unknown":{"keep":[1,2.50,null]},"temperature":0.2}`
	code, hdr, body := post(t, fe.URL+"/v1/chat/completions", reqBody)
	if code != http.StatusOK {
		t.Fatalf("status %d: %s", code, body)
	}
	if got := string(be.last(t).Body); got != reqBody {
		t.Errorf("backend got %q; want %q", got, reqBody)
	}
	if want := golden(t, "openai/chat.json"); !bytes.Equal(body, want) {
		t.Errorf("client got %q; want %q", body, want)
	}
	if hdr.Get("X-Backend-Header") != "kept" {
		t.Errorf("backend response header lost: %v", hdr)
	}
	if hdr.Get("X-Request-Id") == "" {
		t.Error("no X-Request-Id on the response")
	}
}

// The go-openai client works through dso, streamed and not, and the final
// usage chunk arrives.
func TestOpenAIClientChat(t *testing.T) {
	for _, typ := range []string{"openai", "ollama"} {
		t.Run("backend="+typ, func(t *testing.T) {
			be := newBackend(t, typ)
			cfg := openaiCfg(be)
			if typ == "ollama" {
				cfg = ollamaCfg(be)
			}
			fe := newFrontend(t, []config.Backend{cfg})
			c := openaiClient(fe)
			ctx := context.Background()
			req := openai.ChatCompletionRequest{
				Model:     "m",
				Messages:  []openai.ChatCompletionMessage{{Role: "user", Content: "Capital of France?"}},
				MaxTokens: 50,
			}
			resp, err := c.CreateChatCompletion(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			if got := resp.Choices[0].Message.Content; got != "The capital of France is Paris." {
				t.Errorf("content %q", got)
			}
			if resp.Usage.CompletionTokens != 8 {
				t.Errorf("usage %+v", resp.Usage)
			}

			req.Stream = true
			req.StreamOptions = &openai.StreamOptions{IncludeUsage: true}
			st, err := c.CreateChatCompletionStream(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			var text strings.Builder
			var usage *openai.Usage
			var finish openai.FinishReason
			for {
				ch, err := st.Recv()
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				if ch.Usage != nil {
					usage = ch.Usage
				}
				for _, c := range ch.Choices {
					text.WriteString(c.Delta.Content)
					if c.FinishReason != "" {
						finish = c.FinishReason
					}
				}
			}
			if got := text.String(); got != "The capital of France is Paris." {
				t.Errorf("streamed %q", got)
			}
			if usage == nil || usage.CompletionTokens != 8 {
				t.Errorf("usage chunk %+v", usage)
			}
			if finish != openai.FinishReasonStop {
				t.Errorf("finish %q", finish)
			}
			if typ == "ollama" {
				var got struct {
					Options map[string]any `json:"options"`
					Stream  bool           `json:"stream"`
				}
				json.Unmarshal(be.last(t).Body, &got)
				if got.Options["num_predict"] != float64(50) || !got.Stream {
					t.Errorf("translated request: %s", be.last(t).Body)
				}
			}
		})
	}
}

// Streamed bytes from an OpenAI backend reach the client unchanged.
func TestOpenAIStreamBytesUnchanged(t *testing.T) {
	be := newBackend(t, "openai")
	fe := newFrontend(t, []config.Backend{openaiCfg(be)})
	code, hdr, body := post(t, fe.URL+"/chat/completions", `{"model":"m","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}`)
	if code != 200 {
		t.Fatalf("status %d: %s", code, body)
	}
	if want := golden(t, "openai/chat_stream.sse"); !bytes.Equal(body, want) {
		t.Errorf("client got %q; want %q", body, want)
	}
	if ct := hdr.Get("Content-Type"); ct != "text/event-stream" {
		t.Errorf("content type %q", ct)
	}
}

func TestOpenAIToolCalls(t *testing.T) {
	tool := openai.Tool{Type: "function", Function: &openai.FunctionDefinition{
		Name: "get_weather", Parameters: json.RawMessage(`{"type":"object","properties":{"location":{"type":"string"}},"required":["location"]}`),
	}}
	for _, typ := range []string{"openai", "ollama"} {
		for _, stream := range []bool{false, true} {
			t.Run(typ+map[bool]string{true: "/stream", false: ""}[stream], func(t *testing.T) {
				be := newBackend(t, typ)
				cfg := openaiCfg(be)
				if typ == "ollama" {
					cfg = ollamaCfg(be)
				}
				fe := newFrontend(t, []config.Backend{cfg})
				c := openaiClient(fe)
				req := openai.ChatCompletionRequest{Model: "m", Tools: []openai.Tool{tool}, Messages: []openai.ChatCompletionMessage{
					{Role: "user", Content: "Weather in Paris?"},
					{Role: "assistant", ToolCalls: []openai.ToolCall{{ID: "call_1", Type: "function", Function: openai.FunctionCall{Name: "get_weather", Arguments: `{"location":"Lyon"}`}}}},
					{Role: "tool", ToolCallID: "call_1", Content: "12C"},
					{Role: "user", Content: "And Paris?"},
				}}
				var name, args string
				if !stream {
					resp, err := c.CreateChatCompletion(context.Background(), req)
					if err != nil {
						t.Fatal(err)
					}
					tc := resp.Choices[0].Message.ToolCalls
					if len(tc) != 1 || resp.Choices[0].FinishReason != openai.FinishReasonToolCalls {
						t.Fatalf("tool calls %+v finish %q", tc, resp.Choices[0].FinishReason)
					}
					name, args = tc[0].Function.Name, tc[0].Function.Arguments
				} else {
					req.Stream = true
					st, err := c.CreateChatCompletionStream(context.Background(), req)
					if err != nil {
						t.Fatal(err)
					}
					defer st.Close()
					for {
						ch, err := st.Recv()
						if errors.Is(err, io.EOF) {
							break
						}
						if err != nil {
							t.Fatal(err)
						}
						for _, c := range ch.Choices {
							for _, tc := range c.Delta.ToolCalls {
								if tc.Function.Name != "" {
									name = tc.Function.Name
								}
								args += tc.Function.Arguments
							}
						}
					}
				}
				var a map[string]string
				if err := json.Unmarshal([]byte(args), &a); err != nil || name != "get_weather" || a["location"] != "Paris, France" {
					t.Errorf("tool call %q(%q)", name, args)
				}
				if typ == "ollama" {
					var got api.ChatRequest
					if err := json.Unmarshal(be.last(t).Body, &got); err != nil {
						t.Fatal(err)
					}
					if len(got.Tools) != 1 || got.Tools[0].Function.Name != "get_weather" {
						t.Errorf("tools not translated: %s", be.last(t).Body)
					}
					m := got.Messages[1]
					if len(m.ToolCalls) != 1 {
						t.Fatalf("assistant tool call not translated: %s", be.last(t).Body)
					}
					if loc, _ := m.ToolCalls[0].Function.Arguments.Get("location"); loc != "Lyon" {
						t.Errorf("tool call arguments: %s", be.last(t).Body)
					}
					if got.Messages[2].Role != "tool" || got.Messages[2].ToolCallID != "call_1" {
						t.Errorf("tool message: %+v", got.Messages[2])
					}
				}
			})
		}
	}
}

// Multi-part content (text and a data-URL image) becomes Ollama's text and
// images.
func TestOpenAIMultipartContentToOllama(t *testing.T) {
	be := newBackend(t, "ollama")
	fe := newFrontend(t, []config.Backend{ollamaCfg(be)})
	code, _, body := post(t, fe.URL+"/v1/chat/completions", `{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"What is this?"},{"type":"image_url","image_url":{"url":"data:image/png;base64,iVBORw0KGgo="}}]}]}`)
	if code != 200 {
		t.Fatalf("status %d: %s", code, body)
	}
	var got api.ChatRequest
	if err := json.Unmarshal(be.last(t).Body, &got); err != nil {
		t.Fatal(err)
	}
	m := got.Messages[0]
	if m.Content != "What is this?" || len(m.Images) != 1 || !bytes.HasPrefix(m.Images[0], []byte("\x89PNG")) {
		t.Errorf("message %+v", m)
	}
}

// The ollama/api client works through dso against both backend types.
func TestOllamaClientChatAndGenerate(t *testing.T) {
	for _, typ := range []string{"ollama", "openai"} {
		t.Run("backend="+typ, func(t *testing.T) {
			be := newBackend(t, typ)
			cfg := ollamaCfg(be)
			if typ == "openai" {
				cfg = openaiCfg(be)
			}
			fe := newFrontend(t, []config.Backend{cfg})
			c := ollamaClient(t, fe)
			ctx := context.Background()
			for _, stream := range []bool{true, false} {
				var text strings.Builder
				var final api.ChatResponse
				n := 0
				err := c.Chat(ctx, &api.ChatRequest{Model: "llama3.2", Stream: &stream, Messages: []api.Message{{Role: "user", Content: "Capital of France?"}}, Options: map[string]any{"num_predict": 40, "temperature": 0.1}}, func(r api.ChatResponse) error {
					n++
					text.WriteString(r.Message.Content)
					if r.Done {
						final = r
					}
					return nil
				})
				if err != nil {
					t.Fatal(err)
				}
				if got := text.String(); got != "The capital of France is Paris." {
					t.Errorf("stream=%v: text %q", stream, got)
				}
				if !final.Done || final.EvalCount != 8 || final.DoneReason != "stop" {
					t.Errorf("stream=%v: final %+v", stream, final)
				}
				if stream && n < 3 {
					t.Errorf("stream=%v: %d messages, want a stream", stream, n)
				}
				if typ == "openai" {
					var got map[string]any
					json.Unmarshal(be.last(t).Body, &got)
					if got["max_tokens"] != float64(40) || got["temperature"] != 0.1 || got["stream"] != stream {
						t.Errorf("translated request %s", be.last(t).Body)
					}
				}
			}
			var gen strings.Builder
			var done bool
			err := c.Generate(ctx, &api.GenerateRequest{Model: "llama3.2", Prompt: "Capital of France?", System: "Be brief."}, func(r api.GenerateResponse) error {
				gen.WriteString(r.Response)
				done = done || r.Done
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if gen.Len() == 0 || !done {
				t.Errorf("generate %q done=%v", gen.String(), done)
			}
			if typ == "openai" && !strings.Contains(string(be.last(t).Body), `{"content":"Be brief.","role":"system"}`) {
				t.Errorf("generate system prompt not translated: %s", be.last(t).Body)
			}
		})
	}
}

// Streamed NDJSON from an Ollama backend reaches an Ollama client unchanged.
func TestOllamaStreamBytesUnchanged(t *testing.T) {
	be := newBackend(t, "ollama")
	fe := newFrontend(t, []config.Backend{ollamaCfg(be)})
	reqBody := `{"model":"llama3.2","messages":[{"role":"user","content":"hi"}],"keep_alive":"5m","x_unknown":true}`
	code, hdr, body := post(t, fe.URL+"/api/chat", reqBody)
	if code != 200 {
		t.Fatalf("status %d: %s", code, body)
	}
	if want := golden(t, "ollama/chat_stream.ndjson"); !bytes.Equal(body, want) {
		t.Errorf("client got %q; want %q", body, want)
	}
	if got := string(be.last(t).Body); got != reqBody {
		t.Errorf("backend got %q; want %q", got, reqBody)
	}
	if ct := hdr.Get("Content-Type"); ct != "application/x-ndjson" {
		t.Errorf("content type %q", ct)
	}
}

func TestOllamaToolCallsFromOpenAIBackend(t *testing.T) {
	be := newBackend(t, "openai")
	fe := newFrontend(t, []config.Backend{openaiCfg(be)})
	c := ollamaClient(t, fe)
	var calls []api.ToolCall
	tools := api.Tools{}
	if err := json.Unmarshal([]byte(`[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object","properties":{"location":{"type":"string"}}}}}]`), &tools); err != nil {
		t.Fatal(err)
	}
	for _, stream := range []bool{true, false} {
		calls = nil
		err := c.Chat(context.Background(), &api.ChatRequest{Model: "m", Stream: &stream, Tools: tools, Messages: []api.Message{{Role: "user", Content: "Weather?"}}}, func(r api.ChatResponse) error {
			calls = append(calls, r.Message.ToolCalls...)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(calls) != 1 || calls[0].Function.Name != "get_weather" {
			t.Fatalf("stream=%v: calls %+v", stream, calls)
		}
		if loc, _ := calls[0].Function.Arguments.Get("location"); loc != "Paris, France" {
			t.Errorf("stream=%v: arguments %v", stream, calls[0].Function.Arguments)
		}
	}
}

func TestEmbeddings(t *testing.T) {
	t.Run("openai surface, openai backend", func(t *testing.T) {
		be := newBackend(t, "openai")
		fe := newFrontend(t, []config.Backend{openaiCfg(be)})
		res, err := openaiClient(fe).CreateEmbeddings(context.Background(), openai.EmbeddingRequest{Model: "text-embedding-3-small", Input: []string{"a", "b"}})
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Data) != 2 || res.Data[1].Embedding[3] != 0.021234486 {
			t.Errorf("embeddings %+v", res.Data)
		}
	})
	t.Run("openai surface, ollama backend", func(t *testing.T) {
		be := newBackend(t, "ollama")
		fe := newFrontend(t, []config.Backend{ollamaCfg(be)})
		res, err := openaiClient(fe).CreateEmbeddings(context.Background(), openai.EmbeddingRequest{Model: "nomic-embed-text", Input: []string{"a", "b"}})
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Data) != 2 || res.Data[1].Index != 1 || res.Data[0].Embedding[0] != 0.010071029 {
			t.Errorf("embeddings %+v", res.Data)
		}
	})
	for _, typ := range []string{"ollama", "openai"} {
		t.Run("ollama surface, "+typ+" backend", func(t *testing.T) {
			be := newBackend(t, typ)
			cfg := ollamaCfg(be)
			if typ == "openai" {
				cfg = openaiCfg(be)
			}
			fe := newFrontend(t, []config.Backend{cfg})
			res, err := ollamaClient(t, fe).Embed(context.Background(), &api.EmbedRequest{Model: "e", Input: []string{"a", "b"}})
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Embeddings) != 2 || len(res.Embeddings[0]) != 4 {
				t.Errorf("embeddings %+v", res)
			}
		})
	}
}

// Models are merged over backends; each backend lists only the models the
// router would send to it.
func TestModelsMerged(t *testing.T) {
	oa, ol := newBackend(t, "openai"), newBackend(t, "ollama")
	ocfg := openaiCfg(oa)
	ocfg.Models = []string{"gpt-*", "text-embedding-*"}
	fe := newFrontend(t, []config.Backend{ocfg, ollamaCfg(ol)})
	list, err := openaiClient(fe).ListModels(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, m := range list.Models {
		ids = append(ids, m.ID)
	}
	want := "gpt-4o-2024-08-06,text-embedding-3-small,llama3.2:latest,nomic-embed-text:latest"
	if got := strings.Join(ids, ","); got != want {
		t.Errorf("models %q; want %q", got, want)
	}
	tags, err := ollamaClient(t, fe).List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(tags.Models) != 4 || tags.Models[2].Details.Family != "llama" {
		t.Errorf("tags %+v", tags.Models)
	}
	v, err := ollamaClient(t, fe).Version(context.Background())
	if err != nil || v != "0.17.4" {
		t.Errorf("version %q, %v", v, err)
	}
}

// Paths without /v1 are served too.
func TestPathsWithoutV1(t *testing.T) {
	be := newBackend(t, "openai")
	fe := newFrontend(t, []config.Backend{openaiCfg(be)})
	resp, err := http.Get(fe.URL + "/models")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("GET /models: %d", resp.StatusCode)
	}
}
