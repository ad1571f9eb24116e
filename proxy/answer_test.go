package proxy

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// answerTextDecoded is answerText by decoding each event whole with
// encoding/json: the reference the fast path is checked against. An event
// with "choices" gives its first choice's delta content, or without one
// its text (a legacy completion's), or its message content; a Responses stream's text delta its delta; a
// Responses body its message items' text; any other event its message
// content and its response.
func answerTextDecoded(raw []byte) string {
	var out strings.Builder
	for _, line := range strings.Split(string(raw), "\n") {
		line = strings.TrimSpace(line)
		if d, ok := strings.CutPrefix(line, "data:"); ok {
			line = strings.TrimSpace(d)
		}
		var v map[string]any
		if !strings.HasPrefix(line, "{") || json.Unmarshal([]byte(line), &v) != nil {
			continue
		}
		content := func(parent any) (any, bool) {
			m, ok := parent.(map[string]any)
			if !ok {
				return nil, false
			}
			c, ok := m["content"]
			return c, ok
		}
		if choices, ok := v["choices"]; ok {
			list, _ := choices.([]any)
			if len(list) == 0 {
				continue
			}
			first, _ := list[0].(map[string]any)
			if c, ok := content(first["delta"]); ok {
				out.WriteString(contentText(c))
			} else if text, ok := first["text"].(string); ok {
				out.WriteString(text)
			} else if c, ok := content(first["message"]); ok {
				out.WriteString(contentText(c))
			}
			continue
		}
		if v["type"] == "response.output_text.delta" {
			d, _ := v["delta"].(string)
			out.WriteString(d)
			continue
		}
		if v["object"] == "response" {
			items, _ := v["output"].([]any)
			for _, it := range items {
				if m, _ := it.(map[string]any); m["type"] == "message" {
					out.WriteString(contentText(m["content"]))
				}
			}
			continue
		}
		switch v["type"] {
		case "message":
			out.WriteString(contentText(v["content"]))
			continue
		case "content_block_delta":
			d, _ := v["delta"].(map[string]any)
			text, _ := d["text"].(string)
			out.WriteString(text)
			continue
		}
		if c, ok := content(v["message"]); ok {
			out.WriteString(contentText(c))
		}
		if r, ok := v["response"].(string); ok {
			out.WriteString(r)
		}
	}
	return out.String()
}

func TestAnswerText(t *testing.T) {
	for _, tc := range []struct{ name, raw, want string }{
		{"openai body", `{"choices":[{"message":{"role":"assistant","content":"Paris."}}]}`, "Paris."},
		{"openai body laid out", "{\n  \"choices\": [\n    {\"message\": {\"content\": \"Pa\\nris.\"}}\n  ]\n}", "Pa\nris."},
		{"openai parts", `{"choices":[{"message":{"content":[{"type":"text","text":"a"},{"type":"image_url"},{"type":"text","text":"b"}]}}]}`, "a\nb"},
		{"completion", `{"object":"text_completion","choices":[{"text":"Once upon","index":0}]}`, "Once upon"},
		{"first choice only", `{"choices":[{"message":{"content":"one"}},{"message":{"content":"two"}}]}`, "one"},
		{"sse", "data: {\"choices\":[{\"delta\":{\"role\":\"assistant\"}}]}\n\ndata: {\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\n\ndata: {\"choices\":[{\"delta\":{\"content\":\"lo \\\"x\\\" \\u00e9\"}}]}\n\ndata: [DONE]\n\n", "Hello \"x\" é"},
		{"ollama ndjson", "{\"message\":{\"role\":\"assistant\",\"content\":\"Hi\"},\"done\":false}\n{\"message\":{\"content\":\" there\"},\"done\":true}\n", "Hi there"},
		{"ollama generate", "{\"response\":\"4\",\"done\":false}\n{\"response\":\"2\",\"done\":true}\n", "42"},
		{"responses body", `{"object":"response","output":[{"type":"reasoning"},{"type":"message","content":[{"type":"output_text","text":"Paris."}]}]}`, "Paris."},
		{"responses sse", "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\"Pa\"}\n\nevent: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\"ris\"}\n\nevent: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"object\":\"response\",\"output\":[]}}\n\n", "Paris"},
		{"anthropic body", `{"id":"msg_1","type":"message","role":"assistant","content":[{"type":"text","text":"Let me check."},{"type":"tool_use","id":"t","name":"f","input":{"text":"no"}},{"type":"text","text":"Done."}]}`, "Let me check.\nDone."},
		{"anthropic sse", "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"content\":[]}}\n\nevent: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Par\"}}\n\nevent: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"is.\"}}\n\nevent: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"text\\\":\"}}\n\nevent: message_stop\ndata: {\"type\":\"message_stop\"}\n\n", "Paris."},
		{"garbage", "data: {not json\n\nhello\n", ""},
		{"empty", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := answerText([]byte(tc.raw), false); got != tc.want {
				t.Errorf("answerText = %q; want %q", got, tc.want)
			}
			if strings.HasPrefix(tc.name, "openai") || tc.name == "first choice only" || tc.name == "anthropic body" {
				if got := answerText([]byte(tc.raw), true); got != tc.want {
					t.Errorf("answerText of the whole body = %q; want %q", got, tc.want)
				}
			}
			if got := answerTextDecoded([]byte(tc.raw)); got != tc.want && tc.name != "openai body laid out" {
				t.Errorf("reference = %q; want %q (the table is wrong)", got, tc.want)
			}
		})
	}
}

