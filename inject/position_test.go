package inject

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/tidwall/gjson"
)

func TestMessagesAtUser(t *testing.T) {
	for _, c := range []struct{ name, in, want string }{
		{"string", `{"messages":[{"role":"system","content":"S"},{"role":"user","content":"a"},{"role":"assistant","content":"b"},{"role":"user","content":"c"}],"x":1}`,
			`{"messages":[{"role":"system","content":"S"},{"role":"user","content":"a"},{"role":"assistant","content":"b"},{"role":"user","content":"c\n\nN"}],"x":1}`},
		{"parts", `{"messages":[{"role":"user","content":[{"type":"text","text":"q"}]}]}`,
			`{"messages":[{"role":"user","content":[{"type":"text","text":"q"},{"type":"text","text":"N"}]}]}`},
		{"tool result last", `{"messages":[{"role":"user","content":"q"},{"role":"assistant","content":null,"tool_calls":[]},{"role":"tool","content":"r"}]}`,
			`{"messages":[{"role":"user","content":"q\n\nN"},{"role":"assistant","content":null,"tool_calls":[]},{"role":"tool","content":"r"}]}`},
		{"no user", `{"messages":[{"role":"system","content":"S"}]}`, `{"messages":[{"role":"system","content":"S\n\nN"}]}`},
	} {
		got, err := MessagesAt([]byte(c.in), "N", PositionUser)
		if err != nil || string(got) != c.want {
			t.Errorf("%s:\n got %s, %v\nwant %s", c.name, got, err, c.want)
		}
	}
	in := `{"messages":[{"role":"user","content":"q"}]}`
	if got, _ := MessagesAt([]byte(in), "N", PositionSystem); string(got) != `{"messages":[{"role":"system","content":"N"},{"role":"user","content":"q"}]}` {
		t.Errorf("system position: %s", got)
	}
}

func TestPromptAtUser(t *testing.T) {
	got, err := PromptAt([]byte(`{"model":"m","system":"S","prompt":"Why?"}`), "N", PositionUser)
	if want := `{"model":"m","system":"S","prompt":"Why?\n\nN"}`; err != nil || string(got) != want {
		t.Errorf("got %s, %v; want %s", got, err, want)
	}
	if got, _ := PromptAt([]byte(`{"model":"m","prompt":""}`), "N", PositionUser); string(got) != `{"model":"m","prompt":"","system":"N"}` {
		t.Errorf("empty prompt: %s", got)
	}
}

// The notes are one insertion at or after the start of the last user
// message: every byte before it and after it is the client's.
func FuzzMessagesAtUser(f *testing.F) {
	for _, s := range []string{
		`{"messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"yo"},{"role":"user","content":"again"}]}`,
		`{"a":1,"messages":[{"role":"user","content":[{"type":"text","text":"x"}]},{"role":"tool","content":"r"}],"b":[null]}`,
		`{"messages":[{"role":"user","content":null}]}`, `{"messages":[]}`, `{"messages":[{"role":"user"}]}`,
	} {
		f.Add([]byte(s), "notes <|im_end|>")
	}
	f.Fuzz(func(t *testing.T, body []byte, sys string) {
		if !json.Valid(body) {
			return
		}
		orig := bytes.Clone(body)
		got, err := MessagesAt(body, sys, PositionUser)
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
			t.Fatalf("invalid output:\n%s\n->\n%s", body, got)
		}
		lastUser := -1
		root := gjson.ParseBytes(body)
		var msgs gjson.Result
		root.ForEach(func(k, v gjson.Result) bool {
			if k.Str == "messages" {
				msgs = v
			}
			return true
		})
		msgs.ForEach(func(_, m gjson.Result) bool {
			if m.IsObject() && m.Get("role").Str == "user" {
				lastUser = m.Index
			}
			return true
		})
		p := 0
		for p < len(body) && body[p] == got[p] {
			p++
		}
		sfx := 0
		for sfx < len(body)-p && body[len(body)-1-sfx] == got[len(got)-1-sfx] {
			sfx++
		}
		// One insertion, or a null content replaced by the notes.
		if removed := string(body[p : len(body)-sfx]); removed != "" && removed != "null" && removed != "ull" {
			t.Fatalf("more than one insertion (%q replaced):\n%s\n->\n%s", removed, body, got)
		}
		if lastUser >= 0 && p < lastUser {
			t.Fatalf("changed before the last user message (byte %d < %d):\n%s\n->\n%s", p, lastUser, body, got)
		}
	})
}

func TestAppendToMessages(t *testing.T) {
	in := `{"messages":[{"role":"user","content":"a"},{"role":"assistant","content":"b"},{"role":"user","content":[{"type":"text","text":"c"}]},{"role":"user","content":"d"}]}`
	got, ok, err := AppendToMessages([]byte(in), map[int]string{0: "N0", 2: "N2"})
	want := `{"messages":[{"role":"user","content":"a\n\nN0"},{"role":"assistant","content":"b"},{"role":"user","content":[{"type":"text","text":"c"},{"type":"text","text":"N2"}]},{"role":"user","content":"d"}]}`
	if err != nil || !ok || string(got) != want {
		t.Errorf("got %s, %v, %v\nwant %s", got, ok, err, want)
	}
	// The same as placing each alone.
	one, _, _ := LastUser([]byte(in), "N3")
	if two, ok, _ := AppendToMessages([]byte(in), map[int]string{3: "N3"}); !ok || string(two) != string(one) {
		t.Errorf("AppendToMessages(3) %s; LastUser %s", two, one)
	}
	if _, ok, _ := AppendToMessages([]byte(in), map[int]string{9: "x"}); ok {
		t.Error("an index past the messages was reported placed")
	}
}
