package providers

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
	"time"

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

// OllamaChatResponseToOpenAI translates one non-streamed Ollama chat
// response into an OpenAI chat.completion body.
func OllamaChatResponseToOpenAI(body []byte, info ChatRequestInfo) ([]byte, error) {
	var r api.ChatResponse
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, fmt.Errorf("decoding Ollama response: %w", err)
	}
	content, _ := json.Marshal(r.Message.Content)
	msg := oaMessage{Role: "assistant", Content: content, Reasoning: r.Message.Thinking, ToolCalls: oaToolCalls(r.Message.ToolCalls, false)}
	fr := finishReason(r.DoneReason, len(r.Message.ToolCalls) > 0)
	model := r.Model
	if model == "" {
		model = info.Model
	}
	return json.Marshal(oaChatResponse{
		ID: newID("chatcmpl-"), Object: "chat.completion", Created: time.Now().Unix(), Model: model,
		Choices: []oaChoice{{Message: &msg, FinishReason: &fr}},
		Usage:   usageOf(r.Metrics),
	})
}

// OllamaToOpenAIStream reads an Ollama NDJSON chat stream and emits the
// payloads of OpenAI SSE events (without "data: " framing), ending with
// "[DONE]". An error line from the backend, a read failure, or a stream
// that ends before "done" is returned as an error after everything before
// it was emitted.
func OllamaToOpenAIStream(src io.Reader, info ChatRequestInfo, emit func([]byte) error) error {
	id, created := newID("chatcmpl-"), time.Now().Unix()
	first := true
	toolIdx := 0
	return eachNDJSON(src, func(line []byte) (bool, error) {
		var r api.ChatResponse
		if err := json.Unmarshal(line, &r); err != nil {
			return false, fmt.Errorf("decoding Ollama stream: %w", err)
		}
		model := r.Model
		if model == "" {
			model = info.Model
		}
		chunk := func(delta *oaMessage, fr *string) error {
			b, err := json.Marshal(oaChatResponse{ID: id, Object: "chat.completion.chunk", Created: created, Model: model, Choices: []oaChoice{{Delta: delta, FinishReason: fr}}})
			if err != nil {
				return err
			}
			return emit(b)
		}
		delta := &oaMessage{}
		if first {
			delta.Role = "assistant"
			first = false
		}
		if r.Message.Content != "" {
			delta.Content, _ = json.Marshal(r.Message.Content)
		}
		delta.Reasoning = r.Message.Thinking
		if len(r.Message.ToolCalls) > 0 {
			tcs := oaToolCalls(r.Message.ToolCalls, true)
			for i := range tcs {
				idx := toolIdx
				toolIdx++
				tcs[i].Index = &idx
			}
			delta.ToolCalls = tcs
		}
		if delta.Role != "" || delta.Content != nil || delta.Reasoning != "" || delta.ToolCalls != nil {
			if err := chunk(delta, nil); err != nil {
				return false, err
			}
		}
		if !r.Done {
			return false, nil
		}
		fr := finishReason(r.DoneReason, toolIdx > 0)
		if err := chunk(&oaMessage{}, &fr); err != nil {
			return true, err
		}
		if info.IncludeUsage {
			b, err := json.Marshal(oaChatResponse{ID: id, Object: "chat.completion.chunk", Created: created, Model: model, Choices: []oaChoice{}, Usage: usageOf(r.Metrics)})
			if err != nil {
				return true, err
			}
			if err := emit(b); err != nil {
				return true, err
			}
		}
		return true, emit([]byte("[DONE]"))
	})
}

