package providers_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dso-proxy/dso/providers"
	"github.com/ollama/ollama/api"
)

// Fuzzers for the cross-format translation: every input either fails with
// an error or yields a well-formed body in the other format. None may panic.

// openAIChatSeeds are OpenAI chat-completions bodies, valid and not.
var openAIChatSeeds = []string{
	`{"model":"m","messages":[{"role":"user","content":"hi"}]}`,
	`{"model":"m","messages":[{"role":"system","content":"be brief"},{"role":"user","content":"hi"}],"stream":true,"stream_options":{"include_usage":true}}`,
	`{"model":"m","messages":[{"role":"developer","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}]}`,
	`{"model":"m","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"data:image/png;base64,iVBORw0KGgo="}}]}]}`,
	`{"model":"m","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"https://example.com/x.png"}}]}]}`,
	`{"model":"m","messages":[{"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{\"a\":1}"}}]},{"role":"tool","tool_call_id":"c1","name":"f","content":"42"}]}`,
	`{"model":"m","messages":[{"role":"assistant","tool_calls":[{"function":{"name":"f","arguments":"[1]"}}]}]}`,
	`{"model":"m","messages":[],"temperature":0.2,"top_p":0.9,"max_tokens":5,"max_completion_tokens":7,"seed":1,"frequency_penalty":0.1,"presence_penalty":0.1,"stop":"x"}`,
	`{"model":"m","messages":[],"stop":["a","b"],"response_format":{"type":"json_object"}}`,
	`{"model":"m","messages":[],"stop":5}`,
	`{"model":"m","messages":[],"response_format":{"type":"json_schema","json_schema":{"name":"r","schema":{"type":"object"}}}}`,
	`{"model":"m","messages":[],"response_format":{"type":"json_schema"}}`,
	`{"model":"m","messages":[],"response_format":{"type":"xml"}}`,
	`{"model":"m","messages":[],"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object","properties":{"a":{"type":"string"}}}}}]}`,
	`{"model":"m","messages":[{"role":"user","content":5}]}`,
	`{"model":"m","messages":null}`,
	`{"model":"m"}`,
	`[]`,
	`null`,
	``,
	`{`,
}

// ollamaChatSeeds are Ollama /api/chat bodies, valid and not.
var ollamaChatSeeds = []string{
	`{"model":"m","messages":[{"role":"user","content":"hi"}]}`,
	`{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":false,"options":{"temperature":0.1,"num_predict":5,"stop":["x"],"mirostat":1}}`,
	`{"model":"m","messages":[{"role":"user","content":"look","images":["iVBORw0KGgo="]}]}`,
	`{"model":"m","messages":[{"role":"assistant","content":"","tool_calls":[{"function":{"name":"f","arguments":{"a":1}}}]},{"role":"tool","content":"42","tool_name":"f","tool_call_id":"c"}]}`,
	`{"model":"m","messages":[{"role":"assistant","thinking":"hmm","content":"x"}]}`,
	`{"model":"m","messages":[],"format":"json"}`,
	`{"model":"m","messages":[],"format":{"type":"object"}}`,
	`{"model":"m","messages":[],"format":"yaml"}`,
	`{"model":"m","messages":[],"format":""}`,
	`{"model":"m","messages":[],"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object"}}}]}`,
	`{"model":"m","messages":[null]}`,
	`{"model":"m","messages":"x"}`,
	`{}`,
	`null`,
	``,
	`{"model":`,
}

// FuzzOpenAIChatToOllama: on success the output decodes as an Ollama chat
// request with the same model and as many messages as the input.
func FuzzOpenAIChatToOllama(f *testing.F) {
	for _, s := range openAIChatSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		out, info, err := providers.OpenAIChatToOllama(body)
		if err != nil {
			return
		}
		if !json.Valid(out) {
			t.Fatalf("output is not JSON: %q", out)
		}
		var in struct {
			Model    string            `json:"model"`
			Messages []json.RawMessage `json:"messages"`
			Stream   bool              `json:"stream"`
		}
		if err := json.Unmarshal(body, &in); err != nil {
			t.Fatalf("translation accepted %q, which does not decode: %v", body, err)
		}
		var got api.ChatRequest
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatalf("output %q is not an Ollama chat request: %v", out, err)
		}
		if got.Model != in.Model || info.Model != in.Model {
			t.Errorf("model %q (info %q); want %q", got.Model, info.Model, in.Model)
		}
		if len(got.Messages) != len(in.Messages) {
			t.Errorf("%d messages; want %d\nin:  %q\nout: %q", len(got.Messages), len(in.Messages), body, out)
		}
		if got.Stream == nil || *got.Stream != in.Stream || info.Stream != in.Stream {
			t.Errorf("stream %v (info %v); want %v", got.Stream, info.Stream, in.Stream)
		}
	})
}

