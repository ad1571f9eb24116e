package proxy_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/dso-proxy/dso/config"
	"github.com/ollama/ollama/api"
	oai "github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/responses"
	openai "github.com/sashabaranov/go-openai"
)

// Chat-completions and Ollama clients use Claude models through an
// anthropic backend: created, streamed, and with a tool call.

func TestChatClientOverAnthropicBackend(t *testing.T) {
	be := newBackend(t, "anthropic")
	fe := newFrontend(t, []config.Backend{anthropicCfg(be)})
	c := openaiClient(fe)
	ctx := context.Background()
	req := openai.ChatCompletionRequest{Model: "claude-sonnet-4-5", MaxTokens: 50, Messages: []openai.ChatCompletionMessage{
		{Role: "system", Content: "Be brief."}, {Role: "user", Content: "Capital of France?"},
	}}
	resp, err := c.CreateChatCompletion(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if got := resp.Choices[0].Message.Content; got != "The capital of France is Paris." || resp.Choices[0].FinishReason != openai.FinishReasonStop {
		t.Errorf("content %q finish %q", got, resp.Choices[0].FinishReason)
	}
	if u := resp.Usage; u.CompletionTokens != 8 || u.PromptTokens != 24 || u.PromptTokensDetails == nil || u.PromptTokensDetails.CachedTokens != 10 {
		t.Errorf("usage %+v", u)
	}
	sent := be.last(t)
	var got struct {
		System    string `json:"system"`
		MaxTokens int    `json:"max_tokens"`
		Messages  []struct {
			Role string `json:"role"`
		} `json:"messages"`
	}
	json.Unmarshal(sent.Body, &got)
	if sent.Path != "/v1/messages" || sent.Header.Get("Anthropic-Version") != "2023-06-01" || got.System != "Be brief." || got.MaxTokens != 50 || len(got.Messages) != 1 {
		t.Errorf("backend got %s %v %s", sent.Path, sent.Header, sent.Body)
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
	if text.String() != "The capital of France is Paris." || finish != openai.FinishReasonStop || usage == nil || usage.CompletionTokens != 8 {
		t.Errorf("streamed %q finish %q usage %+v", text.String(), finish, usage)
	}
}

func TestChatClientToolsOverAnthropicBackend(t *testing.T) {
	tool := openai.Tool{Type: "function", Function: &openai.FunctionDefinition{
		Name: "get_weather", Parameters: json.RawMessage(`{"type":"object","properties":{"location":{"type":"string"}},"required":["location"]}`),
	}}
	for _, stream := range []bool{false, true} {
		t.Run(map[bool]string{false: "whole", true: "stream"}[stream], func(t *testing.T) {
			be := newBackend(t, "anthropic")
			fe := newFrontend(t, []config.Backend{anthropicCfg(be)})
			c := openaiClient(fe)
			req := openai.ChatCompletionRequest{Model: "claude-sonnet-4-5", Stream: stream, Tools: []openai.Tool{tool}, Messages: []openai.ChatCompletionMessage{
				{Role: "user", Content: "Weather in Lyon?"},
				{Role: "assistant", ToolCalls: []openai.ToolCall{{ID: "call_1", Type: "function", Function: openai.FunctionCall{Name: "get_weather", Arguments: `{"location":"Lyon"}`}}}},
				{Role: "tool", ToolCallID: "call_1", Content: "12C"},
				{Role: "user", Content: "And Paris?"},
			}}
			var name, args string
			var finish openai.FinishReason
			if !stream {
				resp, err := c.CreateChatCompletion(context.Background(), req)
				if err != nil {
					t.Fatal(err)
				}
				tc := resp.Choices[0].Message.ToolCalls
				if len(tc) != 1 {
					t.Fatalf("tool calls %+v", tc)
				}
				name, args, finish = tc[0].Function.Name, tc[0].Function.Arguments, resp.Choices[0].FinishReason
			} else {
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
							name += tc.Function.Name
							args += tc.Function.Arguments
						}
						if c.FinishReason != "" {
							finish = c.FinishReason
						}
					}
				}
			}
			var a struct{ Location, Unit string }
			if err := json.Unmarshal([]byte(args), &a); err != nil || name != "get_weather" || a.Location != "Paris, France" || finish != openai.FinishReasonToolCalls {
				t.Errorf("call %s(%s) finish %q: %v", name, args, finish, err)
			}
			// The history went as tool_use and tool_result blocks.
			var sent struct {
				Messages []struct {
					Role    string `json:"role"`
					Content []struct {
						Type      string          `json:"type"`
						ID        string          `json:"id"`
						ToolUseID string          `json:"tool_use_id"`
						Input     json.RawMessage `json:"input"`
						Content   string          `json:"content"`
					} `json:"content"`
				} `json:"messages"`
				Tools []struct {
					Name string `json:"name"`
				} `json:"tools"`
			}
			body := be.last(t).Body
			if err := json.Unmarshal(body, &sent); err != nil || len(sent.Messages) != 3 || len(sent.Tools) != 1 {
				t.Fatalf("backend got %s", body)
			}
			use, result := sent.Messages[1].Content[0], sent.Messages[2].Content[0]
			if use.Type != "tool_use" || use.ID != "call_1" || string(use.Input) != `{"location":"Lyon"}` || result.Type != "tool_result" || result.ToolUseID != "call_1" || result.Content != "12C" {
				t.Errorf("backend got %s", body)
			}
		})
	}
}

