package proxy_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/dso-proxy/dso/config"
	oai "github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/responses"
)

func responsesClient(fe *frontend) oai.Client {
	return oai.NewClient(option.WithBaseURL(fe.URL+"/v1"), option.WithAPIKey("client-key"), option.WithMaxRetries(0))
}

// forwardedChat is the chat body a backend received, as dso translated it.
type forwardedChat struct {
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
	Tools []struct {
		Type     string `json:"type"`
		Function struct {
			Name string `json:"name"`
		} `json:"function"`
	} `json:"tools"`
	Stream        bool `json:"stream"`
	StreamOptions *struct {
		IncludeUsage bool `json:"include_usage"`
	} `json:"stream_options"`
}

// lastChat decodes the last chat body a backend got, in OpenAI's format
// or Ollama's (both have messages with role and content).
func lastChat(t *testing.T, be *backend) forwardedChat {
	t.Helper()
	var c forwardedChat
	if err := json.Unmarshal(be.last(t).Body, &c); err != nil {
		t.Fatalf("backend body %s: %v", be.last(t).Body, err)
	}
	return c
}

func roles(c forwardedChat) string {
	var rs []string
	for _, m := range c.Messages {
		rs = append(rs, m.Role)
	}
	return strings.Join(rs, ",")
}

func backendCfg(typ string, be *backend) config.Backend {
	switch typ {
	case "ollama":
		return ollamaCfg(be)
	case "anthropic":
		return anthropicCfg(be)
	}
	return openaiCfg(be)
}

// The OpenAI SDK's primary call works through dso over chat backends:
// the answer, its usage, reading it back, its input items, continuing it
// with previous_response_id (the backend then gets the whole
// conversation), and deleting it.
func TestResponsesOverChatBackends(t *testing.T) {
	for _, typ := range []string{"openai", "ollama"} {
		t.Run(typ, func(t *testing.T) {
			be := newBackend(t, typ)
			fe := newFrontend(t, []config.Backend{backendCfg(typ, be)})
			c := responsesClient(fe)
			ctx := context.Background()
			resp, err := c.Responses.New(ctx, responses.ResponseNewParams{
				Model:        "m",
				Instructions: oai.String("Be brief."),
				Input:        responses.ResponseNewParamsInputUnion{OfString: oai.String("Capital of France?")},
			})
			if err != nil {
				t.Fatal(err)
			}
			if got := resp.OutputText(); got != "The capital of France is Paris." {
				t.Errorf("OutputText %q", got)
			}
			if resp.Status != "completed" || !strings.HasPrefix(resp.ID, "resp_") || resp.Usage.InputTokens == 0 || resp.Usage.TotalTokens != resp.Usage.InputTokens+resp.Usage.OutputTokens {
				t.Errorf("status %q id %q usage %+v", resp.Status, resp.ID, resp.Usage)
			}
			if got := roles(lastChat(t, be)); got != "system,user" {
				t.Errorf("backend got roles %s; want system,user", got)
			}

			got, err := c.Responses.Get(ctx, resp.ID, responses.ResponseGetParams{})
			if err != nil || got.OutputText() != resp.OutputText() || got.ID != resp.ID {
				t.Fatalf("Get = %v, %v", got, err)
			}
			items, err := c.Responses.InputItems.List(ctx, resp.ID, responses.InputItemListParams{})
			if err != nil {
				t.Fatal(err)
			}
			if len(items.Data) != 1 || items.Data[0].Role != "user" || !strings.Contains(items.Data[0].RawJSON(), `"text":"Capital of France?"`) {
				t.Errorf("input items %+v", items.Data)
			}

			next, err := c.Responses.New(ctx, responses.ResponseNewParams{
				Model:              "m",
				PreviousResponseID: oai.String(resp.ID),
				Input:              responses.ResponseNewParamsInputUnion{OfString: oai.String("And of Italy?")},
			})
			if err != nil {
				t.Fatal(err)
			}
			// Instructions are not carried over, as OpenAI does.
			fc := lastChat(t, be)
			if got := roles(fc); got != "user,assistant,user" {
				t.Fatalf("continued: backend got roles %s; want user,assistant,user", got)
			}
			if !bytes.Contains(fc.Messages[1].Content, []byte("Paris")) || !bytes.Contains(fc.Messages[2].Content, []byte("Italy")) {
				t.Errorf("continued conversation %+v", fc.Messages)
			}
			if next.PreviousResponseID != resp.ID {
				t.Errorf("previous_response_id %q; want %q", next.PreviousResponseID, resp.ID)
			}

			if err := c.Responses.Delete(ctx, resp.ID); err != nil {
				t.Fatal(err)
			}
			_, err = c.Responses.Get(ctx, resp.ID, responses.ResponseGetParams{})
			var apiErr *oai.Error
			if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusNotFound {
				t.Errorf("Get after Delete: %v; want 404", err)
			}
		})
	}
}

