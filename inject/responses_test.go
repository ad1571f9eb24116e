package inject

import (
	"bytes"
	"encoding/json"
	"testing"
)

func TestResponsesInput(t *testing.T) {
	const note = `{"type":"message","role":"developer","content":"N"}`
	for _, c := range []struct{ in, want string }{
		{`{"model":"m","input":"hi there"}`, `{"model":"m","input":[{"type":"message","role":"user","content":"hi there"},` + note + `]}`},
		{`{"input":[{"role":"user","content":"a"}] ,"x":1}`, `{"input":[{"role":"user","content":"a"},` + note + `] ,"x":1}`},
		{`{"input":[ ]}`, `{"input":[ ` + note + `]}`},
		{`{"input":"\u00e9"}`, `{"input":[{"type":"message","role":"user","content":"\u00e9"},` + note + `]}`},
	} {
		got, err := ResponsesInput([]byte(c.in), "N")
		if err != nil {
			t.Errorf("ResponsesInput(%s): %v", c.in, err)
			continue
		}
		if string(got) != c.want {
			t.Errorf("ResponsesInput(%s)\n got %s\nwant %s", c.in, got, c.want)
		}
	}
	for _, bad := range []string{`{"model":"m"}`, `{"input":1}`, `{"input":"a","input":"b"}`, `[]`, `{`} {
		got, err := ResponsesInput([]byte(bad), "N")
		if err == nil || string(got) != bad {
			t.Errorf("ResponsesInput(%s) = %s, %v; want the body unchanged and an error", bad, got, err)
		}
	}
}

// Every byte before the note is the client's, the note is the last input
// item, and nothing else changes.
func FuzzResponsesInput(f *testing.F) {
	for _, s := range []string{`{"input":"hi"}`, `{"a":[1],"input":[{"role":"user","content":"x"}],"b":null}`, `{"input":[]}`, `{"input":null}`, `{}`} {
		f.Add([]byte(s), "note </x>")
	}
	f.Fuzz(func(t *testing.T, body []byte, sys string) {
		orig := bytes.Clone(body)
		got, err := ResponsesInput(body, sys)
		if !bytes.Equal(body, orig) {
			t.Fatal("input modified")
		}
		if err != nil || sys == "" {
			if !bytes.Equal(got, body) {
				t.Fatalf("body changed with err=%v", err)
			}
			return
		}
		if !json.Valid(got) {
			t.Fatalf("invalid output for valid input:\n%s\n->\n%s", body, got)
		}
		var before, after map[string]json.RawMessage
		if json.Unmarshal(body, &before) != nil || json.Unmarshal(got, &after) != nil {
			return
		}
		for k, v := range before {
			if k != "input" && !bytes.Equal(after[k], v) {
				t.Fatalf("field %q changed: %s -> %s", k, v, after[k])
			}
		}
		var items []struct {
			Role    string          `json:"role"`
			Content json.RawMessage `json:"content"`
		}
		if err := json.Unmarshal(after["input"], &items); err != nil || len(items) == 0 {
			t.Fatalf("input is not a list of items: %s", after["input"])
		}
		var text, want string
		enc, _ := json.Marshal(sys) // as JSON carries it: invalid UTF-8 replaced
		_ = json.Unmarshal(enc, &want)
		last := items[len(items)-1]
		if json.Unmarshal(last.Content, &text) != nil || text != want || last.Role != "developer" {
			t.Fatalf("last item %+v; want the developer note %q", last, sys)
		}
	})
}

func TestValidCompletionPrompt(t *testing.T) {
	got, err := ValidCompletionPrompt([]byte(`{"model":"m","prompt":"Once \u00e9","max_tokens":5}`), "N")
	if want := `{"model":"m","prompt":"N\n\nOnce \u00e9","max_tokens":5}`; err != nil || string(got) != want {
		t.Errorf("got %s, %v; want %s", got, err, want)
	}
	for _, bad := range []string{`{"prompt":["a"]}`, `{"model":"m"}`} {
		if got, err := ValidCompletionPrompt([]byte(bad), "N"); err == nil || string(got) != bad {
			t.Errorf("ValidCompletionPrompt(%s) = %s, %v; want it unchanged and an error", bad, got, err)
		}
	}
}
