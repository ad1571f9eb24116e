package providers

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/ollama/ollama/api"
)

// This file translates between the OpenAI and Ollama wire formats, used only
// where a client's surface and its backend differ. Same-format routes never
// come here: their bytes are relayed untouched.

// ErrBadRequest marks a request that cannot be translated; the message says
// why and is safe to show the client.
var ErrBadRequest = errors.New("bad request")

func badRequest(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrBadRequest, fmt.Sprintf(format, args...))
}

// MaxStreamLine caps one NDJSON line or SSE line read from a backend.
const MaxStreamLine = 8 << 20

// ---- OpenAI wire types (only the fields translation reads) ----

type oaChatRequest struct {
	Model               string          `json:"model"`
	Messages            []oaMessage     `json:"messages"`
	Stream              bool            `json:"stream,omitempty"`
	StreamOptions       *oaStreamOpts   `json:"stream_options,omitempty"`
	Temperature         *float64        `json:"temperature,omitempty"`
	TopP                *float64        `json:"top_p,omitempty"`
	MaxTokens           *int            `json:"max_tokens,omitempty"`
	MaxCompletionTokens *int            `json:"max_completion_tokens,omitempty"`
	Stop                json.RawMessage `json:"stop,omitempty"`
	Seed                *int            `json:"seed,omitempty"`
	FrequencyPenalty    *float64        `json:"frequency_penalty,omitempty"`
	PresencePenalty     *float64        `json:"presence_penalty,omitempty"`
	ResponseFormat      *oaRespFormat   `json:"response_format,omitempty"`
	Tools               json.RawMessage `json:"tools,omitempty"`
	ToolChoice          json.RawMessage `json:"tool_choice,omitempty"`
}

type oaStreamOpts struct {
	IncludeUsage bool `json:"include_usage"`
}

type oaRespFormat struct {
	Type       string `json:"type"`
	JSONSchema *struct {
		Name   string          `json:"name,omitempty"`
		Schema json.RawMessage `json:"schema"`
	} `json:"json_schema,omitempty"`
}

type oaMessage struct {
	Role       string          `json:"role"`
	Content    json.RawMessage `json:"content"`
	Name       string          `json:"name,omitempty"`
	ToolCalls  []oaToolCall    `json:"tool_calls,omitempty"`
	ToolCallID string          `json:"tool_call_id,omitempty"`
	Reasoning  string          `json:"reasoning_content,omitempty"`
}

type oaToolCall struct {
	Index    *int   `json:"index,omitempty"`
	ID       string `json:"id,omitempty"`
	Type     string `json:"type,omitempty"`
	Function struct {
		Name      string `json:"name,omitempty"`
		Arguments string `json:"arguments"`
	} `json:"function"`
}

type oaPart struct {
	Type     string `json:"type"`
	Text     string `json:"text,omitempty"`
	ImageURL *struct {
		URL string `json:"url"`
	} `json:"image_url,omitempty"`
}

type oaUsage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
	TotalTokens      int `json:"total_tokens"`
}

type oaChoice struct {
	Index        int        `json:"index"`
	Message      *oaMessage `json:"message,omitempty"`
	Delta        *oaMessage `json:"delta,omitempty"`
	FinishReason *string    `json:"finish_reason"`
}

type oaChatResponse struct {
	ID      string     `json:"id"`
	Object  string     `json:"object"`
	Created int64      `json:"created"`
	Model   string     `json:"model"`
	Choices []oaChoice `json:"choices"`
	Usage   *oaUsage   `json:"usage,omitempty"`
}

// ---- OpenAI request → Ollama request ----

// ChatRequestInfo is what translation learned about a request that the
// response translation needs.
type ChatRequestInfo struct {
	Model        string
	Stream       bool
	IncludeUsage bool
}

// OpenAIChatToOllama translates an OpenAI chat-completions body into an
// Ollama /api/chat body.
func OpenAIChatToOllama(body []byte) ([]byte, ChatRequestInfo, error) {
	var in oaChatRequest
	if err := json.Unmarshal(body, &in); err != nil {
		return nil, ChatRequestInfo{}, badRequest("invalid chat request: %v", err)
	}
	info := ChatRequestInfo{Model: in.Model, Stream: in.Stream, IncludeUsage: in.StreamOptions != nil && in.StreamOptions.IncludeUsage}
	out := api.ChatRequest{Model: in.Model, Stream: &in.Stream, Options: map[string]any{}}
	for i, m := range in.Messages {
		om, err := ollamaMessage(m)
		if err != nil {
			return nil, info, badRequest("messages[%d]: %v", i, err)
		}
		out.Messages = append(out.Messages, om)
	}
	if len(in.Tools) > 0 && string(in.Tools) != "null" {
		if err := json.Unmarshal(in.Tools, &out.Tools); err != nil {
			return nil, info, badRequest("tools: %v", err)
		}
	}
	setOpt := func(k string, v any) { out.Options[k] = v }
	if in.Temperature != nil {
		setOpt("temperature", *in.Temperature)
	}
	if in.TopP != nil {
		setOpt("top_p", *in.TopP)
	}
	if in.MaxCompletionTokens != nil {
		setOpt("num_predict", *in.MaxCompletionTokens)
	} else if in.MaxTokens != nil {
		setOpt("num_predict", *in.MaxTokens)
	}
	if in.Seed != nil {
		setOpt("seed", *in.Seed)
	}
	if in.FrequencyPenalty != nil {
		setOpt("frequency_penalty", *in.FrequencyPenalty)
	}
	if in.PresencePenalty != nil {
		setOpt("presence_penalty", *in.PresencePenalty)
	}
	if stop, err := stopList(in.Stop); err != nil {
		return nil, info, err
	} else if stop != nil {
		setOpt("stop", stop)
	}
	if rf := in.ResponseFormat; rf != nil {
		switch rf.Type {
		case "json_object":
			out.Format = json.RawMessage(`"json"`)
		case "json_schema":
			if rf.JSONSchema == nil || len(rf.JSONSchema.Schema) == 0 {
				return nil, info, badRequest("response_format.json_schema.schema is required")
			}
			out.Format = rf.JSONSchema.Schema
		case "text", "":
		default:
			return nil, info, badRequest("response_format.type %q is not supported", rf.Type)
		}
	}
	b, err := json.Marshal(out)
	return b, info, err
}

