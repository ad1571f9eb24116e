package responses

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/dso-proxy/dso/internal/goldentest"
)

// ids are random: the goldens show them as their prefix.
var idPattern = regexp.MustCompile(`"(resp|msg|fc|call)_[0-9a-f]{48}"`)

func chunks(t testing.TB, name string) [][]byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for _, ev := range strings.Split(string(b), "\n\n") {
		d, ok := strings.CutPrefix(strings.TrimSpace(ev), "data: ")
		if ok && d != "[DONE]" {
			out = append(out, []byte(d))
		}
	}
	return out
}

// The event sequence translated from each recorded chat stream is the
// golden one (go test ./responses -update rewrites them).
func TestStreamGolden(t *testing.T) {
	for _, name := range []string{"chat_stream", "chat_text_tools_stream"} {
		t.Run(name, func(t *testing.T) {
			req := &Request{Model: "m", Input: json.RawMessage(`"hi"`)}
			var out bytes.Buffer
			st := NewStream(New(req, "resp_000000000000000000000000000000000000000000000000", time.Unix(1700000000, 0)), func(ev string, payload []byte) error {
				out.WriteString("event: " + ev + "\ndata: " + idPattern.ReplaceAllString(string(payload), `"${1}_ID"`) + "\n\n")
				return nil
			})
			if err := st.Start(); err != nil {
				t.Fatal(err)
			}
			for _, c := range chunks(t, name+".sse") {
				if err := st.Chunk(c); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := st.Finish(); err != nil {
				t.Fatal(err)
			}
			if err := st.End(); err != nil {
				t.Fatal(err)
			}
			goldentest.Check(t, name+".golden", out.Bytes())
		})
	}
}

// Items and settings translate into the chat body they stand for.
func TestToChat(t *testing.T) {
	body := `{"model":"m","instructions":"Be brief.","input":[
		{"role":"user","content":[{"type":"input_text","text":"Weather?"},{"type":"input_image","image_url":"data:image/png;base64,AA=="}]},
		{"type":"function_call","call_id":"c1","name":"get_weather","arguments":"{}"},
		{"type":"function_call_output","call_id":"c1","output":"sunny"},
		{"type":"reasoning","id":"rs_1","summary":[]}],
		"tools":[{"type":"function","name":"get_weather","parameters":{"type":"object"}}],
		"tool_choice":{"type":"function","name":"get_weather"},"text":{"format":{"type":"json_schema","name":"w","schema":{"type":"object"},"strict":true}},
		"max_output_tokens":50,"temperature":0.5,"parallel_tool_calls":false,"prompt_cache_key":"k1","stream":true}`
	r, err := Parse([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	in, err := InputItems(r)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ToChat(r, nil, in)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"model":"m","messages":[{"role":"system","content":"Be brief."},` +
		`{"role":"user","content":[{"text":"Weather?","type":"text"},{"image_url":{"url":"data:image/png;base64,AA=="},"type":"image_url"}]},` +
		`{"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"get_weather","arguments":"{}"}}]},` +
		`{"role":"tool","content":"sunny","tool_call_id":"c1"}],` +
		`"tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object"}}}],` +
		`"tool_choice":{"function":{"name":"get_weather"},"type":"function"},"parallel_tool_calls":false,` +
		`"response_format":{"json_schema":{"name":"w","schema":{"type":"object"},"strict":true},"type":"json_schema"},` +
		`"max_tokens":50,"temperature":0.5,"prompt_cache_key":"k1","stream":true,"stream_options":{"include_usage":true}}`
	if string(got) != want {
		t.Errorf("ToChat\n got %s\nwant %s", got, want)
	}
	for _, bad := range []string{
		`{"model":"m","input":[{"type":"item_reference","id":"x"}]}`,
		`{"model":"m","input":"x","tools":[{"type":"file_search"}]}`,
		`{"model":"m","input":[{"type":"function_call","name":"f"}]}`,
		`{"model":"m","input":[{"role":"robot","content":"x"}]}`,
		`{"model":"m","input":3}`,
		`{"model":"m","input":"x","background":true}`,
	} {
		r, err := Parse([]byte(bad))
		if err == nil {
			var in []json.RawMessage
			if in, err = InputItems(r); err == nil {
				_, err = ToChat(r, nil, in)
			}
		}
		if err == nil {
			t.Errorf("%s: translated; want a bad request", bad)
		}
	}
}

// Any request either translates to valid JSON or is refused; it never
// panics.
func FuzzToChat(f *testing.F) {
	for _, s := range []string{`{"model":"m","input":"hi"}`, `{"model":"m","input":[{"role":"user","content":[{"type":"input_text","text":"x"}]}],"tools":[{"type":"function","name":"f"}]}`,
		`{"model":"m","input":[{"type":"function_call_output","call_id":"c","output":[{"type":"input_text","text":"y"}]}],"text":{"format":{"type":"json_object"}}}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		r, err := Parse(body)
		if err != nil {
			return
		}
		in, err := InputItems(r)
		if err != nil {
			return
		}
		out, err := ToChat(r, in, in)
		if err == nil && !json.Valid(out) {
			t.Fatalf("invalid chat body %s", out)
		}
	})
}

// Any chunks either stream or fail; the events are valid JSON, numbered
// in order, and never panic.
func FuzzStream(f *testing.F) {
	for _, c := range chunks(f, "chat_text_tools_stream.sse") {
		f.Add(c, []byte(`{"choices":[{"index":0,"delta":{"tool_calls":[{"index":3,"function":{"arguments":"x"}}]}}]}`))
	}
	f.Fuzz(func(t *testing.T, a, b []byte) {
		seq := 0
		st := NewStream(New(&Request{Model: "m"}, "resp_x", time.Unix(0, 0)), func(ev string, payload []byte) error {
			var v struct {
				Type string `json:"type"`
				Seq  int    `json:"sequence_number"`
			}
			if err := json.Unmarshal(payload, &v); err != nil || v.Type != ev || v.Seq != seq {
				t.Fatalf("event %s %s (want sequence %d)", ev, payload, seq)
			}
			seq++
			return nil
		})
		_ = st.Start()
		for _, c := range [][]byte{a, b} {
			if st.Chunk(c) != nil {
				_ = st.Fail("server_error", "x")
				return
			}
		}
		if _, err := st.Finish(); err == nil {
			_ = st.End()
		}
	})
}

// A chat answer cut at max tokens ends as response.incomplete with the
// reason; a stream that breaks off as response.failed, its finished items
// kept.
func TestStreamIncompleteAndFailed(t *testing.T) {
	run := func(chunks []string, fail bool) (last string, resp map[string]any) {
		var events []string
		var payloads [][]byte
		st := NewStream(New(&Request{Model: "m"}, "resp_x", time.Unix(0, 0)), func(ev string, p []byte) error {
			events, payloads = append(events, ev), append(payloads, p)
			return nil
		})
		_ = st.Start()
		for _, c := range chunks {
			if err := st.Chunk([]byte(c)); err != nil {
				t.Fatal(err)
			}
		}
		if fail {
			_ = st.Fail("server_error", "the backend's stream broke off")
		} else {
			if _, err := st.Finish(); err != nil {
				t.Fatal(err)
			}
			_ = st.End()
		}
		var v struct {
			Response map[string]any `json:"response"`
		}
		_ = json.Unmarshal(payloads[len(payloads)-1], &v)
		return events[len(events)-1], v.Response
	}
	text := `{"choices":[{"index":0,"delta":{"content":"Once"}}]}`
	ev, resp := run([]string{text, `{"choices":[{"index":0,"delta":{},"finish_reason":"length"}]}`}, false)
	if ev != "response.incomplete" || resp["status"] != "incomplete" || resp["incomplete_details"].(map[string]any)["reason"] != "max_output_tokens" {
		t.Errorf("cut at max tokens: %s %v", ev, resp)
	}
	ev, resp = run([]string{text, `{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"c","function":{"name":"f","arguments":"{"}}]}}]}`}, true)
	out, _ := resp["output"].([]any)
	if ev != "response.failed" || resp["status"] != "failed" || len(out) != 1 || resp["error"].(map[string]any)["code"] != "server_error" {
		t.Errorf("broken off: %s %v; want failed with the finished message only", ev, resp)
	}
}
