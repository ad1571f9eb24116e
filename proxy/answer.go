package proxy

import (
	"bytes"
	"strings"

	"github.com/tidwall/gjson"
)

// answerText extracts the answer's text from a response in any of the
// formats dso relays: OpenAI JSON or SSE (chat and Responses), Ollama JSON
// or NDJSON, Anthropic JSON or SSE (event: lines are skipped as any
// non-data line). A single
// JSON body (which may be laid out over lines) is told from a stream of
// JSON events by validating it, unless whole says it is one: a body of
// known length, or one dso translated. It runs once per traced response
// over every streamed event, so it reads only the paths it needs, in place
// (gjson skips the rest without decoding it), instead of decoding each
// event whole; the text is for the trace, so a malformed event contributes
// what can be read of it, never an error.
func answerText(raw []byte, whole bool) string {
	if t := bytes.TrimSpace(raw); len(t) > 0 && t[0] == '{' && (whole || gjson.ValidBytes(t)) {
		return eventText(t) // one JSON body, however it is laid out
	}
	var out strings.Builder
	for len(raw) > 0 {
		line := raw
		if i := bytes.IndexByte(raw, '\n'); i >= 0 {
			line, raw = raw[:i], raw[i+1:]
		} else {
			raw = nil
		}
		line = bytes.TrimSpace(line)
		if d, ok := bytes.CutPrefix(line, []byte("data:")); ok {
			line = bytes.TrimSpace(d)
		}
		if len(line) == 0 || line[0] != '{' {
			continue
		}
		out.WriteString(eventText(line))
	}
	return out.String()
}

// eventText is the answer text of one body or event: with "choices", the
// first choice's delta (a stream's event) or else its message (a body), as
// OpenAI sends them; a Responses body's messages, or a stream's
// output_text delta; an Anthropic message's text blocks, or a stream's
// text_delta; else an Ollama chat message or generate response.
// It looks these paths up rather than walking every field: gjson skips
// what lies before a key without parsing it and reads nothing after it,
// where a walk parsed every value of every event (6.2 → 4 µs on the
// recorded stream).
func eventText(ev []byte) string {
	obj := readJSON(ev)
	if choices := obj.Get("choices"); choices.Exists() {
		if !choices.IsArray() {
			return ""
		}
		if c := choices.Get("0.delta.content"); c.Exists() {
			return partsText(c)
		}
		if c := choices.Get("0.text"); c.Type == gjson.String {
			return c.Str // a legacy completion's
		}
		return partsText(choices.Get("0.message.content"))
	}
	switch typ := obj.Get("type").Str; {
	case typ == "response.output_text.delta":
		return obj.Get("delta").Str // a Responses stream's text
	case obj.Get("object").Str == "response":
		var b strings.Builder // a Responses body: its messages' text
		obj.Get("output").ForEach(func(_, it gjson.Result) bool {
			if it.Get("type").Str == "message" {
				b.WriteString(partsText(it.Get("content")))
			}
			return true
		})
		return b.String()
	case typ == "message":
		return partsText(obj.Get("content")) // an Anthropic body
	case typ == "content_block_delta":
		return obj.Get("delta.text").Str // an Anthropic stream's text_delta
	}
	text := partsText(obj.Get("message.content"))
	if r := obj.Get("response"); r.Type == gjson.String {
		text += r.Str
	}
	return text
}

// partsText is contentText for a gjson result: a string, or the text
// parts of a list of content parts joined by newlines.
func partsText(r gjson.Result) string {
	switch {
	case r.Type == gjson.String:
		return r.Str
	case !r.IsArray():
		return ""
	}
	var b strings.Builder
	r.ForEach(func(_, p gjson.Result) bool {
		if t := p.Get("type").Str; t == "text" || t == "input_text" || t == "output_text" {
			if b.Len() > 0 {
				b.WriteByte('\n')
			}
			b.WriteString(p.Get("text").Str)
		}
		return true
	})
	return b.String()
}