// A streamed response is the documented event sequence, numbered from 0
// without gaps, its deltas adding up to the text, and the response is
// readable as soon as response.completed arrived.
func TestResponsesStream(t *testing.T) {
	for _, typ := range []string{"openai", "ollama"} {
		t.Run(typ, func(t *testing.T) {
			be := newBackend(t, typ)
			fe := newFrontend(t, []config.Backend{backendCfg(typ, be)})
			c := responsesClient(fe)
			ctx := context.Background()
			stream := c.Responses.NewStreaming(ctx, responses.ResponseNewParams{
				Model: "m",
				Input: responses.ResponseNewParamsInputUnion{OfString: oai.String("Capital of France?")},
			})
			var types []string
			var text strings.Builder
			var final responses.Response
			seq := int64(0)
			for stream.Next() {
				ev := stream.Current()
				if ev.SequenceNumber != seq {
					t.Errorf("event %s has sequence_number %d; want %d", ev.Type, ev.SequenceNumber, seq)
				}
				seq++
				if len(types) == 0 || types[len(types)-1] != ev.Type {
					types = append(types, ev.Type)
				}
				switch ev.Type {
				case "response.output_text.delta":
					text.WriteString(ev.Delta)
				case "response.completed":
					final = ev.Response
				}
			}
			if err := stream.Err(); err != nil {
				t.Fatal(err)
			}
			want := "response.created,response.in_progress,response.output_item.added,response.content_part.added," +
				"response.output_text.delta,response.output_text.done,response.content_part.done,response.output_item.done,response.completed"
			if got := strings.Join(types, ","); got != want {
				t.Errorf("events\n got %s\nwant %s", got, want)
			}
			if text.String() != "The capital of France is Paris." || final.OutputText() != text.String() {
				t.Errorf("deltas %q, final text %q", text.String(), final.OutputText())
			}
			if final.Usage.OutputTokens == 0 {
				t.Errorf("no usage in response.completed: %+v", final.Usage)
			}
			if fc := lastChat(t, be); typ == "openai" && (!fc.Stream || fc.StreamOptions == nil || !fc.StreamOptions.IncludeUsage) {
				t.Errorf("backend was not asked to stream with usage: %+v", fc)
			}
			got, err := c.Responses.Get(ctx, final.ID, responses.ResponseGetParams{})
			if err != nil || got.OutputText() != text.String() {
				t.Errorf("Get right after the stream: %v, %v", got, err)
			}
		})
	}
}

var weatherTool = []responses.ToolUnionParam{{OfFunction: &responses.FunctionToolParam{
	Name:       "get_weather",
	Parameters: map[string]any{"type": "object", "properties": map[string]any{"location": map[string]string{"type": "string"}}},
}}}