// eachNDJSON calls fn for each non-empty line until fn reports done. A line
// that is an Ollama error object ends the stream with that error.
func eachNDJSON(src io.Reader, fn func(line []byte) (done bool, err error)) error {
	sc := bufio.NewScanner(src)
	sc.Buffer(make([]byte, 0, 64<<10), MaxStreamLine)
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		if msg, ok := inBandError(line); ok {
			return &StreamError{Msg: msg}
		}
		done, err := fn(line)
		if err != nil || done {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	return io.ErrUnexpectedEOF
}

// StreamError is an error the backend reported inside a stream.
type StreamError struct{ Msg string }

func (e *StreamError) Error() string { return "backend stream error: " + e.Msg }

// inBandError recognises {"error": ...} objects in either API's shape.
func inBandError(b []byte) (string, bool) {
	if !bytes.Contains(b, []byte(`"error"`)) {
		return "", false
	}
	var v struct {
		Error json.RawMessage `json:"error"`
	}
	if json.Unmarshal(b, &v) != nil || len(v.Error) == 0 || string(v.Error) == "null" {
		return "", false
	}
	return ErrorMessage(b, "backend error"), true
}

// ---- responses: OpenAI → Ollama ----

// OpenAIChatResponseToOllama translates a non-streamed chat.completion into
// an Ollama /api/chat response body, or an /api/generate one when generate.
func OpenAIChatResponseToOllama(body []byte, info ChatRequestInfo, generate bool) ([]byte, error) {
	var r oaChatResponse
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, fmt.Errorf("decoding OpenAI response: %w", err)
	}
	if len(r.Choices) == 0 || r.Choices[0].Message == nil {
		return nil, fmt.Errorf("OpenAI response has no choices")
	}
	m := r.Choices[0].Message
	text, _, _ := contentParts(m.Content)
	fr := ""
	if r.Choices[0].FinishReason != nil {
		fr = *r.Choices[0].FinishReason
	}
	var st ollamaStreamState
	st.content.WriteString(text)
	st.thinking.WriteString(m.Reasoning)
	for _, tc := range m.ToolCalls {
		if err := st.addToolDelta(tc); err != nil {
			return nil, err
		}
	}
	st.usage = r.Usage
	st.finish = fr
	return st.final(info, generate, true)
}

type ollamaStreamState struct {
	content, thinking strings.Builder
	tools             []oaToolCall
	usage             *oaUsage
	finish            string
	model             string
}

// maxToolCalls bounds the tool calls of one answer, so a hostile index
// cannot make dso allocate without limit.
const maxToolCalls = 128

func (s *ollamaStreamState) addToolDelta(d oaToolCall) error {
	i := len(s.tools)
	if d.Index != nil {
		i = *d.Index
	} else if d.ID == "" && i > 0 {
		i-- // a continuation without an index
	}
	if i < 0 || i >= maxToolCalls {
		return fmt.Errorf("tool call index %d is outside 0..%d", i, maxToolCalls-1)
	}
	for len(s.tools) <= i {
		s.tools = append(s.tools, oaToolCall{})
	}
	t := &s.tools[i]
	if d.ID != "" {
		t.ID = d.ID
	}
	if d.Function.Name != "" {
		t.Function.Name = d.Function.Name
	}
	t.Function.Arguments += d.Function.Arguments
	return nil
}

// final builds the last Ollama object: done, with counts, and (for
// non-streamed responses, whole=true) the full message.
func (s *ollamaStreamState) final(info ChatRequestInfo, generate, whole bool) ([]byte, error) {
	model := s.model
	if model == "" {
		model = info.Model
	}
	var tcs []api.ToolCall
	for _, t := range s.tools {
		args := api.NewToolCallFunctionArguments()
		if strings.TrimSpace(t.Function.Arguments) != "" {
			if err := json.Unmarshal([]byte(t.Function.Arguments), &args); err != nil {
				return nil, fmt.Errorf("tool call %q: arguments are not a JSON object", t.Function.Name)
			}
		}
		tcs = append(tcs, api.ToolCall{ID: t.ID, Function: api.ToolCallFunction{Name: t.Function.Name, Arguments: args}})
	}
	var met api.Metrics
	if s.usage != nil {
		met.PromptEvalCount, met.EvalCount = s.usage.PromptTokens, s.usage.CompletionTokens
	}
	reason := "stop"
	if s.finish == "length" {
		reason = "length"
	}
	content, thinking := "", ""
	if whole {
		content, thinking = s.content.String(), s.thinking.String()
	}
	if generate {
		return json.Marshal(api.GenerateResponse{Model: model, CreatedAt: time.Now().UTC(), Response: content, Thinking: thinking, Done: true, DoneReason: reason, Metrics: met})
	}
	return json.Marshal(api.ChatResponse{Model: model, CreatedAt: time.Now().UTC(), Message: api.Message{Role: "assistant", Content: content, Thinking: thinking, ToolCalls: tcs}, Done: true, DoneReason: reason, Metrics: met})
}