// The recorded backend payloads give the same text either way.
func TestAnswerTextOfRecordedPayloads(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join("testdata", "*", "*"))
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		want := answerTextDecoded(raw)
		if got := answerText(raw, false); got != want {
			t.Errorf("%s: %q; decoded whole: %q", f, got, want)
		}
	}
}

// FuzzAnswerText: never panics, and where every event is valid JSON
// without duplicate keys (encoding/json keeps the last, gjson the first)
// it agrees with decoding each event whole.
func FuzzAnswerText(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "*", "*"))
	for _, p := range files {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte(`{"choices":[{"delta":{"content":"\ud83d\ude00"}}]}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		got := answerText(raw, false)
		if body := strings.TrimSpace(string(raw)); strings.HasPrefix(body, "{") && json.Valid([]byte(body)) {
			// Known to be one body, it reads the same without validating.
			if whole := answerText(raw, true); whole != got {
				t.Errorf("answerText of the whole body = %q; told apart %q", whole, got)
			}
		}
		if strings.Contains(string(raw), "\r") || !eventsValid(raw) {
			return
		}
		if want := answerTextDecoded(raw); got != want && !strings.Contains(want, "\ufffd") {
			t.Errorf("answerText = %q; decoded whole %q", got, want)
		}
	})
}

// eventsValid reports whether raw is one JSON object, or lines each empty,
// "data: [DONE]"-like (not starting with '{') or one plain JSON object
// whose objects have unique keys.
func eventsValid(raw []byte) bool {
	for _, line := range strings.Split(string(raw), "\n") {
		line = strings.TrimSpace(line)
		if d, ok := strings.CutPrefix(line, "data:"); ok {
			line = strings.TrimSpace(d)
		}
		if !strings.HasPrefix(line, "{") {
			continue
		}
		if !json.Valid([]byte(line)) || !uniqueKeys(json.NewDecoder(strings.NewReader(line))) {
			return false
		}
	}
	return true
}

// uniqueKeys walks one JSON value and reports whether no object in it
// repeats a key.
func uniqueKeys(d *json.Decoder) bool {
	tok, err := d.Token()
	if err != nil {
		return false
	}
	switch tok {
	case json.Delim('{'):
		seen := map[string]bool{}
		for d.More() {
			k, err := d.Token()
			if err != nil || seen[k.(string)] {
				return false
			}
			seen[k.(string)] = true
			if !uniqueKeys(d) {
				return false
			}
		}
		_, err = d.Token()
		return err == nil
	case json.Delim('['):
		for d.More() {
			if !uniqueKeys(d) {
				return false
			}
		}
		_, err = d.Token()
		return err == nil
	}
	return true
}

// BenchmarkAnswerText times the trace's answer extraction on the recorded
// stream against decoding each event whole.
func BenchmarkAnswerText(b *testing.B) {
	raw, err := os.ReadFile(filepath.Join("testdata", "openai", "chat_stream.sse"))
	if err != nil {
		b.Fatal(err)
	}
	b.Run("paths", func(b *testing.B) {
		for b.Loop() {
			answerText(raw, false)
		}
	})
	b.Run("decoded", func(b *testing.B) {
		for b.Loop() {
			answerTextDecoded(raw)
		}
	})
}

// contentText flattens decoded string or multi-part content to its
// text: the reference partsText is checked against.
func contentText(c any) string {
	if s, ok := c.(string); ok {
		return s
	}
	parts, _ := c.([]any)
	var b strings.Builder
	for _, p := range parts {
		m, _ := p.(map[string]any)
		if t := m["type"]; t == "text" || t == "input_text" || t == "output_text" {
			if b.Len() > 0 {
				b.WriteByte('\n')
			}
			text, _ := m["text"].(string)
			b.WriteString(text)
		}
	}
	return b.String()
}