// FuzzOllamaChatToOpenAI: on success the output decodes as an OpenAI chat
// request with the same model, as many messages, each with a string role
// and a string, null or list content.
func FuzzOllamaChatToOpenAI(f *testing.F) {
	for _, s := range ollamaChatSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		out, info, err := providers.OllamaChatToOpenAI(body)
		if err != nil {
			return
		}
		if !json.Valid(out) {
			t.Fatalf("output is not JSON: %q", out)
		}
		var in struct {
			Model    string            `json:"model"`
			Messages []json.RawMessage `json:"messages"`
		}
		if err := json.Unmarshal(body, &in); err != nil {
			t.Fatalf("translation accepted %q, which does not decode: %v", body, err)
		}
		var got struct {
			Model    *string `json:"model"`
			Stream   *bool   `json:"stream"`
			Messages []struct {
				Role    *string         `json:"role"`
				Content json.RawMessage `json:"content"`
			} `json:"messages"`
		}
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatalf("output %q is not an OpenAI chat request: %v", out, err)
		}
		if got.Model == nil || *got.Model != in.Model || info.Model != in.Model {
			t.Errorf("model %v (info %q); want %q", got.Model, info.Model, in.Model)
		}
		if got.Stream == nil || *got.Stream != info.Stream {
			t.Errorf("stream %v; info says %v", got.Stream, info.Stream)
		}
		if len(got.Messages) != len(in.Messages) {
			t.Errorf("%d messages; want %d\nin:  %q\nout: %q", len(got.Messages), len(in.Messages), body, out)
		}
		for i, m := range got.Messages {
			if m.Role == nil {
				t.Errorf("messages[%d] has no role: %q", i, out)
			}
			if c := bytes.TrimSpace(m.Content); len(c) == 0 || (c[0] != '"' && c[0] != '[' && string(c) != "null") {
				t.Errorf("messages[%d].content %q is not a string, null or a list", i, c)
			}
		}
	})
}

// sseSeeds are OpenAI SSE streams, complete and damaged.
func sseSeeds(f *testing.F) [][]byte {
	seeds := [][]byte{
		[]byte("data: {\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"}}]}\n\ndata: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2}}\n\ndata: [DONE]\n\n"),
		[]byte("data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\"},\"finish_reason\":\"length\"}]}\n\n"),
		[]byte("data: {\"choices\":[{\"index\":0,\"delta\":{\"reasoning_content\":\"t\"}}]}\n\ndata: {\"choices\":[{\"index\":1,\"delta\":{\"content\":\"b\"}}]}\n\n"),
		[]byte("data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"c\",\"function\":{\"name\":\"f\",\"arguments\":\"{\\\"a\\\":\"}}]}}]}\n\ndata: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"1}\"}}]},\"finish_reason\":\"tool_calls\"}]}\n\ndata: [DONE]\n\n"),
		[]byte("data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"function\":{\"arguments\":\"not json\"}}]}}]}\n\ndata: [DONE]\n\n"),
		[]byte(": comment\r\nevent: x\r\ndata: {\"choices\":[]}\r\n\r\ndata: [DONE]\r\n\r\n"),
		[]byte("data: {\"error\":{\"message\":\"overloaded\"}}\n\n"),
		[]byte("data:{\"choices\":[{\"delta\":{\"content\":[{\"type\":\"text\",\"text\":\"x\"}]}}]}\ndata: \n\n"),
		[]byte("data: not json\n\n"),
		[]byte("data: [DONE]"),
		[]byte(""),
	}
	if b, err := os.ReadFile(filepath.Join("..", "proxy", "testdata", "openai", "chat_stream.sse")); err == nil {
		seeds = append(seeds, b)
	}
	if b, err := os.ReadFile(filepath.Join("..", "proxy", "testdata", "openai", "chat_tools_stream.sse")); err == nil {
		seeds = append(seeds, b)
	}
	return seeds
}

