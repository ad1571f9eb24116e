package proxy_test

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	sdk "github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/anthropics/anthropic-sdk-go/v2/option"
	"github.com/dso-proxy/dso/config"
	"github.com/dso-proxy/dso/inject"
	"github.com/dso-proxy/dso/proxy"
	"github.com/dso-proxy/dso/store"
)

// anthropicClient is the official Anthropic client pointed at dso, as
// Claude Code is with ANTHROPIC_BASE_URL.
func anthropicClient(fe *frontend, opts ...option.RequestOption) sdk.Client {
	base := []option.RequestOption{option.WithoutEnvironmentDefaults(), option.WithBaseURL(fe.URL), option.WithAPIKey("client-key"), option.WithMaxRetries(0)}
	return sdk.NewClient(append(base, opts...)...)
}

var messagesWeatherTool = sdk.ToolUnionParam{OfTool: &sdk.ToolParam{
	Name: "get_weather", Description: sdk.String("The weather in a city"),
	InputSchema: sdk.ToolInputSchemaParam{Properties: map[string]any{"location": map[string]any{"type": "string"}}, Required: []string{"location"}},
}}

// toolTurns is a conversation that has used the tool once already.
func toolTurns() []sdk.MessageParam {
	return []sdk.MessageParam{
		sdk.NewUserMessage(sdk.NewTextBlock("Weather in Lyon?")),
		sdk.NewAssistantMessage(sdk.NewTextBlock("Checking."), sdk.NewToolUseBlock("toolu_lyon", map[string]any{"location": "Lyon"}, "get_weather")),
		sdk.NewUserMessage(sdk.NewToolResultBlock("toolu_lyon", "12C", false), sdk.NewTextBlock("And Paris?")),
	}
}