func TestOllamaClientOverAnthropicBackend(t *testing.T) {
	be := newBackend(t, "anthropic")
	fe := newFrontend(t, []config.Backend{anthropicCfg(be)})
	c := ollamaClient(t, fe)
	ctx := context.Background()
	for _, stream := range []bool{true, false} {
		var text strings.Builder
		var final api.ChatResponse
		n := 0
		err := c.Chat(ctx, &api.ChatRequest{Model: "claude-sonnet-4-5", Stream: &stream, Messages: []api.Message{{Role: "user", Content: "Capital of France?"}}, Options: map[string]any{"num_predict": 40}}, func(r api.ChatResponse) error {
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
		if text.String() != "The capital of France is Paris." || !final.Done || final.EvalCount != 8 || final.DoneReason != "stop" {
			t.Errorf("stream=%v: %q final %+v", stream, text.String(), final)
		}
		if stream && n < 3 {
			t.Errorf("stream=%v: %d messages, want a stream", stream, n)
		}
		var sent map[string]any
		json.Unmarshal(be.last(t).Body, &sent)
		if sent["max_tokens"] != float64(40) || (sent["stream"] == true) != stream {
			t.Errorf("backend got %s", be.last(t).Body)
		}
	}

	tools := api.Tools{}
	if err := json.Unmarshal([]byte(`[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object","properties":{"location":{"type":"string"}}}}}]`), &tools); err != nil {
		t.Fatal(err)
	}
	for _, stream := range []bool{true, false} {
		var calls []api.ToolCall
		err := c.Chat(ctx, &api.ChatRequest{Model: "claude-sonnet-4-5", Stream: &stream, Tools: tools, Messages: []api.Message{{Role: "user", Content: "Weather?"}}}, func(r api.ChatResponse) error {
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

// A Responses client reaches Claude through the chat hub: text whole and
// streamed, and a function call.
func TestResponsesClientOverAnthropicBackend(t *testing.T) {
	be := newBackend(t, "anthropic")
	fe := newFrontend(t, []config.Backend{anthropicCfg(be)})
	c := responsesClient(fe)
	ctx := context.Background()
	in := responses.ResponseNewParamsInputUnion{OfString: oai.String("Capital of France?")}
	resp, err := c.Responses.New(ctx, responses.ResponseNewParams{Model: "claude-sonnet-4-5", Instructions: oai.String("Be brief."), Input: in})
	if err != nil {
		t.Fatal(err)
	}
	if resp.OutputText() != "The capital of France is Paris." || resp.Usage.OutputTokens != 8 {
		t.Errorf("text %q usage %+v", resp.OutputText(), resp.Usage)
	}
	if sent := be.last(t); sent.Path != "/v1/messages" || !strings.Contains(string(sent.Body), `"system":"Be brief."`) {
		t.Errorf("backend got %s %s", sent.Path, sent.Body)
	}
	st := c.Responses.NewStreaming(ctx, responses.ResponseNewParams{Model: "claude-sonnet-4-5", Input: in})
	var text strings.Builder
	for st.Next() {
		if ev := st.Current(); ev.Type == "response.output_text.delta" {
			text.WriteString(ev.Delta)
		}
	}
	if err := st.Err(); err != nil || text.String() != "The capital of France is Paris." {
		t.Errorf("streamed %q: %v", text.String(), err)
	}
	resp, err = c.Responses.New(ctx, responses.ResponseNewParams{Model: "claude-sonnet-4-5", Tools: weatherTool, Input: in})
	if err != nil {
		t.Fatal(err)
	}
	var call *responses.ResponseOutputItemUnion
	for i := range resp.Output {
		if resp.Output[i].Type == "function_call" {
			call = &resp.Output[i]
		}
	}
	if call == nil || call.Name != "get_weather" || !strings.Contains(call.Arguments.OfString, "Paris, France") {
		t.Errorf("output %+v", resp.Output)
	}
}
