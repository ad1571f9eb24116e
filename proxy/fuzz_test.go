package proxy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
)

var parseChatTests = []struct {
	body string
	ok   bool
}{
	{`{"model":"m","messages":[{"role":"user","content":"hi"}]}`, true},
	{`{"model":"m","messages":[{"role":"system","content":"s"},{"role":"user","content":[{"type":"text","text":"x"}]}],"stream":true,"x_unknown":{"a":[1,null]}}`, true},
	{` {"messages":[ {"role":""} ],"model":"m"} `, true},
	{`{"model":"m","model":"n","messages":[{"role":"user"}]}`, true},
	{`{"model":"m","messages":[]}`, true},
	{`{"model":"","messages":[{"role":"user"}]}`, false},
	{`{"model":null,"messages":[{"role":"user"}]}`, false},
	{`{"model":5,"messages":[{"role":"user"}]}`, false},
	{`{"messages":[{"role":"user"}]}`, false},
	{`{"model":"m"}`, false},
	{`{"model":"m","messages":null}`, false},
	{`{"model":"m","messages":{}}`, false},
	{`{"model":"m","messages":"hi"}`, false},
	{`{"model":"m","messages":[null]}`, false},
	{`{"model":"m","messages":["user"]}`, false},
	{`{"model":"m","messages":[[{"role":"user"}]]}`, false},
	{`{"model":"m","messages":[{"content":"no role"}]}`, false},
	{`{"model":"m","messages":[{"role":null}]}`, false},
	{`{"model":"m","messages":[{"role":7}]}`, false},
	{`{"model":"m","messages":[{"role":"user"}],"stream":"yes"}`, false},
	{`[{"model":"m"}]`, false},
	{`null`, false},
	{``, false},
	{`{"model":"m","messages":[{"role":"user"}]`, false},
	{`{"model":"m","messages":[{"role":"user"}]} trailing`, false},
}

func TestParseChat(t *testing.T) {
	for _, tt := range parseChatTests {
		_, err := parseChat([]byte(tt.body))
		if (err == nil) != tt.ok {
			t.Errorf("parseChat(%q) error = %v; want ok=%v", tt.body, err, tt.ok)
		}
		if err != nil {
			var he *HTTPError
			if !errors.As(err, &he) || he.Status != 400 {
				t.Errorf("parseChat(%q) error %v is not a 400 HTTPError", tt.body, err)
			}
		}
	}
}

// Keys differing from "model", "messages" or "role" only in case are
// matched by encoding/json, so parseChat routes on a model an
// OpenAI-compatible backend never sees: {"model":"a","MODEL":"b"} routes by
// "b" and the backend, matching keys exactly, reads "a".
func TestParseChatCaseFoldedKeys(t *testing.T) {
	body := []byte(`{"model":"allowed","MODEL":"other","messages":[{"role":"user"}]}`)
	h, err := parseChat(body)
	if err != nil {
		t.Fatal(err)
	}
	if *h.Model != "allowed" {
		t.Errorf("parseChat routes on model %q, but a backend matching keys exactly reads %q", *h.Model, "allowed")
	}
}

// FuzzParseChat: parseChat never panics, and what it accepts is what
// backends will read: a JSON object whose (last) "model" key is a non-empty
// string and whose "messages" is a list of objects each with a string
// "role", checked here with exact key matching, token by token.
func FuzzParseChat(f *testing.F) {
	for _, tt := range parseChatTests {
		f.Add([]byte(tt.body))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		if _, err := parseChat(body); err != nil {
			if json.Valid(body) && checkChat(body, false) == nil {
				t.Fatalf("refused %q, which backends accept: %v", body, err)
			}
			return
		}
		if !json.Valid(body) {
			t.Fatalf("accepted invalid JSON %q", body)
		}
		if err := checkChat(body, false); err != nil {
			t.Fatalf("accepted %q: %v", body, err)
		}
	})
}

// checkChat is a reference check of a chat body's shape, independent of
// parseChat; fold matches keys case-insensitively as encoding/json does.
func checkChat(body []byte, fold bool) error {
	top, err := objectFields(body)
	if err != nil {
		return err
	}
	model, ok := field(top, "model", fold)
	if !ok {
		return errors.New("no model")
	}
	var m string
	if bytes.Equal(model, []byte("null")) || json.Unmarshal(model, &m) != nil || m == "" {
		return fmt.Errorf("model %s is not a non-empty string", model)
	}
	if st, ok := field(top, "stream", fold); ok {
		var b *bool
		if json.Unmarshal(st, &b) != nil {
			return fmt.Errorf("stream %s is not a boolean", st)
		}
	}
	msgs, ok := field(top, "messages", fold)
	if !ok {
		return errors.New("no messages")
	}
	var list []json.RawMessage
	if bytes.Equal(msgs, []byte("null")) || json.Unmarshal(msgs, &list) != nil {
		return fmt.Errorf("messages %s is not a list", msgs)
	}
	for i, raw := range list {
		fs, err := objectFields(raw)
		if err != nil {
			return fmt.Errorf("messages[%d]: %v", i, err)
		}
		role, ok := field(fs, "role", fold)
		var r string
		if !ok || bytes.Equal(role, []byte("null")) || json.Unmarshal(role, &r) != nil {
			return fmt.Errorf("messages[%d] has no string role", i)
		}
	}
	return nil
}

type kv struct {
	key string
	val json.RawMessage
}

// objectFields decodes a JSON object into its fields in order, keeping
// duplicates.
func objectFields(b []byte) ([]kv, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, fmt.Errorf("%s is not an object", b)
	}
	var out []kv
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		key, ok := tok.(string)
		if !ok {
			return nil, fmt.Errorf("key %v is not a string", tok)
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, err
		}
		out = append(out, kv{key, v})
	}
	if _, err := dec.Token(); err != nil {
		return nil, err
	}
	return out, nil
}

// field returns the value of the last key matching name, as encoding/json
// would assign it.
func field(fs []kv, name string, fold bool) (json.RawMessage, bool) {
	var v json.RawMessage
	found := false
	for _, f := range fs {
		if f.key == name || (fold && strings.EqualFold(f.key, name)) {
			v, found = f.val, true
		}
	}
	return v, found
}

// lastBoundaryRef is lastBoundary as two searches of all of b: the
// reference it is checked against.
func lastBoundaryRef(b []byte) int {
	cut := 0
	if i := bytes.LastIndex(b, []byte("\n\n")); i >= 0 {
		cut = i + 2
	}
	if i := bytes.LastIndex(b, []byte("\n\r\n")); i >= 0 && i+3 > cut {
		cut = i + 3
	}
	return cut
}

// FuzzLastBoundary: the end of the last complete SSE event is found as
// the two searches find it.
func FuzzLastBoundary(f *testing.F) {
	for _, s := range []string{"", "\n", "\n\n", "data: a\n\ndata: b", "data: a\n\r\ndata: b\n", "a\r\n\r\n", "\r\n", "x\n\r", "\n\r\n\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if got, want := lastBoundary(b, framingSSE), lastBoundaryRef(b); got != want {
			t.Errorf("lastBoundary(%q) = %d; want %d", b, got, want)
		}
	})
}
