package anthropic

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	sdk "github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/openai/openai-go/v3"
)

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// fixClock makes created times deterministic for the test.
func fixClock(t testing.TB) {
	old := now
	now = func() time.Time { return time.Unix(1741570000, 0) }
	t.Cleanup(func() { now = old })
}

var fromChatResponses = []struct {
	name, in string
	info     Info
	want     string
}{
	{
		"text", "", Info{},
		`{"id":"msg_B9MHDbslfkBeAs8l4bebGdFOJ6PeG","type":"message","role":"assistant","model":"gpt-4o-2024-08-06","content":[{"type":"text","text":"The capital of France is Paris."}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":24,"output_tokens":8,"cache_read_input_tokens":0}}`,
	},
	{
		"tools", "", Info{},
		`{"id":"msg_B9MJ8yG5xC4Ss6TQ4v4mu4S3gN7pQ","type":"message","role":"assistant","model":"gpt-4o-2024-08-06","content":[{"type":"tool_use","id":"call_6sAYzeEk1s3Z0qpHxJw2hyqZ","name":"get_weather","input":{"location":"Paris, France","unit":"celsius"}}],"stop_reason":"tool_use","stop_sequence":null,"usage":{"input_tokens":81,"output_tokens":22}}`,
	},
	{
		"stop sequence named by the backend",
		`{"id":"cmpl-1","model":"qwen","choices":[{"index":0,"message":{"role":"assistant","content":[{"type":"text","text":"1, 2, 3"}]},"finish_reason":"stop","stop_reason":"4"}],"usage":{"prompt_tokens":100,"completion_tokens":5,"prompt_tokens_details":{"cached_tokens":64}}}`,
		Info{StopSequences: []string{"4"}},
		`{"id":"msg_cmpl-1","type":"message","role":"assistant","model":"qwen","content":[{"type":"text","text":"1, 2, 3"}],"stop_reason":"stop_sequence","stop_sequence":"4","usage":{"input_tokens":36,"output_tokens":5,"cache_read_input_tokens":64}}`,
	},
	{
		"length, model from the request",
		`{"id":"x","choices":[{"index":0,"message":{"role":"assistant","content":"abc"},"finish_reason":"length"}]}`,
		Info{Model: "claude-x"},
		`{"id":"msg_x","type":"message","role":"assistant","model":"claude-x","content":[{"type":"text","text":"abc"}],"stop_reason":"max_tokens","stop_sequence":null,"usage":{"input_tokens":0,"output_tokens":0}}`,
	},
	{
		"content filter, empty",
		`{"id":"y","model":"m","choices":[{"index":0,"message":{"role":"assistant","content":null},"finish_reason":"content_filter"}]}`,
		Info{},
		`{"id":"msg_y","type":"message","role":"assistant","model":"m","content":[],"stop_reason":"refusal","stop_sequence":null,"usage":{"input_tokens":0,"output_tokens":0}}`,
	},
}

func TestResponseFromChat(t *testing.T) {
	files := map[string]string{"text": "chat.json", "tools": "chat_tools.json"}
	for _, tt := range fromChatResponses {
		t.Run(tt.name, func(t *testing.T) {
			in := []byte(tt.in)
			if f, ok := files[tt.name]; ok {
				in = readTestdata(t, f)
			}
			got, err := ResponseFromChat(in, tt.info)
			if err != nil {
				t.Fatal(err)
			}
			jsonEqual(t, got, tt.want)
			var m sdk.Message // the official client reads it
			if err := json.Unmarshal(got, &m); err != nil || m.Type != "message" {
				t.Errorf("SDK: %v, %+v", err, m)
			}
		})
	}
	for _, bad := range []string{`{"choices":[]}`, `[1]`, `{"choices":[{"message":{"tool_calls":[{"function":{"name":"f","arguments":"{x"}}]}}]}`} {
		if _, err := ResponseFromChat([]byte(bad), Info{}); err == nil {
			t.Errorf("ResponseFromChat(%s): no error", bad)
		}
	}
}

var toChatResponses = []struct{ name, in, want string }{
	{
		"text with cache reads", "message.json",
		`{"id":"msg_013Zva2CMHLNnXjNJJKqJ2EF","object":"chat.completion","created":1741570000,"model":"claude-sonnet-4-5-20250929","choices":[{"index":0,"message":{"role":"assistant","content":"The capital of France is Paris."},"finish_reason":"stop"}],"usage":{"prompt_tokens":24,"completion_tokens":8,"total_tokens":32,"prompt_tokens_details":{"cached_tokens":10}}}`,
	},
	{
		"tools", "message_tools.json",
		`{"id":"msg_01Aq9w938a90dw8q","object":"chat.completion","created":1741570000,"model":"claude-sonnet-4-5-20250929","choices":[{"index":0,"message":{"role":"assistant","content":"I'll check the weather in Paris.","tool_calls":[{"id":"toolu_01A09q90qw90lq917835lq9","type":"function","function":{"name":"get_weather","arguments":"{\"location\":\"Paris, France\",\"unit\":\"celsius\"}"}}]},"finish_reason":"tool_calls"}],"usage":{"prompt_tokens":384,"completion_tokens":58,"total_tokens":442,"prompt_tokens_details":{"cached_tokens":0}}}`,
	},
	{
		"thinking, only tools, max_tokens",
		`{"id":"msg_1","type":"message","role":"assistant","model":"claude","content":[{"type":"thinking","thinking":"hm","signature":"s"},{"type":"tool_use","id":"t1","name":"f","input":{}}],"stop_reason":"max_tokens","usage":{"input_tokens":3,"output_tokens":4}}`,
		`{"id":"msg_1","object":"chat.completion","created":1741570000,"model":"claude","choices":[{"index":0,"message":{"role":"assistant","content":null,"reasoning_content":"hm","tool_calls":[{"id":"t1","type":"function","function":{"name":"f","arguments":"{}"}}]},"finish_reason":"length"}],"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}`,
	},
}

func TestResponseToChat(t *testing.T) {
	fixClock(t)
	for _, tt := range toChatResponses {
		t.Run(tt.name, func(t *testing.T) {
			in := []byte(tt.in)
			if tt.in[0] != '{' {
				in = readTestdata(t, tt.in)
			}
			got, err := ResponseToChat(in, Info{})
			if err != nil {
				t.Fatal(err)
			}
			jsonEqual(t, got, tt.want)
			var c openai.ChatCompletion // the official client reads it
			if err := json.Unmarshal(got, &c); err != nil || len(c.Choices) != 1 {
				t.Errorf("openai-go: %v, %+v", err, c)
			}
		})
	}
	for _, bad := range []string{`{"type":"error","error":{"type":"x"}}`, `"x"`, `{"content":[{"type":"tool_use","input":[1]}]}`} {
		if _, err := ResponseToChat([]byte(bad), Info{}); err == nil {
			t.Errorf("ResponseToChat(%s): no error", bad)
		}
	}
}
