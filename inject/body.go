package inject

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"unsafe"

	"github.com/tidwall/gjson"
)

// Errors from Messages and Prompt. The body is returned unchanged with
// them; a caller should forward it as is (fail open).
var (
	// ErrBadBody reports a body that is not one valid JSON object, or whose
	// messages value is not an array.
	ErrBadBody = errors.New("inject: request body is not a JSON object")
	// ErrNoMessages reports a chat body without a messages field.
	ErrNoMessages = errors.New("inject: request body has no messages")
)

// noteSeparator goes between a client's system text and the notes.
const noteSeparator = "\n\n"

// Messages adds the system text sys to a chat request body (OpenAI
// /v1/chat/completions or Ollama /api/chat) and returns the new body. It
// edits only the messages array:
//
//   - if a message has role "system" or "developer", sys is appended to
//     the first such message: to its string content after a blank line, as
//     a new {"type":"text","text":...} part when the content is an array of
//     parts, or as the content when it is null or absent;
//   - otherwise a new {"role":"system","content":sys} message is inserted
//     first.
//
// Every other byte of body is kept as it was: other fields, their order,
// numbers as written, whitespace, and the other messages. An empty sys
// returns body unchanged. The input is never modified.
func Messages(body []byte, sys string) ([]byte, error) {
	if sys != "" && !json.Valid(body) {
		return body, fmt.Errorf("%w: not valid JSON", ErrBadBody)
	}
	return ValidMessages(body, sys)
}

// ValidMessages is Messages for a body the caller has already checked is
// valid JSON (json.Valid), as a proxy does before it reads the request:
// it does not check it again. body must be valid JSON: the result of
// anything else is undefined.
func ValidMessages(body []byte, sys string) ([]byte, error) {
	if sys == "" {
		return body, nil
	}
	top, err := walkObject(body)
	if err != nil {
		return body, err
	}
	f, err := top.only("messages")
	if err != nil {
		return body, err
	}
	if f == nil {
		return body, ErrNoMessages
	}
	arr := body[f.start:f.end]
	newArr, err := mergeMessages(arr, sys)
	if err != nil {
		return body, err
	}
	return splice(body, f.start, f.end, newArr), nil
}

// Prompt adds the system text sys to an Ollama /api/generate body: it is
// appended after a blank line to a string "system" field, or becomes the
// "system" field when that is null or absent (added as the last field).
// Everything else is kept byte for byte. An empty sys returns body
// unchanged.
func Prompt(body []byte, sys string) ([]byte, error) {
	if sys != "" && !json.Valid(body) {
		return body, fmt.Errorf("%w: not valid JSON", ErrBadBody)
	}
	return ValidPrompt(body, sys)
}

// ValidPrompt is Prompt for a body the caller has already checked is
// valid JSON, as ValidMessages is Messages.
func ValidPrompt(body []byte, sys string) ([]byte, error) {
	return appendToSystem(body, sys, false)
}

// System adds the system text sys to an Anthropic Messages body, whose
// system prompt is the top-level "system" field: appended after a blank
// line to a string, as a new {"type":"text","text":...} block after a
// list of blocks (so a cache_control breakpoint on the client's last block
// still marks the same prefix), or as the field itself when it is null or
// absent (added as the last field). Everything else is kept byte for
// byte. An empty sys returns body unchanged.
func System(body []byte, sys string) ([]byte, error) {
	if sys != "" && !json.Valid(body) {
		return body, fmt.Errorf("%w: not valid JSON", ErrBadBody)
	}
	return ValidSystem(body, sys)
}

// ValidSystem is System for a body the caller has already checked is
// valid JSON, as ValidMessages is Messages.
func ValidSystem(body []byte, sys string) ([]byte, error) {
	return appendToSystem(body, sys, true)
}

// appendToSystem appends sys to body's top-level "system" field: to a
// string after a blank line, as the field when it is null or absent, and,
// where blocks allows (Anthropic's), as a text block after a list.
func appendToSystem(body []byte, sys string, blocks bool) ([]byte, error) {
	if sys == "" {
		return body, nil
	}
	top, err := walkObject(body)
	if err != nil {
		return body, err
	}
	f, err := top.only("system")
	if err != nil {
		return body, err
	}
	if f == nil {
		return insertField(body, top, "system", quote(sys)), nil
	}
	v := body[f.start:f.end]
	var nv []byte
	switch {
	case v[0] == '"':
		nv, err = appendToString(v, sys)
	case v[0] == 'n': // null
		nv = quote(sys)
	case v[0] == '[' && blocks:
		nv, err = appendTextPart(v, sys)
	case blocks:
		err = errors.New("not a string or a list")
	default:
		err = errors.New("not a string")
	}
	if err != nil {
		return body, fmt.Errorf("%w: system: %v", ErrBadBody, err)
	}
	return splice(body, f.start, f.end, nv), nil
}

// appendTextPart returns the JSON array arr with a text part (an OpenAI
// content part, an Anthropic text block: the same shape) holding sys
// appended.
func appendTextPart(arr []byte, sys string) ([]byte, error) {
	parts, err := walkArray(arr)
	if err != nil {
		return nil, err
	}
	part := `{"type":"text","text":` + string(quote(sys)) + `}`
	at := len(arr) - 1 // the closing ']'
	if len(parts) > 0 {
		at = parts[len(parts)-1].end
		part = "," + part
	}
	return splice(arr, at, at, []byte(part)), nil
}