// A function call comes back as a function_call item, and its output,
// sent with previous_response_id, reaches the backend as chat's assistant
// tool call and tool message, in order.
func TestResponsesFunctionCallRoundTrip(t *testing.T) {
	for _, typ := range []string{"openai", "ollama"} {
		t.Run(typ, func(t *testing.T) {
			be := newBackend(t, typ)
			fe := newFrontend(t, []config.Backend{backendCfg(typ, be)})
			c := responsesClient(fe)
			ctx := context.Background()
			resp, err := c.Responses.New(ctx, responses.ResponseNewParams{
				Model: "m", Tools: weatherTool,
				Input: responses.ResponseNewParamsInputUnion{OfString: oai.String("Weather in Paris?")},
			})
			if err != nil {
				t.Fatal(err)
			}
			var call responses.ResponseFunctionToolCall
			for _, it := range resp.Output {
				if it.Type == "function_call" {
					call = it.AsFunctionCall()
				}
			}
			if call.Name != "get_weather" || call.CallID == "" || !strings.Contains(call.Arguments, "Paris") {
				t.Fatalf("function call %+v in %+v", call, resp.Output)
			}
			if fc := lastChat(t, be); len(fc.Tools) != 1 || fc.Tools[0].Function.Name != "get_weather" {
				t.Errorf("backend got tools %+v", fc.Tools)
			}
			_, err = c.Responses.New(ctx, responses.ResponseNewParams{
				Model: "m", Tools: weatherTool, PreviousResponseID: oai.String(resp.ID),
				Input: responses.ResponseNewParamsInputUnion{OfInputItemList: []responses.ResponseInputItemUnionParam{
					{OfFunctionCallOutput: &responses.ResponseInputItemFunctionCallOutputParam{
						CallID: oai.String(call.CallID),
						Output: responses.ResponseInputItemFunctionCallOutputOutputUnionParam{OfString: oai.String("18C and sunny")},
					}},
				}},
			})
			if err != nil {
				t.Fatal(err)
			}
			fc := lastChat(t, be)
			if got := roles(fc); got != "user,assistant,tool" {
				t.Fatalf("backend got roles %s; want user,assistant,tool", got)
			}
			if typ == "openai" {
				a, tool := fc.Messages[1], fc.Messages[2]
				if len(a.ToolCalls) != 1 || a.ToolCalls[0].ID != call.CallID || tool.ToolCallID != call.CallID || !bytes.Contains(tool.Content, []byte("sunny")) {
					t.Errorf("assistant %+v, tool %+v; want the call %s and its output", a, tool, call.CallID)
				}
			}
		})
	}
}

