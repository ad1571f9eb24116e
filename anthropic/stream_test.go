package anthropic

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	sdk "github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/dso-proxy/dso/internal/goldentest"
	"github.com/openai/openai-go/v3"
)

// chatEvents reads a recorded chat SSE stream as hubAnswer.Events does:
// each payload before "[DONE]".
func chatEvents(src []byte) func(fn func([]byte) error) error {
	return func(fn func([]byte) error) error {
		err := readSSE(bytes.NewReader(src), func(_ string, data []byte) (bool, error) {
			if string(data) == "[DONE]" {
				return true, nil
			}
			return false, fn(data)
		})
		return err
	}
}

// namedSSE writes events as dso's eventWriter.emitNamed does.
func namedSSE(out *bytes.Buffer) func(string, []byte) error {
	return func(ev string, data []byte) error {
		fmt.Fprintf(out, "event: %s\ndata: %s\n\n", ev, data)
		return nil
	}
}

// accumulateMessages reads a Messages stream into a message the way the
// official Go SDK does, checking the event order as it goes.
func accumulateMessages(t *testing.T, stream []byte) sdk.Message {
	t.Helper()
	var acc sdk.Message
	var order []string
	err := readSSE(bytes.NewReader(stream), func(name string, data []byte) (bool, error) {
		var ev sdk.MessageStreamEventUnion
		if err := json.Unmarshal(data, &ev); err != nil {
			return true, err
		}
		if ev.Type != name {
			return true, fmt.Errorf("event %q carries type %q", name, ev.Type)
		}
		order = append(order, name)
		return ev.Type == "message_stop", acc.Accumulate(ev)
	})
	if err != nil {
		t.Fatalf("SDK accumulation: %v", err)
	}
	if order[0] != "message_start" || order[len(order)-2] != "message_delta" {
		t.Errorf("event order %v", order)
	}
	return acc
}

func TestStreamFromChatGolden(t *testing.T) {
	tests := []struct {
		in         string
		text       string
		tools      []string // name:input
		stop       sdk.StopReason
		in_, out   int64
		cachedRead int64
	}{
		{"chat_stream", "The capital of France is Paris.", nil, sdk.StopReasonEndTurn, 24, 8, 0},
		{"chat_tools_stream", "", []string{`get_weather:{"location":"Paris, France"}`}, sdk.StopReasonToolUse, 81, 19, 0},
		{"chat_mixed_stream", "Let me look.", []string{`read_file:{"path":"main.go"}`, `list_dir:{"path":"."}`}, sdk.StopReasonToolUse, 176, 40, 1024},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			var out bytes.Buffer
			if err := StreamFromChat(chatEvents(readTestdata(t, tt.in+".sse")), Info{Model: "claude-x"}, namedSSE(&out)); err != nil {
				t.Fatal(err)
			}
			goldentest.Check(t, tt.in+".messages.golden", out.Bytes())
			m := accumulateMessages(t, out.Bytes())
			var text strings.Builder
			var tools []string
			for _, b := range m.Content {
				switch b.Type {
				case "text":
					text.WriteString(b.Text)
				case "tool_use":
					tools = append(tools, b.Name+":"+string(b.Input))
				}
			}
			if text.String() != tt.text || fmt.Sprint(tools) != fmt.Sprint(tt.tools) {
				t.Errorf("text %q tools %q; want %q %q", text.String(), tools, tt.text, tt.tools)
			}
			if m.StopReason != tt.stop || m.Usage.InputTokens != tt.in_ || m.Usage.OutputTokens != tt.out || m.Usage.CacheReadInputTokens != tt.cachedRead {
				t.Errorf("stop %q usage %+v", m.StopReason, m.Usage)
			}
		})
	}
}

// accumulateChat reads chat chunks the way openai-go does.
func accumulateChat(t *testing.T, chunks [][]byte) openai.ChatCompletionAccumulator {
	t.Helper()
	var acc openai.ChatCompletionAccumulator
	for _, c := range chunks {
		var ch openai.ChatCompletionChunk
		if err := json.Unmarshal(c, &ch); err != nil {
			t.Fatalf("chunk %s: %v", c, err)
		}
		if !acc.AddChunk(ch) {
			t.Fatalf("openai-go refused chunk %s", c)
		}
	}
	return acc
}