// mergeMessages returns the messages array with sys merged in.
func mergeMessages(arr []byte, sys string) ([]byte, error) {
	elems, err := walkArray(arr)
	if err != nil {
		return nil, err
	}
	for _, e := range elems {
		msg := arr[e.start:e.end]
		if msg[0] != '{' {
			continue
		}
		obj, err := walkObject(msg)
		if err != nil {
			return nil, err
		}
		role, err := obj.only("role")
		if err != nil {
			return nil, err
		}
		if role == nil {
			continue
		}
		var r string
		if json.Unmarshal(msg[role.start:role.end], &r) != nil || (r != "system" && r != "developer") {
			continue
		}
		merged, ok := mergeContent(msg, obj, sys)
		if !ok {
			break // a content shape we do not know: leave it, insert ours first
		}
		return splice(arr, e.start, e.end, merged), nil
	}
	// Insert a new system message right after '['.
	msg := `{"role":"system","content":` + string(quote(sys)) + `}`
	if len(elems) > 0 {
		msg += ","
	}
	return splice(arr, 1, 1, []byte(msg)), nil
}

// mergeContent appends sys to one message's content.
func mergeContent(msg []byte, obj object, sys string) ([]byte, bool) {
	c, err := obj.only("content")
	if err != nil {
		return nil, false
	}
	if c == nil {
		return insertField(msg, obj, "content", quote(sys)), true
	}
	v := msg[c.start:c.end]
	switch v[0] {
	case '"':
		nv, err := appendToString(v, sys)
		if err != nil {
			return nil, false
		}
		return splice(msg, c.start, c.end, nv), true
	case 'n': // null
		return splice(msg, c.start, c.end, quote(sys)), true
	case '[':
		nv, err := appendTextPart(v, sys)
		if err != nil {
			return nil, false
		}
		return splice(msg, c.start, c.end, nv), true
	}
	return nil, false
}

// appendToString returns the JSON string literal lit with
// noteSeparator+sys appended, keeping lit's own bytes (its escapes) as
// they were. An empty string gets sys alone.
func appendToString(lit []byte, sys string) ([]byte, error) {
	var s string
	if err := json.Unmarshal(lit, &s); err != nil {
		return nil, err
	}
	if s == "" {
		return quote(sys), nil
	}
	add := quote(noteSeparator + sys)
	out := make([]byte, 0, len(lit)+len(add))
	out = append(out, lit[:len(lit)-1]...)
	return append(out, add[1:]...), nil
}

// quote returns s as a JSON string without HTML escaping (so "<" stays
// readable in logs; both forms are valid JSON).
func quote(s string) []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.Encode(s) // a string always encodes
	return bytes.TrimSuffix(b.Bytes(), []byte("\n"))
}

// insertField adds "key":value as the last member of the object obj
// parsed from data.
func insertField(data []byte, obj object, key string, value []byte) []byte {
	add := string(quote(key)) + ":" + string(value)
	if len(obj.fields) > 0 {
		at := obj.fields[len(obj.fields)-1].end
		return splice(data, at, at, []byte(","+add))
	}
	return splice(data, obj.close, obj.close, []byte(add))
}

// splice returns a new slice: data with data[start:end] replaced by repl.
func splice(data []byte, start, end int, repl []byte) []byte {
	out := make([]byte, 0, len(data)-(end-start)+len(repl))
	out = append(out, data[:start]...)
	out = append(out, repl...)
	return append(out, data[end:]...)
}

// span locates one value in the parsed bytes: data[start:end].
type span struct {
	key        string // object member name; "" for array elements
	start, end int
}

// object is the layout of one JSON object.
type object struct {
	fields []span
	close  int // index of the closing '}'
}

// only returns the member named key, nil if absent, or ErrBadBody if the
// name occurs twice (JSON parsers disagree on which one wins, so dso does
// not guess).
func (o object) only(key string) (*span, error) {
	var found *span
	for i := range o.fields {
		if o.fields[i].key == key {
			if found != nil {
				return nil, fmt.Errorf("%w: duplicate %q", ErrBadBody, key)
			}
			found = &o.fields[i]
		}
	}
	return found, nil
}

// walkObject finds the byte span of every member value of the JSON object
// that is the whole of data (surrounding whitespace allowed), without
// decoding or copying the values. data must be valid JSON (Messages and
// Prompt check the body once, their Valid forms trust the caller's
// check); the walk reads it in place.
func walkObject(data []byte) (object, error) {
	root := gjson.Parse(unsafe.String(unsafe.SliceData(data), len(data)))
	if !root.IsObject() {
		return object{}, fmt.Errorf("%w: want an object", ErrBadBody)
	}
	var o object
	root.ForEach(func(k, v gjson.Result) bool {
		o.fields = append(o.fields, span{key: k.Str, start: v.Index, end: v.Index + len(v.Raw)})
		return true
	})
	o.close = len(bytes.TrimRight(data, " \t\r\n")) - 1
	return o, nil
}

// walkArray finds the byte span of every element of the JSON array that is
// the whole of data, which must be valid JSON, as for walkObject.
func walkArray(data []byte) ([]span, error) {
	root := gjson.Parse(unsafe.String(unsafe.SliceData(data), len(data)))
	if !root.IsArray() {
		return nil, fmt.Errorf("%w: want an array", ErrBadBody)
	}
	var elems []span
	root.ForEach(func(_, v gjson.Result) bool {
		elems = append(elems, span{start: v.Index, end: v.Index + len(v.Raw)})
		return true
	})
	return elems, nil
}
