package providers

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/ollama/ollama/api"
	"github.com/tidwall/gjson"
)

// Responses and streams translated between the OpenAI and Ollama formats.

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

// OpenAIStream calls fn with the payload of each event of an OpenAI chat
// stream, up to "[DONE]", which is not passed. A stream that ends without
// it is io.ErrUnexpectedEOF, unless a choice had finished: some servers
// end without "[DONE]".
func OpenAIStream(src io.Reader, fn func(data []byte) error) error {
	finished := false
	err := eachSSE(src, func(data []byte) (bool, error) {
		if string(data) == "[DONE]" {
			return true, nil
		}
		if gjson.GetBytes(data, "choices.0.finish_reason").Type == gjson.String {
			finished = true
		}
		return false, fn(data)
	})
	if errors.Is(err, io.ErrUnexpectedEOF) && finished {
		return nil
	}
	return err
}
