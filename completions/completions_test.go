package completions

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/dso-proxy/dso/internal/goldentest"
)

var volatile = regexp.MustCompile(`"id":"cmpl-[0-9a-f]{24}","object":"text_completion","created":\d+`)

func TestToChat(t *testing.T) {
	got, info, err := ToChat([]byte(`{"model":"m","prompt":["Once upon"],"temperature":0.2,"stop":"\n","stream":true,"stream_options":{"include_usage":true},"x":1}`))
	want := `{"model":"m","messages":[{"role":"user","content":"Once upon"}],"max_tokens":16,"temperature":0.2,"stop":"\n","stream":true,"stream_options":{"include_usage":true}}`
	if err != nil || string(got) != want || !info.Stream || !info.IncludeUsage {
		t.Errorf("ToChat = %s, %+v, %v\nwant %s", got, info, err, want)
	}
	for _, bad := range []string{`{"prompt":"x"}`, `{"model":"m","prompt":["a","b"]}`, `{"model":"m","prompt":[1,2]}`, `{"model":"m","prompt":"x","echo":true}`,
		`{"model":"m","prompt":"x","suffix":"y"}`, `{"model":"m","prompt":"x","n":2}`, `{"model":"m","prompt":"x","logprobs":1}`, `[]`} {
		if _, _, err := ToChat([]byte(bad)); err == nil {
			t.Errorf("%s: translated; want refused", bad)
		}
	}
}

func TestFromChat(t *testing.T) {
	got, err := FromChat([]byte(`{"model":"m2","choices":[{"index":0,"message":{"role":"assistant","content":"Hi."},"finish_reason":"tool_calls"}],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}`), Info{Model: "m"})
	if err != nil {
		t.Fatal(err)
	}
	want := `"model":"m2","choices":[{"text":"Hi.","index":0,"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}`
	if !strings.HasSuffix(string(got), want) {
		t.Errorf("FromChat = %s; want it to end %s", got, want)
	}
}

// The recorded chat stream translates into the golden events
// (go test ./completions -update rewrites it).
func TestStreamGolden(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("testdata", "chat_stream.sse"))
	if err != nil {
		t.Fatal(err)
	}
	st := NewStream(Info{Model: "m", Stream: true, IncludeUsage: true})
	var out bytes.Buffer
	for _, ev := range strings.Split(string(raw), "\n\n") {
		d, ok := strings.CutPrefix(strings.TrimSpace(ev), "data: ")
		if !ok || d == "[DONE]" {
			continue
		}
		b, err := st.Chunk([]byte(d))
		if err != nil {
			t.Fatal(err)
		}
		if b != nil {
			out.WriteString("data: " + volatile.ReplaceAllString(string(b), `"id":"cmpl-ID","object":"text_completion","created":0`) + "\n\n")
		}
	}
	for _, b := range st.Done() {
		out.WriteString("data: " + volatile.ReplaceAllString(string(b), `"id":"cmpl-ID","object":"text_completion","created":0`) + "\n\n")
	}
	goldentest.Check(t, "stream.golden", out.Bytes())
}

// Translation never panics, and what it writes is JSON.
func FuzzTranslate(f *testing.F) {
	f.Add([]byte(`{"model":"m","prompt":"x","max_tokens":5}`), []byte(`{"choices":[{"index":0,"delta":{"content":"a"},"finish_reason":"length"}],"usage":{"total_tokens":1}}`))
	f.Add([]byte(`{"model":"m","prompt":["x"],"stream":true}`), []byte(`{"choices":[{"index":0,"message":{"content":"b"}}]}`))
	f.Fuzz(func(t *testing.T, req, answer []byte) {
		if out, info, err := ToChat(req); err == nil && !json.Valid(out) {
			t.Fatalf("invalid chat body %s", out)
		} else if err == nil {
			if b, err := FromChat(answer, info); err == nil && !json.Valid(b) {
				t.Fatalf("invalid completion %s", b)
			}
			st := NewStream(info)
			if b, err := st.Chunk(answer); err == nil && b != nil && !json.Valid(b) {
				t.Fatalf("invalid event %s", b)
			}
			for _, b := range st.Done() {
				if string(b) != "[DONE]" && !json.Valid(b) {
					t.Fatalf("invalid last event %s", b)
				}
			}
		}
	})
}