func newMessage(t *testing.T, c sdk.Client, p sdk.MessageNewParams, stream bool) *sdk.Message {
	t.Helper()
	ctx := context.Background()
	if !stream {
		m, err := c.Messages.New(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	st := c.Messages.NewStreaming(ctx, p)
	defer st.Close()
	var m sdk.Message
	for st.Next() {
		if err := m.Accumulate(st.Current()); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.Err(); err != nil {
		t.Fatal(err)
	}
	return &m
}

func messageText(m *sdk.Message) string {
	var b strings.Builder
	for _, c := range m.Content {
		if c.Type == "text" {
			b.WriteString(c.Text)
		}
	}
	return b.String()
}

var backendTypes = []string{"openai", "ollama", "anthropic"}

// The official client creates and streams messages through dso over
// every backend type.
func TestAnthropicClientMessages(t *testing.T) {
	for _, typ := range backendTypes {
		for _, stream := range []bool{false, true} {
			t.Run(typ+map[bool]string{true: "/stream"}[stream], func(t *testing.T) {
				be := newBackend(t, typ)
				fe := newFrontend(t, []config.Backend{cfgFor(be)})
				m := newMessage(t, anthropicClient(fe), sdk.MessageNewParams{
					Model: "claude-sonnet-4-5", MaxTokens: 50, System: []sdk.TextBlockParam{{Text: "Be brief."}},
					Messages: []sdk.MessageParam{sdk.NewUserMessage(sdk.NewTextBlock("Capital of France?"))},
				}, stream)
				if got := messageText(m); got != "The capital of France is Paris." {
					t.Errorf("text %q", got)
				}
				if m.StopReason != sdk.StopReasonEndTurn || m.Usage.OutputTokens != 8 || m.Role != "assistant" {
					t.Errorf("stop %q usage %+v", m.StopReason, m.Usage)
				}
				got := be.last(t)
				switch typ {
				case "anthropic":
					// The client's own anthropic-version is relayed.
					if got.Path != "/v1/messages" || got.Header.Get("Anthropic-Version") == "" || got.Header.Get("Authorization") != "Bearer client-key" {
						t.Errorf("backend got %s %v", got.Path, got.Header)
					}
				case "openai":
					var req struct {
						Messages      []map[string]any `json:"messages"`
						MaxTokens     int              `json:"max_tokens"`
						StreamOptions map[string]bool  `json:"stream_options"`
					}
					json.Unmarshal(got.Body, &req)
					if req.MaxTokens != 50 || req.Messages[0]["role"] != "system" || req.Messages[0]["content"] != "Be brief." || stream != req.StreamOptions["include_usage"] {
						t.Errorf("backend got %s", got.Body)
					}
				}
			})
		}
	}
}

// A tool_use answer, and the tool_result sent back for it, go through dso
// over every backend type, streamed and not.
func TestAnthropicClientTools(t *testing.T) {
	for _, typ := range backendTypes {
		for _, stream := range []bool{false, true} {
			t.Run(typ+map[bool]string{true: "/stream"}[stream], func(t *testing.T) {
				be := newBackend(t, typ)
				fe := newFrontend(t, []config.Backend{cfgFor(be)})
				c := anthropicClient(fe)
				p := sdk.MessageNewParams{Model: "claude-sonnet-4-5", MaxTokens: 100, Tools: []sdk.ToolUnionParam{messagesWeatherTool}, Messages: toolTurns()}
				m := newMessage(t, c, p, stream)
				var use *sdk.ContentBlockUnion
				for i := range m.Content {
					if m.Content[i].Type == "tool_use" {
						use = &m.Content[i]
					}
				}
				if use == nil || m.StopReason != sdk.StopReasonToolUse {
					t.Fatalf("no tool_use: %+v", m)
				}
				var input struct{ Location string }
				if json.Unmarshal(use.Input, &input); use.Name != "get_weather" || input.Location != "Paris, France" || use.ID == "" {
					t.Errorf("tool_use %s %s %s", use.ID, use.Name, use.Input)
				}
				checkToolHistory(t, typ, be.last(t).Body)

				// The round trip: the answer back as history, with its result.
				p.Messages = append(p.Messages, m.ToParam(), sdk.NewUserMessage(sdk.NewToolResultBlock(use.ID, "15C", false)))
				newMessage(t, c, p, stream)
				if body := be.last(t).Body; !bytes.Contains(body, []byte(`"`+use.ID+`"`)) || !bytes.Contains(body, []byte("15C")) {
					t.Errorf("the tool result for %s did not reach the backend: %s", use.ID, body)
				}
			})
		}
	}
}

// checkToolHistory checks that the earlier tool call and its result
// reached the backend in its own format.
func checkToolHistory(t *testing.T, typ string, body []byte) {
	t.Helper()
	var req struct {
		Messages []struct {
			Role       string          `json:"role"`
			Content    json.RawMessage `json:"content"`
			ToolCallID string          `json:"tool_call_id"`
			ToolCalls  []struct {
				ID       string `json:"id"`
				Function struct {
					Name      string          `json:"name"`
					Arguments json.RawMessage `json:"arguments"`
				} `json:"function"`
			} `json:"tool_calls"`
		} `json:"messages"`
		Tools []json.RawMessage `json:"tools"`
	}
	if err := json.Unmarshal(body, &req); err != nil || len(req.Tools) != 1 {
		t.Fatalf("backend got %s", body)
	}
	switch typ {
	case "openai", "ollama":
		// user, assistant (text + call), tool, user
		if len(req.Messages) != 4 || req.Messages[1].Role != "assistant" || len(req.Messages[1].ToolCalls) != 1 || req.Messages[2].Role != "tool" || req.Messages[3].Role != "user" {
			t.Fatalf("backend got %s", body)
		}
		tc := req.Messages[1].ToolCalls[0]
		args := string(tc.Function.Arguments)
		if typ == "openai" && (tc.ID != "toolu_lyon" || req.Messages[2].ToolCallID != "toolu_lyon" || args != `"{\"location\":\"Lyon\"}"`) {
			t.Errorf("openai backend got %s", body)
		}
		if typ == "ollama" && (args != `{"location":"Lyon"}` || string(req.Messages[2].Content) != `"12C"`) {
			t.Errorf("ollama backend got %s", body)
		}
	case "anthropic":
		if !bytes.Contains(body, []byte(`"tool_use_id":"toolu_lyon"`)) || !bytes.Contains(body, []byte(`"id":"toolu_lyon"`)) {
			t.Errorf("anthropic backend got %s", body)
		}
	}
}

// Over an anthropic backend the client's bytes reach it unchanged but
// for the notes in system (exactly unchanged with injection off), and the
// backend's bytes reach the client unchanged.
func TestAnthropicNativeIsLossless(t *testing.T) {
	be := newBackend(t, "anthropic")
	lib := newHashLibrary(t)
	everything := -1.0
	fe := newFrontend(t, []config.Backend{anthropicCfg(be)}, func(o *proxy.Options, cfgs []config.Backend) {
		o.Retrieval = proxy.Retrieval{Library: lib, Budget: 2 * time.Second, MinScore: &everything}
	})
	addExperience(t, fe, "Convert both measurements to the same unit before comparing them.", "lab")
	const head = "{\"model\":\"claude-sonnet-4-5\", \"max_tokens\": 1024,\n \"system\":\"Be brief.\\u00e9\""
	const tail = `,"messages":[{"role":"user","content":[{"type":"text","text":"How do I compare two measurements in a lab report?","cache_control":{"type":"ephemeral"}}]}],"x_future":{"n":1.50e3,"z":null},"metadata":{"user_id":"u"}}`
	for _, stream := range []bool{false, true} {
		body, want := head+tail, golden(t, "anthropic/message.json")
		if stream {
			body, want = head+`,"stream":true`+tail, golden(t, "anthropic/message_stream.sse")
		}
		t.Run(map[bool]string{false: "whole", true: "stream"}[stream], func(t *testing.T) {
			code, hdr, got := post(t, fe.URL+"/v1/messages", body, "X-DSO-Inject", "off", "Anthropic-Beta", "prompt-caching-2024-07-31")
			if code != 200 || !bytes.Equal(got, want) {
				t.Fatalf("client got %d %q; want %q", code, got, want)
			}
			sent := be.last(t)
			if string(sent.Body) != body || sent.Header.Get("Anthropic-Beta") != "prompt-caching-2024-07-31" {
				t.Errorf("backend got %q (%v); want %q", sent.Body, sent.Header, body)
			}
			if hdr.Get("X-Backend-Header") != "kept" || hdr.Get(proxy.HeaderTraceID) == "" || hdr.Get("Server-Timing") == "" {
				t.Errorf("response headers %v", hdr)
			}

			code, hdr, got = post(t, fe.URL+"/v1/messages", body)
			if code != 200 || !bytes.Equal(got, want) || hdr.Get(proxy.HeaderExperiences) == "" {
				t.Fatalf("client got %d %v %q", code, hdr, got)
			}
			sent = be.last(t)
			// The notes go with the newest user turn, after its cache
			// breakpoint: everything before is the client's bytes.
			notes := noteText(t, sent.Body)
			if !strings.Contains(notes, "Convert both measurements") {
				t.Fatalf("notes %q", notes)
			}
			if exp, ok, _ := inject.LastUser([]byte(body), notes); !ok || !bytes.Equal(sent.Body, exp) {
				t.Errorf("backend got %s\nwant %s", sent.Body, exp)
			}
		})
	}
}

// A trace keeps the answer's text read from the Anthropic answer, whole
// or streamed, relayed or translated.
func TestAnthropicTraceAnswers(t *testing.T) {
	for _, typ := range []string{"anthropic", "openai"} {
		for _, stream := range []bool{false, true} {
			t.Run(typ+map[bool]string{true: "/stream"}[stream], func(t *testing.T) {
				be := newBackend(t, typ)
				lib := newHashLibrary(t)
				fe := newFrontend(t, []config.Backend{cfgFor(be)}, withRetrieval(lib, 2*time.Second))
				body := `{"model":"claude-sonnet-4-5","max_tokens":50,"stream":` + map[bool]string{true: "true", false: "false"}[stream] + `,"messages":[{"role":"user","content":"Capital of France?"}]}`
				code, hdr, got := post(t, fe.URL+"/v1/messages", body)
				if code != 200 {
					t.Fatalf("%d %s", code, got)
				}
				fe.Close()
				fe.proxy.Close() // stores queued traces
				tr, err := lib.Store().(*store.SQLite).GetTrace(context.Background(), hdr.Get(proxy.HeaderTraceID))
				if err != nil {
					t.Fatal(err)
				}
				if tr.Answer != "The capital of France is Paris." || tr.Query != "Capital of France?" || tr.Model != "claude-sonnet-4-5" {
					t.Errorf("trace %+v", tr)
				}
			})
		}
	}
}