func stopList(raw json.RawMessage) ([]string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var one string
	if json.Unmarshal(raw, &one) == nil {
		return []string{one}, nil
	}
	var many []string
	if err := json.Unmarshal(raw, &many); err != nil {
		return nil, badRequest("stop must be a string or a list of strings")
	}
	return many, nil
}

func ollamaMessage(m oaMessage) (api.Message, error) {
	out := api.Message{Role: m.Role, Thinking: m.Reasoning, ToolCallID: m.ToolCallID}
	if m.Role == "tool" {
		out.ToolName = m.Name
	}
	if m.Role == "developer" {
		out.Role = "system"
	}
	text, images, err := contentParts(m.Content)
	if err != nil {
		return out, err
	}
	out.Content, out.Images = text, images
	for _, tc := range m.ToolCalls {
		args := api.NewToolCallFunctionArguments()
		if strings.TrimSpace(tc.Function.Arguments) != "" {
			if err := json.Unmarshal([]byte(tc.Function.Arguments), &args); err != nil {
				return out, fmt.Errorf("tool call %q: arguments are not a JSON object: %v", tc.Function.Name, err)
			}
		}
		out.ToolCalls = append(out.ToolCalls, api.ToolCall{ID: tc.ID, Function: api.ToolCallFunction{Name: tc.Function.Name, Arguments: args}})
	}
	return out, nil
}

// contentParts flattens OpenAI content (a string, null, or a list of parts)
// into Ollama's text plus images. Only data: image URLs can be carried.
func contentParts(raw json.RawMessage) (string, []api.ImageData, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", nil, nil
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s, nil, nil
	}
	var parts []oaPart
	if err := json.Unmarshal(raw, &parts); err != nil {
		return "", nil, fmt.Errorf("content must be a string or a list of parts")
	}
	var text strings.Builder
	var images []api.ImageData
	for i, p := range parts {
		switch p.Type {
		case "text":
			if text.Len() > 0 {
				text.WriteString("\n")
			}
			text.WriteString(p.Text)
		case "image_url":
			if p.ImageURL == nil {
				return "", nil, fmt.Errorf("content[%d]: image_url is missing", i)
			}
			img, err := decodeDataURL(p.ImageURL.URL)
			if err != nil {
				return "", nil, fmt.Errorf("content[%d]: %v", i, err)
			}
			images = append(images, img)
		default:
			return "", nil, fmt.Errorf("content[%d]: part type %q is not supported by Ollama backends", i, p.Type)
		}
	}
	return text.String(), images, nil
}

func decodeDataURL(u string) ([]byte, error) {
	rest, ok := strings.CutPrefix(u, "data:")
	if !ok {
		return nil, fmt.Errorf("only data: image URLs can be sent to an Ollama backend")
	}
	_, data, ok := strings.Cut(rest, ";base64,")
	if !ok {
		return nil, fmt.Errorf("image data URL must be base64")
	}
	b, err := base64.StdEncoding.DecodeString(data)
	if err != nil {
		return nil, fmt.Errorf("image data URL: %v", err)
	}
	return b, nil
}

// ---- Ollama request → OpenAI request ----

// OllamaChatToOpenAI translates an Ollama /api/chat body into an OpenAI
// chat-completions body. Streams ask for usage so Ollama's counts can be
// filled in.
func OllamaChatToOpenAI(body []byte) ([]byte, ChatRequestInfo, error) {
	var in api.ChatRequest
	if err := json.Unmarshal(body, &in); err != nil {
		return nil, ChatRequestInfo{}, badRequest("invalid chat request: %v", err)
	}
	return ollamaToOpenAI(in.Model, in.Messages, in.Stream, in.Format, in.Options, in.Tools)
}