// Text and tool calls streamed in one answer are all kept, each its own
// item with its own events (other gateways' bridges drop one or the
// other).
func TestResponsesStreamKeepsTextAndToolCalls(t *testing.T) {
	be := newBackend(t, "openai")
	be.setOverride(func(w http.ResponseWriter, r *http.Request, body []byte) bool {
		replay(w, "text/event-stream", golden(t, "openai/chat_text_tools_stream.sse"), "\n\n")
		return true
	})
	fe := newFrontend(t, []config.Backend{openaiCfg(be)})
	c := responsesClient(fe)
	stream := c.Responses.NewStreaming(context.Background(), responses.ResponseNewParams{
		Model: "m", Tools: weatherTool,
		Input: responses.ResponseNewParamsInputUnion{OfString: oai.String("Weather and time in Paris?")},
	})
	count := map[string]int{}
	var args strings.Builder
	var final responses.Response
	for stream.Next() {
		ev := stream.Current()
		count[ev.Type]++
		switch ev.Type {
		case "response.function_call_arguments.delta":
			args.WriteString(ev.Delta)
		case "response.completed":
			final = ev.Response
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	if count["response.output_item.added"] != 3 || count["response.output_item.done"] != 3 || count["response.function_call_arguments.done"] != 2 {
		t.Errorf("event counts %v; want 3 items, 2 calls", count)
	}
	if got := args.String(); got != `{"location":"Paris"}{"zone":"CET"}` {
		t.Errorf("argument deltas %q", got)
	}
	if len(final.Output) != 3 || final.Output[0].Type != "message" || final.Output[1].Type != "function_call" || final.Output[2].Type != "function_call" {
		t.Fatalf("final output %+v", final.Output)
	}
	if final.OutputText() != "Let me check the weather." || final.Output[2].AsFunctionCall().Name != "get_time" || final.Output[1].AsFunctionCall().CallID != "call_Q2" {
		t.Errorf("final output %+v", final.Output)
	}
	if final.Usage.InputTokensDetails.CachedTokens != 64 {
		t.Errorf("cached tokens %d; want 64", final.Usage.InputTokensDetails.CachedTokens)
	}
}

// Requests dso cannot serve are refused in OpenAI's error shape: an
// unknown previous response 404, a hosted tool 400; store: false keeps
// nothing.
func TestResponsesErrors(t *testing.T) {
	be := newBackend(t, "openai")
	fe := newFrontend(t, []config.Backend{openaiCfg(be)})
	c := responsesClient(fe)
	ctx := context.Background()
	status := func(err error) int {
		var apiErr *oai.Error
		if errors.As(err, &apiErr) {
			return apiErr.StatusCode
		}
		return 0
	}
	message := func(err error) string {
		var apiErr *oai.Error
		if errors.As(err, &apiErr) {
			return apiErr.Message
		}
		return ""
	}
	_, err := c.Responses.New(ctx, responses.ResponseNewParams{Model: "m", PreviousResponseID: oai.String("resp_gone"),
		Input: responses.ResponseNewParamsInputUnion{OfString: oai.String("hi")}})
	if status(err) != http.StatusNotFound || !strings.Contains(message(err), "resp_gone") {
		t.Errorf("unknown previous_response_id: %v; want 404 naming it", err)
	}
	_, err = c.Responses.New(ctx, responses.ResponseNewParams{Model: "m",
		Tools: []responses.ToolUnionParam{{OfWebSearch: &responses.WebSearchToolParam{Type: "web_search"}}},
		Input: responses.ResponseNewParamsInputUnion{OfString: oai.String("hi")}})
	if status(err) != http.StatusBadRequest || !strings.Contains(message(err), "web_search") {
		t.Errorf("hosted tool: %v; want 400 naming it", err)
	}
	resp, err := c.Responses.New(ctx, responses.ResponseNewParams{Model: "m", Store: oai.Bool(false),
		Input: responses.ResponseNewParamsInputUnion{OfString: oai.String("hi")}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Responses.Get(ctx, resp.ID, responses.ResponseGetParams{}); status(err) != http.StatusNotFound {
		t.Errorf("Get of a store:false response: %v; want 404", err)
	}
	n := len(be.requests())
	code, _, body := post(t, fe.URL+"/v1/responses", `{"input":"hi"}`)
	if code != http.StatusBadRequest || !strings.Contains(string(body), `"message":"model is required"`) || len(be.requests()) != n {
		t.Errorf("no model: %d %s", code, body)
	}
}

// Over a backend that serves the Responses API itself, dso relays the
// request byte for byte (with injection off) and the answer likewise,
// and reads responses it does not keep from that backend.
func TestResponsesNativeRelay(t *testing.T) {
	be := newBackend(t, "openai")
	cfg := openaiCfg(be)
	cfg.Responses = config.ResponsesNative
	fe := newFrontend(t, []config.Backend{cfg})
	req := `{"model":"gpt-4.1","input":"Capital of France?","reasoning":{"effort":"low"},"x_unknown":[1,2.50]}`
	code, hdr, body := post(t, fe.URL+"/v1/responses", req, "X-DSO-Inject", "off")
	if code != http.StatusOK {
		t.Fatalf("status %d: %s", code, body)
	}
	if got := be.last(t); got.Path != "/v1/responses" || string(got.Body) != req {
		t.Errorf("backend got %s %s; want %s", got.Path, got.Body, req)
	}
	if want := golden(t, "openai/responses.json"); !bytes.Equal(body, want) || hdr.Get("X-Backend-Header") != "kept" {
		t.Errorf("client got %s", body)
	}
	const id = "resp_67ccd2bed1ec8190b14f964abc0542670bb6a6b452d3795b"
	code, _, body = send(t, http.MethodGet, fe.URL+"/v1/responses/"+id, "")
	if code != http.StatusOK || !bytes.Equal(body, golden(t, "openai/responses.json")) {
		t.Errorf("GET relayed: %d %s", code, body)
	}
	if got := be.last(t); got.Path != "/v1/responses/"+id {
		t.Errorf("backend got GET %s", got.Path)
	}
	if code, _, _ = send(t, http.MethodGet, fe.URL+"/v1/responses/resp_unknown", ""); code != http.StatusNotFound {
		t.Errorf("GET unknown: %d; want 404", code)
	}
}