func TestStreamToChatGolden(t *testing.T) {
	fixClock(t)
	tests := []struct {
		in, text, reasoning, finish string
		tools                       []string
		prompt, completion, cached  int64
	}{
		{"message_stream", "The capital of France is Paris.", "", "stop", nil, 24, 8, 10},
		{"message_tools_stream", "Okay, let's check the weather in Paris.", "", "tool_calls", []string{`get_weather:{"location": "Paris, France", "unit": "celsius"}`}, 472, 89, 0},
		{"message_thinking_stream", "1, 2, 3", "The user wants a count.", "stop", nil, 135, 12, 100},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			var out bytes.Buffer
			var chunks [][]byte
			err := StreamToChat(bytes.NewReader(readTestdata(t, tt.in+".sse")), Info{Model: "claude-x", IncludeUsage: true}, func(data []byte) error {
				fmt.Fprintf(&out, "data: %s\n\n", data)
				if string(data) != "[DONE]" {
					chunks = append(chunks, bytes.Clone(data))
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			goldentest.Check(t, tt.in+".chat.golden", out.Bytes())
			if !bytes.HasSuffix(out.Bytes(), []byte("data: [DONE]\n\n")) {
				t.Error("no [DONE] at the end")
			}
			acc := accumulateChat(t, chunks)
			msg := acc.Choices[0].Message
			var tools []string
			for _, tc := range msg.ToolCalls {
				tools = append(tools, tc.Function.Name+":"+tc.Function.Arguments)
			}
			if msg.Content != tt.text || fmt.Sprint(tools) != fmt.Sprint(tt.tools) || string(acc.Choices[0].FinishReason) != tt.finish {
				t.Errorf("content %q tools %q finish %q", msg.Content, tools, acc.Choices[0].FinishReason)
			}
			if u := acc.Usage; u.PromptTokens != tt.prompt || u.CompletionTokens != tt.completion || u.PromptTokensDetails.CachedTokens != tt.cached {
				t.Errorf("usage %+v", u)
			}
			if tt.reasoning != "" && !bytes.Contains(out.Bytes(), []byte(`"reasoning_content":"`+tt.reasoning)) {
				t.Errorf("reasoning %q not streamed", tt.reasoning)
			}
		})
	}
}

// A Messages stream translated to chat and back keeps its text and tool
// calls.
func TestStreamRoundTrip(t *testing.T) {
	for _, in := range []string{"message_stream", "message_tools_stream", "message_thinking_stream"} {
		t.Run(in, func(t *testing.T) {
			src := readTestdata(t, in+".sse")
			var sse bytes.Buffer
			if err := StreamToChat(bytes.NewReader(src), Info{IncludeUsage: true}, func(d []byte) error {
				fmt.Fprintf(&sse, "data: %s\n\n", d)
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			var back bytes.Buffer
			if err := StreamFromChat(chatEvents(sse.Bytes()), Info{}, namedSSE(&back)); err != nil {
				t.Fatal(err)
			}
			want, got := accumulateMessages(t, src), accumulateMessages(t, back.Bytes())
			if textAndTools(want) != textAndTools(got) || want.StopReason != got.StopReason && want.StopReason != sdk.StopReasonStopSequence {
				t.Errorf("round trip: %s %q; want %s %q", textAndTools(got), got.StopReason, textAndTools(want), want.StopReason)
			}
		})
	}
}

func textAndTools(m sdk.Message) string {
	var b strings.Builder
	for _, c := range m.Content {
		switch c.Type {
		case "text":
			b.WriteString(c.Text)
		case "tool_use":
			var v any
			_ = json.Unmarshal(c.Input, &v)
			fmt.Fprintf(&b, "|%s %s %v", c.ID, c.Name, v)
		}
	}
	return b.String()
}

func TestStreamToChatErrors(t *testing.T) {
	start := "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"model\":\"c\",\"usage\":{\"input_tokens\":1}}}\n\n"
	tests := []struct {
		name, in string
		check    func(error) bool
	}{
		{"error event", start + "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n",
			func(err error) bool {
				var se *StreamError
				return errors.As(err, &se) && se.Type == "overloaded_error" && se.Message == "Overloaded"
			}},
		{"cut short", start, func(err error) bool { return errors.Is(err, io.ErrUnexpectedEOF) }},
		{"bad json", start + "event: content_block_delta\ndata: {nope\n\n", func(err error) bool { return err != nil }},
		{"long line", "data: " + strings.Repeat("x", MaxStreamLine+1) + "\n\n", func(err error) bool { return err != nil && strings.Contains(err.Error(), "longer") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := 0
			err := StreamToChat(strings.NewReader(tt.in), Info{}, func([]byte) error { n++; return nil })
			if !tt.check(err) {
				t.Errorf("err = %v", err)
			}
		})
	}
	// A callback error stops the stream and is returned.
	stop := errors.New("client gone")
	if err := StreamToChat(bytes.NewReader(readTestdata(t, "message_stream.sse")), Info{}, func([]byte) error { return stop }); !errors.Is(err, stop) {
		t.Errorf("callback error: %v", err)
	}
}

func TestStreamFromChatErrors(t *testing.T) {
	boom := errors.New("backend broke off")
	var out bytes.Buffer
	events := func(fn func([]byte) error) error {
		if err := fn([]byte(`{"id":"c1","model":"m","choices":[{"index":0,"delta":{"content":"Hi"}}]}`)); err != nil {
			return err
		}
		return boom
	}
	if err := StreamFromChat(events, Info{}, namedSSE(&out)); !errors.Is(err, boom) {
		t.Errorf("err = %v; want the events' error", err)
	}
	if bytes.Contains(out.Bytes(), []byte("message_stop")) {
		t.Errorf("a failed stream was ended as complete:\n%s", out.Bytes())
	}
	for _, chunk := range []string{`{nope`, `{"choices":[{"index":0,"delta":{"tool_calls":[{"index":4096,"function":{"arguments":"{}"}}]}}]}`} {
		err := StreamFromChat(func(fn func([]byte) error) error { return fn([]byte(chunk)) }, Info{}, namedSSE(&out))
		if err == nil {
			t.Errorf("chunk %s: no error", chunk)
		}
	}
	// An empty stream is still a whole message.
	out.Reset()
	if err := StreamFromChat(func(func([]byte) error) error { return nil }, Info{Model: "m"}, namedSSE(&out)); err != nil {
		t.Fatal(err)
	}
	if m := accumulateMessages(t, out.Bytes()); m.Model != "m" || m.StopReason != sdk.StopReasonEndTurn {
		t.Errorf("empty stream: %+v", m)
	}
}
