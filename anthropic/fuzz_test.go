package anthropic

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	sdk "github.com/anthropics/anthropic-sdk-go/v2"
)

// Every translator must never panic, and must return valid JSON whenever
// it returns no error. The seeds are the table cases and the recordings.

func seedFiles(f *testing.F, pattern string) {
	names, _ := filepath.Glob(filepath.Join("testdata", pattern))
	for _, n := range names {
		b, err := os.ReadFile(n)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
}

func mustJSON(t *testing.T, what string, b []byte) {
	t.Helper()
	if !json.Valid(b) {
		t.Fatalf("%s is not valid JSON: %q", what, b)
	}
}

func FuzzRequestToChat(f *testing.F) {
	for _, tt := range toChatTests {
		f.Add([]byte(tt.in))
	}
	for _, tt := range toChatErrors {
		f.Add([]byte(tt.in))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		out, info, err := RequestToChat(body)
		if err != nil {
			return
		}
		mustJSON(t, "chat request", out)
		var back chatRequest
		if json.Unmarshal(out, &back) != nil || back.Model != info.Model || len(back.Messages) == 0 {
			t.Fatalf("chat request %s does not carry model and messages", out)
		}
	})
}

func FuzzRequestFromChat(f *testing.F) {
	for _, tt := range fromChatTests {
		f.Add([]byte(tt.in))
	}
	for _, tt := range fromChatErrors {
		f.Add([]byte(tt.in))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		out, _, err := RequestFromChat(body, 0)
		if err != nil {
			return
		}
		mustJSON(t, "Messages request", out)
		// Anthropic's own request checks, as far as dso makes them.
		var back msgRequest
		if json.Unmarshal(out, &back) != nil || back.MaxTokens == nil || *back.MaxTokens < 1 || len(back.Messages) == 0 {
			t.Fatalf("Messages request %s lacks max_tokens or messages", out)
		}
		for i := 1; i < len(back.Messages); i++ {
			if back.Messages[i].Role == back.Messages[i-1].Role {
				t.Fatalf("turns %d and %d share a role: %s", i-1, i, out)
			}
		}
	})
}

func FuzzResponseFromChat(f *testing.F) {
	for _, tt := range fromChatResponses {
		f.Add([]byte(tt.in), "4")
	}
	for _, n := range []string{"chat.json", "chat_tools.json"} {
		b, err := os.ReadFile(filepath.Join("testdata", n))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, "")
	}
	f.Fuzz(func(t *testing.T, body []byte, stop string) {
		out, err := ResponseFromChat(body, Info{StopSequences: []string{stop}})
		if err != nil {
			return
		}
		mustJSON(t, "Message", out)
		var m sdk.Message
		if err := json.Unmarshal(out, &m); err != nil {
			t.Fatalf("the SDK cannot read %s: %v", out, err)
		}
	})
}

func FuzzResponseToChat(f *testing.F) {
	for _, tt := range toChatResponses {
		f.Add([]byte(tt.in))
	}
	seedFiles(f, "message*.json")
	f.Fuzz(func(t *testing.T, body []byte) {
		out, err := ResponseToChat(body, Info{})
		if err != nil {
			return
		}
		mustJSON(t, "chat answer", out)
	})
}

// FuzzStreamFromChat feeds a chat SSE stream; when the translation
// succeeds, the official SDK must accumulate every event it emitted.
func FuzzStreamFromChat(f *testing.F) {
	seedFiles(f, "chat*.sse")
	f.Add([]byte("data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"function\":{\"arguments\":\"{\"}}]}}]}\n\ndata: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"x\",\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"}\"}}]}}]}\n\n"))
	f.Fuzz(func(t *testing.T, stream []byte) {
		var out bytes.Buffer
		var names []string
		err := StreamFromChat(chatEvents(stream), Info{Model: "m"}, func(ev string, data []byte) error {
			mustJSON(t, "event "+ev, data)
			names = append(names, ev)
			return namedSSE(&out)(ev, data)
		})
		if err != nil {
			return
		}
		if len(names) < 3 || names[0] != "message_start" || names[len(names)-1] != "message_stop" {
			t.Fatalf("event order %v", names)
		}
		accumulateMessages(t, out.Bytes())
	})
}

func FuzzStreamToChat(f *testing.F) {
	seedFiles(f, "message*.sse")
	f.Add([]byte("event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":3,\"content_block\":{\"type\":\"tool_use\",\"id\":\"t\",\"name\":\"n\",\"input\":{}}}\n\nevent: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"))
	f.Fuzz(func(t *testing.T, stream []byte) {
		_ = StreamToChat(bytes.NewReader(stream), Info{IncludeUsage: true}, func(data []byte) error {
			if string(data) != "[DONE]" {
				mustJSON(t, "chunk", data)
			}
			return nil
		})
	})
}