// ndjsonSeeds are Ollama NDJSON streams, complete and damaged.
func ndjsonSeeds(f *testing.F) [][]byte {
	seeds := [][]byte{
		[]byte("{\"model\":\"m\",\"message\":{\"role\":\"assistant\",\"content\":\"hi\"},\"done\":false}\n{\"model\":\"m\",\"message\":{\"role\":\"assistant\",\"content\":\"\"},\"done\":true,\"done_reason\":\"stop\",\"prompt_eval_count\":3,\"eval_count\":2}\n"),
		[]byte("{\"message\":{\"thinking\":\"t\"},\"done\":false}\n\n{\"message\":{\"tool_calls\":[{\"function\":{\"name\":\"f\",\"arguments\":{\"a\":1}}}]},\"done\":true,\"done_reason\":\"length\"}"),
		[]byte("{\"message\":{\"content\":\"a\"},\"done\":false}\n"),
		[]byte("{\"error\":\"model not found\"}\n"),
		[]byte("not json\n"),
		[]byte("{\"done\":true}\n{\"done\":true}\n"),
		[]byte(""),
	}
	if b, err := os.ReadFile(filepath.Join("..", "proxy", "testdata", "ollama", "chat_stream.ndjson")); err == nil {
		seeds = append(seeds, b)
	}
	return seeds
}

// FuzzEachSSE drives the SSE splitter through OpenAIToOllamaStream: every
// emitted object is JSON, and a stream that ends without error ends with
// a done object.
func FuzzEachSSE(f *testing.F) {
	for _, s := range sseSeeds(f) {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, stream []byte, generate bool) {
		var out [][]byte
		err := providers.OpenAIToOllamaStream(bytes.NewReader(stream), providers.ChatRequestInfo{Model: "m", Stream: true}, generate, func(b []byte) error {
			out = append(out, append([]byte(nil), b...))
			return nil
		})
		for i, b := range out {
			if !json.Valid(b) {
				t.Fatalf("payload %d is not JSON: %q", i, b)
			}
			if bytes.ContainsRune(b, '\n') {
				t.Fatalf("payload %d contains a newline, breaking NDJSON: %q", i, b)
			}
		}
		if err != nil {
			return
		}
		if len(out) == 0 {
			t.Fatalf("stream %q ended without error and without a final object", stream)
		}
		var last struct {
			Done bool `json:"done"`
		}
		if err := json.Unmarshal(out[len(out)-1], &last); err != nil || !last.Done {
			t.Fatalf("last object %q is not done", out[len(out)-1])
		}
	})
}

// A backend's streamed tool call with a negative index must fail the
// stream, not panic. addToolDelta (translate.go) checks only the upper
// bound: for len(s.tools) <= i { append } then s.tools[i], so i = -1
// indexes out of range; a huge index (1<<31) allocates that many tool
// calls instead. The same code serves OpenAIChatResponseToOllama.
func TestNegativeToolCallIndex(t *testing.T) {
	stream := "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":-1}]}}]}\n\ndata: [DONE]\n\n"
	err := providers.OpenAIToOllamaStream(strings.NewReader(stream), providers.ChatRequestInfo{Model: "m"}, false, func([]byte) error { return nil })
	if err == nil {
		t.Error("a negative tool call index was accepted")
	}
	_, err = providers.OpenAIChatResponseToOllama([]byte(`{"choices":[{"message":{"role":"assistant","tool_calls":[{"index":-1,"function":{"arguments":""}}]}}]}`), providers.ChatRequestInfo{Model: "m"}, false)
	if err == nil {
		t.Error("a negative tool call index was accepted")
	}
}

// FuzzEachNDJSON drives the NDJSON splitter through OllamaToOpenAIStream:
// every emitted payload is JSON or "[DONE]", "[DONE]" comes last and only
// last, and a stream that ends without error ends with it.
func FuzzEachNDJSON(f *testing.F) {
	for _, s := range ndjsonSeeds(f) {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, stream []byte, usage bool) {
		var out [][]byte
		err := providers.OllamaToOpenAIStream(bytes.NewReader(stream), providers.ChatRequestInfo{Model: "m", Stream: true, IncludeUsage: usage}, func(b []byte) error {
			out = append(out, append([]byte(nil), b...))
			return nil
		})
		for i, b := range out {
			if string(b) == "[DONE]" {
				if i != len(out)-1 {
					t.Fatalf("[DONE] at %d of %d payloads", i, len(out))
				}
				continue
			}
			if !json.Valid(b) {
				t.Fatalf("payload %d is not JSON: %q", i, b)
			}
			if bytes.ContainsAny(b, "\r\n") {
				t.Fatalf("payload %d contains a line break, breaking SSE framing: %q", i, b)
			}
		}
		if err != nil {
			return
		}
		if len(out) == 0 || string(out[len(out)-1]) != "[DONE]" {
			t.Fatalf("stream %q ended without error but not with [DONE]: %q", stream, out)
		}
	})
}