// OpenAIToOllamaStream reads an OpenAI SSE chat stream and emits Ollama
// NDJSON objects (without the newline): /api/chat responses, or
// /api/generate ones when generate. Tool calls, which OpenAI streams in
// fragments, are sent whole in the final object as Ollama does.
func OpenAIToOllamaStream(src io.Reader, info ChatRequestInfo, generate bool, emit func([]byte) error) error {
	var st ollamaStreamState
	sawFinish := false
	err := eachSSE(src, func(data []byte) (bool, error) {
		if string(data) == "[DONE]" {
			return true, nil
		}
		var c oaChatResponse
		if err := json.Unmarshal(data, &c); err != nil {
			return false, fmt.Errorf("decoding OpenAI stream: %w", err)
		}
		if c.Model != "" {
			st.model = c.Model
		}
		if c.Usage != nil {
			st.usage = c.Usage
		}
		for _, ch := range c.Choices {
			if ch.Index != 0 {
				continue
			}
			if ch.FinishReason != nil {
				st.finish, sawFinish = *ch.FinishReason, true
			}
			if ch.Delta == nil {
				continue
			}
			for _, tc := range ch.Delta.ToolCalls {
				if err := st.addToolDelta(tc); err != nil {
					return false, err
				}
			}
			text, _, _ := contentParts(ch.Delta.Content)
			if text == "" && ch.Delta.Reasoning == "" {
				continue
			}
			model := st.model
			if model == "" {
				model = info.Model
			}
			var b []byte
			var err error
			if generate {
				b, err = json.Marshal(api.GenerateResponse{Model: model, CreatedAt: time.Now().UTC(), Response: text, Thinking: ch.Delta.Reasoning})
			} else {
				b, err = json.Marshal(api.ChatResponse{Model: model, CreatedAt: time.Now().UTC(), Message: api.Message{Role: "assistant", Content: text, Thinking: ch.Delta.Reasoning}})
			}
			if err != nil {
				return false, err
			}
			if err := emit(b); err != nil {
				return false, err
			}
		}
		return false, nil
	})
	if errors.Is(err, io.ErrUnexpectedEOF) && sawFinish {
		err = nil // some servers end without [DONE]
	}
	if err != nil {
		return err
	}
	b, err := st.final(info, generate, false)
	if err != nil {
		return err
	}
	return emit(b)
}

