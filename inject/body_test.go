package inject

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"slices"
	"testing"
)

func TestMessages(t *testing.T) {
	const sys = "NOTES <x> \"q\""
	tests := []struct {
		name, body, want string
	}{
		{
			"insert first",
			`{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"n":1}`,
			`{"model":"gpt-4o","messages":[{"role":"system","content":"NOTES <x> \"q\""},{"role":"user","content":"hi"}],"n":1}`,
		},
		{
			"merge string",
			`{"messages": [ {"role": "system", "content": "Be brief.\u00e9", "name": "s"} , {"role":"user","content":"hi"} ]}`,
			`{"messages": [ {"role": "system", "content": "Be brief.\u00e9\n\nNOTES <x> \"q\"", "name": "s"} , {"role":"user","content":"hi"} ]}`,
		},
		{
			"merge developer",
			`{"messages":[{"role":"user","content":"a"},{"role":"developer","content":"d"}]}`,
			`{"messages":[{"role":"user","content":"a"},{"role":"developer","content":"d\n\nNOTES <x> \"q\""}]}`,
		},
		{
			"merge first of two",
			`{"messages":[{"role":"system","content":"one"},{"role":"system","content":"two"}]}`,
			`{"messages":[{"role":"system","content":"one\n\nNOTES <x> \"q\""},{"role":"system","content":"two"}]}`,
		},
		{
			"merge parts",
			`{"messages":[{"role":"system","content":[{"type":"text","text":"Be brief."}]}]}`,
			`{"messages":[{"role":"system","content":[{"type":"text","text":"Be brief."},{"type":"text","text":"NOTES <x> \"q\""}]}]}`,
		},
		{
			"merge empty parts",
			`{"messages":[{"role":"system","content":[ ]}]}`,
			`{"messages":[{"role":"system","content":[ {"type":"text","text":"NOTES <x> \"q\""}]}]}`,
		},
		{
			"merge empty string",
			`{"messages":[{"role":"system","content":""}]}`,
			`{"messages":[{"role":"system","content":"NOTES <x> \"q\""}]}`,
		},
		{
			"merge null",
			`{"messages":[{"role":"system","content":null}]}`,
			`{"messages":[{"role":"system","content":"NOTES <x> \"q\""}]}`,
		},
		{
			"merge absent",
			`{"messages":[{"role":"system"}]}`,
			`{"messages":[{"role":"system","content":"NOTES <x> \"q\""}]}`,
		},
		{
			"unknown content shape",
			`{"messages":[{"role":"system","content":42}]}`,
			`{"messages":[{"role":"system","content":"NOTES <x> \"q\""},{"role":"system","content":42}]}`,
		},
		{
			"empty messages",
			`{"messages":[]}`,
			`{"messages":[{"role":"system","content":"NOTES <x> \"q\""}]}`,
		},
		{
			"non-object messages kept",
			`{"messages":["odd",7,{"content":"no role"}]}`,
			`{"messages":[{"role":"system","content":"NOTES <x> \"q\""},"odd",7,{"content":"no role"}]}`,
		},
		{
			"ollama chat",
			`{"model":"llama3.1","messages":[{"role":"user","content":"why?","images":["aGk="]}],"stream":false,"options":{"temperature":0.7,"seed":12345678901234567890}}`,
			`{"model":"llama3.1","messages":[{"role":"system","content":"NOTES <x> \"q\""},{"role":"user","content":"why?","images":["aGk="]}],"stream":false,"options":{"temperature":0.7,"seed":12345678901234567890}}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := []byte(tt.body)
			orig := bytes.Clone(in)
			got, err := Messages(in, sys)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Errorf("got  %s\nwant %s", got, tt.want)
			}
			if !json.Valid(got) {
				t.Errorf("invalid JSON: %s", got)
			}
			if !bytes.Equal(in, orig) {
				t.Error("input modified")
			}
		})
	}
}

// TestMessagesPreservesBytes checks that everything outside messages
// survives byte for byte: unknown fields, their order, odd whitespace,
// big and exotic numbers, escapes, nulls.
func TestMessagesPreservesBytes(t *testing.T) {
	body := []byte("\n {\"zeta\" : 1.0e400,\t\"model\":\"gpt-4o\",\n" +
		`"big": 123456789012345678901234567890, "neg": -0.000, "esc": "\u003c\/b\u003e\ud83d\ude00",` +
		`"nil": null, "obj": {"b":2,"a":[1, 2 ,3]}, "messages" :` + "\n" +
		`[{"role":"user","content":"hi","x-vendor":{"k":true}}],` +
		`"stream_options": {"include_usage": true}, "tools": [] }` + "\n")
	got, err := Messages(body, "notes")
	if err != nil {
		t.Fatal(err)
	}
	top, err := walkObject(body)
	if err != nil {
		t.Fatal(err)
	}
	f, _ := top.only("messages")
	if !bytes.HasPrefix(got, body[:f.start]) || !bytes.HasSuffix(got, body[f.end:]) {
		t.Errorf("bytes outside messages changed:\n%s", got)
	}
	want := `[{"role":"system","content":"notes"},{"role":"user","content":"hi","x-vendor":{"k":true}}]`
	if mid := got[f.start : len(got)-(len(body)-f.end)]; string(mid) != want {
		t.Errorf("messages = %s; want %s", mid, want)
	}
}

func TestMessagesErrors(t *testing.T) {
	tests := []struct {
		name, body string
		want       error
	}{
		{"empty", ``, ErrBadBody},
		{"array", `[1]`, ErrBadBody},
		{"string", `"x"`, ErrBadBody},
		{"truncated", `{"messages":[{"role":"user"`, ErrBadBody},
		{"trailing", `{"messages":[]} {}`, ErrBadBody},
		{"not array", `{"messages":{"role":"user"}}`, ErrBadBody},
		{"null", `{"messages":null}`, ErrBadBody},
		{"duplicate", `{"messages":[],"messages":[]}`, ErrBadBody},
		{"duplicate role", `{"messages":[{"role":"system","role":"user"}]}`, ErrBadBody},
		{"missing", `{"model":"x"}`, ErrNoMessages},
		{"bad inner", `{"messages":[{"role":"user",}]}`, ErrBadBody},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Messages([]byte(tt.body), "n")
			if !errors.Is(err, tt.want) {
				t.Errorf("err = %v; want %v", err, tt.want)
			}
			if string(got) != tt.body {
				t.Errorf("body changed on error: %s", got)
			}
		})
	}
	body := []byte(`{"messages":[]}`)
	if got, err := Messages(body, ""); err != nil || !bytes.Equal(got, body) {
		t.Errorf("empty sys = %s, %v; want body unchanged", got, err)
	}
}

func TestPrompt(t *testing.T) {
	tests := []struct {
		name, body, want string
	}{
		{"append", `{"model":"m","prompt":"p","system":"Be brief.","options":{"num_ctx":4096}}`,
			`{"model":"m","prompt":"p","system":"Be brief.\n\nN","options":{"num_ctx":4096}}`},
		{"absent", `{"model":"m", "prompt":"p" }`, `{"model":"m", "prompt":"p","system":"N" }`},
		{"null", `{"system":null,"prompt":"p"}`, `{"system":"N","prompt":"p"}`},
		{"empty object", `{ }`, `{ "system":"N"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Prompt([]byte(tt.body), "N")
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Errorf("got  %s\nwant %s", got, tt.want)
			}
			if v, err := ValidPrompt([]byte(tt.body), "N"); err != nil || string(v) != tt.want {
				t.Errorf("ValidPrompt %s, %v; want %s", v, err, tt.want)
			}
		})
	}
	if _, err := Prompt([]byte(`{"system":3}`), "N"); !errors.Is(err, ErrBadBody) {
		t.Errorf("numeric system err = %v; want ErrBadBody", err)
	}
}

func FuzzMessages(f *testing.F) {
	for _, s := range []string{
		`{"messages":[{"role":"user","content":"hi"}]}`,
		`{"a":1,"messages":[{"role":"system","content":[{"type":"text","text":"x"}]}],"b":[null]}`,
		`{"messages":[{"role":"developer","content":null}],"n":1e999}`,
		`{"messages":[]}`, `{}`, `[]`, `{"messages":[1,"a",{}]}`, `{"messages":[{"role":"system"}]}`,
	} {
		f.Add([]byte(s), "notes <|im_end|>")
	}
	f.Fuzz(func(t *testing.T, body []byte, sys string) {
		orig := bytes.Clone(body)
		got, err := Messages(body, sys)
		if !bytes.Equal(body, orig) {
			t.Fatal("input modified")
		}
		if json.Valid(body) {
			// The entry point for a body already validated agrees.
			if v, verr := ValidMessages(body, sys); !bytes.Equal(v, got) || (verr == nil) != (err == nil) {
				t.Fatalf("ValidMessages %q, %v; Messages %q, %v", v, verr, got, err)
			}
		}
		if err != nil || sys == "" {
			if !bytes.Equal(got, body) {
				t.Fatalf("body changed with err=%v", err)
			}
			return
		}
		if !json.Valid(body) {
			return
		}
		if !json.Valid(got) {
			t.Fatalf("invalid output for valid input:\n%s\n->\n%s", body, got)
		}
		top, err := walkObject(body)
		if err != nil {
			t.Fatal(err)
		}
		if ref, err := walkObjectDecoded(body); err != nil || !reflect.DeepEqual(ref, top) {
			t.Fatalf("walkObject %+v; decoded %+v, %v", top, ref, err)
		}
		fld, _ := top.only("messages")
		if elems, err := walkArray(body[fld.start:fld.end]); err == nil {
			if ref, err := walkArrayDecoded(body[fld.start:fld.end]); err != nil || !slices.Equal(ref, elems) {
				t.Fatalf("walkArray %+v; decoded %+v, %v", elems, ref, err)
			}
		}
		if !bytes.HasPrefix(got, body[:fld.start]) || !bytes.HasSuffix(got, body[fld.end:]) {
			t.Fatalf("bytes outside messages changed:\n%s\n->\n%s", body, got)
		}
		var before, after []json.RawMessage
		if json.Unmarshal(body[fld.start:fld.end], &before) != nil {
			t.Fatal("messages not an array but no error")
		}
		if err := json.Unmarshal(got[fld.start:len(got)-(len(body)-fld.end)], &after); err != nil {
			t.Fatalf("new messages: %v", err)
		}
		if n := len(after) - len(before); n != 0 && n != 1 {
			t.Fatalf("messages went from %d to %d", len(before), len(after))
		}
		if !bytes.Contains(got, quote(sys)[1:len(quote(sys))-1]) {
			t.Fatalf("sys not in output")
		}
	})
}

func BenchmarkBuildMessages(b *testing.B) {
	body := []byte(`{"model":"gpt-4o","temperature":0.2,"stream":true,"messages":[` +
		`{"role":"system","content":"You are a careful assistant."},` +
		`{"role":"user","content":"How do I check units before comparing two measurements in a lab report?"}]}`)
	var notes []Note
	for i := range 8 {
		notes = append(notes, Note{ID: string(rune('a' + i)), Domain: "science/lab", Text: corpus[i%len(corpus)], Confidence: 0.7})
	}
	for _, model := range []string{"gpt-4o", "llama3"} {
		b.Run(model, func(b *testing.B) {
			opts := Options{Counter: CounterFor(model), MaxTokens: 800}
			sys, used := Build(notes, opts)
			if len(used) != len(notes) {
				b.Fatalf("used %d of %d notes", len(used), len(notes))
			}
			if _, err := Messages(body, sys); err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				sys, _ := Build(notes, opts)
				if _, err := Messages(body, sys); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// walkObjectDecoded is walkObject with encoding/json, the reference it is
// checked against: it finds the byte span of every member value of the JSON object
// that is the whole of data (surrounding whitespace allowed), without
// decoding the values.
func walkObjectDecoded(data []byte) (object, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := expectDelim(dec, '{'); err != nil {
		return object{}, err
	}
	var o object
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return object{}, fmt.Errorf("%w: %v", ErrBadBody, err)
		}
		key, ok := tok.(string)
		if !ok {
			return object{}, ErrBadBody
		}
		sp, err := nextValue(dec, data)
		if err != nil {
			return object{}, err
		}
		sp.key = key
		o.fields = append(o.fields, sp)
	}
	if err := expectDelim(dec, '}'); err != nil {
		return object{}, err
	}
	o.close = int(dec.InputOffset()) - 1
	if err := expectEOF(dec); err != nil {
		return object{}, err
	}
	return o, nil
}

// walkArrayDecoded is walkArray with encoding/json: it finds the byte span of every element of the JSON array that is
// the whole of data.
func walkArrayDecoded(data []byte) ([]span, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := expectDelim(dec, '['); err != nil {
		return nil, err
	}
	var elems []span
	for dec.More() {
		sp, err := nextValue(dec, data)
		if err != nil {
			return nil, err
		}
		elems = append(elems, sp)
	}
	if err := expectDelim(dec, ']'); err != nil {
		return nil, err
	}
	if err := expectEOF(dec); err != nil {
		return nil, err
	}
	return elems, nil
}

// nextValue reads the next value and returns where it lies in data.
func nextValue(dec *json.Decoder, data []byte) (span, error) {
	var raw json.RawMessage
	if err := dec.Decode(&raw); err != nil {
		return span{}, fmt.Errorf("%w: %v", ErrBadBody, err)
	}
	end := int(dec.InputOffset())
	start := end - len(raw)
	if start < 0 || !bytes.Equal(data[start:end], raw) {
		return span{}, fmt.Errorf("%w: value offsets do not line up", ErrBadBody)
	}
	return span{start: start, end: end}, nil
}

func expectDelim(dec *json.Decoder, want json.Delim) error {
	tok, err := dec.Token()
	if err != nil {
		return fmt.Errorf("%w: %v", ErrBadBody, err)
	}
	if d, ok := tok.(json.Delim); !ok || d != want {
		return fmt.Errorf("%w: want %q", ErrBadBody, want)
	}
	return nil
}

func expectEOF(dec *json.Decoder) error {
	if _, err := dec.Token(); err != io.EOF {
		return fmt.Errorf("%w: trailing data", ErrBadBody)
	}
	return nil
}

func TestSystem(t *testing.T) {
	const sys = "NOTES <x> \"q\""
	tests := []struct{ name, body, want string }{
		{"absent", `{"model":"claude","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}`,
			`{"model":"claude","max_tokens":5,"messages":[{"role":"user","content":"hi"}],"system":"NOTES <x> \"q\""}`},
		{"string", `{"system": "Be brief.\u00e9", "messages":[]}`,
			`{"system": "Be brief.\u00e9\n\nNOTES <x> \"q\"", "messages":[]}`},
		{"empty string", `{"system":"","messages":[]}`, `{"system":"NOTES <x> \"q\"","messages":[]}`},
		{"null", `{"system":null,"messages":[]}`, `{"system":"NOTES <x> \"q\"","messages":[]}`},
		{"blocks", `{"system":[{"type":"text","text":"A","cache_control":{"type":"ephemeral"}} ],"messages":[]}`,
			`{"system":[{"type":"text","text":"A","cache_control":{"type":"ephemeral"}},{"type":"text","text":"NOTES <x> \"q\""} ],"messages":[]}`},
		{"empty blocks", `{"system":[ ],"messages":[]}`, `{"system":[ {"type":"text","text":"NOTES <x> \"q\""}],"messages":[]}`},
		{"empty object", `{ }`, `{ "system":"NOTES <x> \"q\""}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := []byte(tt.body)
			orig := bytes.Clone(in)
			got, err := System(in, sys)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Errorf("got  %s\nwant %s", got, tt.want)
			}
			if v, err := ValidSystem(in, sys); err != nil || string(v) != tt.want {
				t.Errorf("ValidSystem %s, %v", v, err)
			}
			if !bytes.Equal(in, orig) {
				t.Error("input modified")
			}
		})
	}
	for _, bad := range []string{`{"system":3}`, `{"system":{}}`, `{"system":"a","system":"b"}`, `[]`, `{`} {
		if got, err := System([]byte(bad), sys); !errors.Is(err, ErrBadBody) || string(got) != bad {
			t.Errorf("System(%s) = %s, %v; want the body unchanged and ErrBadBody", bad, got, err)
		}
	}
}

// FuzzSystem checks that System edits the system field only: the bytes
// around an existing one are unchanged, and a body without one keeps every
// other field's bytes.
func FuzzSystem(f *testing.F) {
	for _, s := range []string{
		`{"model":"claude","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}`,
		`{"system":"x","messages":[]}`, `{"system":[{"type":"text","text":"a","cache_control":{"type":"ephemeral"}}]}`,
		`{"system":null}`, `{"system":[]}`, `{}`, `[]`, `{"system":1}`, `{"a":1e999,"system":[1,"x",{}]}`,
	} {
		f.Add([]byte(s), "notes <|im_end|>")
	}
	f.Fuzz(func(t *testing.T, body []byte, sys string) {
		orig := bytes.Clone(body)
		got, err := System(body, sys)
		if !bytes.Equal(body, orig) {
			t.Fatal("input modified")
		}
		if json.Valid(body) {
			if v, verr := ValidSystem(body, sys); !bytes.Equal(v, got) || (verr == nil) != (err == nil) {
				t.Fatalf("ValidSystem %q, %v; System %q, %v", v, verr, got, err)
			}
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
		top, _ := walkObject(body)
		if fld, _ := top.only("system"); fld != nil {
			if !bytes.HasPrefix(got, body[:fld.start]) || !bytes.HasSuffix(got, body[fld.end:]) {
				t.Fatalf("bytes outside system changed:\n%s\n->\n%s", body, got)
			}
		} else {
			var before, after map[string]json.RawMessage
			if json.Unmarshal(body, &before) != nil || json.Unmarshal(got, &after) != nil {
				t.Fatal("not an object")
			}
			for k, v := range before {
				if !bytes.Equal(after[k], v) {
					t.Fatalf("field %q changed: %s -> %s", k, v, after[k])
				}
			}
			if len(after) != len(before)+1 || after["system"] == nil {
				t.Fatalf("system not added once: %s", got)
			}
		}
		if !bytes.Contains(got, quote(sys)[1:len(quote(sys))-1]) {
			t.Fatalf("sys not in output")
		}
	})
}