// OllamaGenerateToOpenAI translates an Ollama /api/generate body into an
// OpenAI chat-completions body: the system prompt and the prompt become a
// system and a user message.
func OllamaGenerateToOpenAI(body []byte) ([]byte, ChatRequestInfo, error) {
	var in api.GenerateRequest
	if err := json.Unmarshal(body, &in); err != nil {
		return nil, ChatRequestInfo{}, badRequest("invalid generate request: %v", err)
	}
	if in.Raw || in.Template != "" || len(in.Context) > 0 || in.Suffix != "" {
		return nil, ChatRequestInfo{}, badRequest("raw, template, suffix and context need an Ollama backend")
	}
	var msgs []api.Message
	if in.System != "" {
		msgs = append(msgs, api.Message{Role: "system", Content: in.System})
	}
	msgs = append(msgs, api.Message{Role: "user", Content: in.Prompt, Images: in.Images})
	return ollamaToOpenAI(in.Model, msgs, in.Stream, in.Format, in.Options, nil)
}

func ollamaToOpenAI(model string, msgs []api.Message, stream *bool, format json.RawMessage, opts map[string]any, tools api.Tools) ([]byte, ChatRequestInfo, error) {
	info := ChatRequestInfo{Model: model, Stream: stream == nil || *stream}
	out := map[string]any{"model": model, "stream": info.Stream}
	if info.Stream {
		out["stream_options"] = oaStreamOpts{IncludeUsage: true}
	}
	var oms []map[string]any
	for _, m := range msgs {
		om := map[string]any{"role": m.Role}
		if len(m.Images) > 0 {
			parts := []any{map[string]any{"type": "text", "text": m.Content}}
			for _, img := range m.Images {
				parts = append(parts, map[string]any{"type": "image_url", "image_url": map[string]string{"url": "data:" + sniffImage(img) + ";base64," + base64.StdEncoding.EncodeToString(img)}})
			}
			om["content"] = parts
		} else {
			om["content"] = m.Content
		}
		if m.Thinking != "" {
			om["reasoning_content"] = m.Thinking
		}
		if len(m.ToolCalls) > 0 {
			var tcs []oaToolCall
			for i, tc := range m.ToolCalls {
				args, err := json.Marshal(tc.Function.Arguments)
				if err != nil {
					return nil, info, badRequest("tool call arguments: %v", err)
				}
				c := oaToolCall{ID: tc.ID, Type: "function"}
				if c.ID == "" {
					c.ID = fmt.Sprintf("call_%d", i)
				}
				c.Function.Name, c.Function.Arguments = tc.Function.Name, string(args)
				tcs = append(tcs, c)
			}
			om["tool_calls"] = tcs
			if m.Content == "" {
				om["content"] = nil
			}
		}
		if m.Role == "tool" {
			if m.ToolCallID != "" {
				om["tool_call_id"] = m.ToolCallID
			}
			if m.ToolName != "" {
				om["name"] = m.ToolName
			}
		}
		oms = append(oms, om)
	}
	out["messages"] = oms
	if len(tools) > 0 {
		out["tools"] = tools
	}
	for k, v := range opts {
		switch k {
		case "temperature", "top_p", "seed", "frequency_penalty", "presence_penalty", "stop":
			out[k] = v
		case "num_predict":
			out["max_tokens"] = v
		}
	}
	if f := bytes.TrimSpace(format); len(f) > 0 && string(f) != "null" && string(f) != `""` {
		if string(f) == `"json"` {
			out["response_format"] = map[string]string{"type": "json_object"}
		} else if f[0] == '{' {
			out["response_format"] = map[string]any{"type": "json_schema", "json_schema": map[string]any{"name": "response", "schema": json.RawMessage(f)}}
		} else {
			return nil, info, badRequest("format must be \"json\" or a JSON schema")
		}
	}
	b, err := json.Marshal(out)
	return b, info, err
}

func sniffImage(b []byte) string {
	switch {
	case bytes.HasPrefix(b, []byte("\x89PNG")):
		return "image/png"
	case bytes.HasPrefix(b, []byte("GIF8")):
		return "image/gif"
	case len(b) > 12 && string(b[8:12]) == "WEBP":
		return "image/webp"
	}
	return "image/jpeg"
}

// ---- responses: Ollama → OpenAI ----

// newID returns an id in OpenAI's style.
func newID(prefix string) string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

func finishReason(doneReason string, tools bool) string {
	if tools {
		return "tool_calls"
	}
	switch doneReason {
	case "length":
		return "length"
	default:
		return "stop"
	}
}

func oaToolCalls(tcs []api.ToolCall, indexed bool) []oaToolCall {
	var out []oaToolCall
	for i, tc := range tcs {
		args, _ := json.Marshal(tc.Function.Arguments)
		c := oaToolCall{ID: tc.ID, Type: "function"}
		if c.ID == "" {
			c.ID = newID("call_")
		}
		if indexed {
			idx := i
			c.Index = &idx
		}
		c.Function.Name, c.Function.Arguments = tc.Function.Name, string(args)
		out = append(out, c)
	}
	return out
}

func usageOf(m api.Metrics) *oaUsage {
	return &oaUsage{PromptTokens: m.PromptEvalCount, CompletionTokens: m.EvalCount, TotalTokens: m.PromptEvalCount + m.EvalCount}
}