// eachSSE calls fn with the data of each SSE event until fn reports done.
// An event whose data is an error object ends the stream with that error.
// A stream that ends before fn reports done returns io.ErrUnexpectedEOF.
func eachSSE(src io.Reader, fn func(data []byte) (done bool, err error)) error {
	sc := bufio.NewScanner(src)
	sc.Buffer(make([]byte, 0, 64<<10), MaxStreamLine)
	var data []byte
	dispatch := func() (bool, error) {
		if data == nil {
			return false, nil
		}
		d := data
		data = nil
		if msg, ok := inBandError(d); ok {
			return true, &StreamError{Msg: msg}
		}
		return fn(d)
	}
	for sc.Scan() {
		line := sc.Bytes()
		if len(line) == 0 {
			if done, err := dispatch(); err != nil || done {
				return err
			}
			continue
		}
		if line[0] == ':' {
			continue
		}
		field, value, _ := bytes.Cut(line, []byte(":"))
		value = bytes.TrimPrefix(value, []byte(" "))
		if string(field) == "data" {
			if data != nil {
				data = append(data, '\n')
			}
			data = append(data, value...)
			if data == nil {
				data = []byte{}
			}
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	if done, err := dispatch(); err != nil || done {
		return err
	}
	return io.ErrUnexpectedEOF
}

// ---- embeddings ----

type oaEmbedRequest struct {
	Model          string          `json:"model"`
	Input          json.RawMessage `json:"input"`
	Dimensions     int             `json:"dimensions,omitempty"`
	EncodingFormat string          `json:"encoding_format,omitempty"`
}

// EmbedInfo is what embedding translation needs to shape the response.
type EmbedInfo struct {
	Model  string
	Base64 bool
}

// OpenAIEmbedToOllama translates an OpenAI embeddings body into /api/embed.
func OpenAIEmbedToOllama(body []byte) ([]byte, EmbedInfo, error) {
	var in oaEmbedRequest
	if err := json.Unmarshal(body, &in); err != nil {
		return nil, EmbedInfo{}, badRequest("invalid embeddings request: %v", err)
	}
	info := EmbedInfo{Model: in.Model, Base64: in.EncodingFormat == "base64"}
	var input any
	var one string
	var many []string
	switch {
	case json.Unmarshal(in.Input, &one) == nil:
		input = one
	case json.Unmarshal(in.Input, &many) == nil:
		input = many
	default:
		return nil, info, badRequest("input must be a string or a list of strings for an Ollama backend")
	}
	b, err := json.Marshal(api.EmbedRequest{Model: in.Model, Input: input, Dimensions: in.Dimensions})
	return b, info, err
}

// OllamaEmbedResponseToOpenAI translates an /api/embed response.
func OllamaEmbedResponseToOpenAI(body []byte, info EmbedInfo) ([]byte, error) {
	var r api.EmbedResponse
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, fmt.Errorf("decoding Ollama embed response: %w", err)
	}
	type item struct {
		Object    string `json:"object"`
		Index     int    `json:"index"`
		Embedding any    `json:"embedding"`
	}
	data := make([]item, len(r.Embeddings))
	for i, e := range r.Embeddings {
		data[i] = item{Object: "embedding", Index: i, Embedding: e}
		if info.Base64 {
			buf := make([]byte, 4*len(e))
			for j, f := range e {
				binary.LittleEndian.PutUint32(buf[4*j:], math.Float32bits(f))
			}
			data[i].Embedding = base64.StdEncoding.EncodeToString(buf)
		}
	}
	model := r.Model
	if model == "" {
		model = info.Model
	}
	return json.Marshal(map[string]any{
		"object": "list", "data": data, "model": model,
		"usage": map[string]int{"prompt_tokens": r.PromptEvalCount, "total_tokens": r.PromptEvalCount},
	})
}

// OllamaEmbedToOpenAI translates an /api/embed body into OpenAI embeddings.
func OllamaEmbedToOpenAI(body []byte) ([]byte, EmbedInfo, error) {
	var in api.EmbedRequest
	if err := json.Unmarshal(body, &in); err != nil {
		return nil, EmbedInfo{}, badRequest("invalid embed request: %v", err)
	}
	out := oaEmbedRequest{Model: in.Model, Dimensions: in.Dimensions}
	var err error
	if out.Input, err = json.Marshal(in.Input); err != nil {
		return nil, EmbedInfo{}, badRequest("input: %v", err)
	}
	b, err := json.Marshal(out)
	return b, EmbedInfo{Model: in.Model}, err
}

// OpenAIEmbedResponseToOllama translates an OpenAI embeddings response.
func OpenAIEmbedResponseToOllama(body []byte, info EmbedInfo) ([]byte, error) {
	var r struct {
		Model string `json:"model"`
		Data  []struct {
			Index     int       `json:"index"`
			Embedding []float32 `json:"embedding"`
		} `json:"data"`
		Usage *oaUsage `json:"usage"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, fmt.Errorf("decoding OpenAI embeddings response: %w", err)
	}
	out := api.EmbedResponse{Model: r.Model, Embeddings: make([][]float32, len(r.Data))}
	if out.Model == "" {
		out.Model = info.Model
	}
	for _, d := range r.Data {
		if d.Index < 0 || d.Index >= len(out.Embeddings) {
			return nil, fmt.Errorf("embedding index %d out of range", d.Index)
		}
		out.Embeddings[d.Index] = d.Embedding
	}
	if r.Usage != nil {
		out.PromptEvalCount = r.Usage.PromptTokens
	}
	return json.Marshal(out)
}
