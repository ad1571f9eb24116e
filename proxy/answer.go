package proxy

import (
	"bytes"
	"strings"

	"github.com/tidwall/gjson"
)

// answerText extracts the answer's text from a response in any of the
// formats dso relays: OpenAI JSON or SSE, Ollama JSON or NDJSON. It runs
// once per traced response over every streamed event, so it reads only the
// paths it needs, in place (gjson skips the rest without decoding it),
// instead of decoding each event whole; the text is for the trace, so a
// malformed event contributes what can be read of it, never an error.
func answerText(raw []byte) string {
	if t := bytes.TrimSpace(raw); len(t) > 0 && t[0] == '{' && gjson.ValidBytes(t) {
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

// eventText is the answer text of one body or event: an OpenAI message or
// delta (first choice), an Ollama chat message or generate response. One
// pass over the top level finds them.
func eventText(ev []byte) string {
	var b strings.Builder
	readJSON(ev).ForEach(func(k, v gjson.Result) bool {
		switch k.Str {
		case "choices":
			message, delta := firstChoice(v)
			b.WriteString(partsText(message.Get("content")))
			b.WriteString(partsText(delta.Get("content")))
		case "message":
			b.WriteString(partsText(v.Get("content")))
		case "response":
			if v.Type == gjson.String {
				b.WriteString(v.Str)
			}
		}
		return true
	})
	return b.String()
}

// firstChoice is the message and delta of the first of choices, each the
// first of its name (as gjson's Get takes them), in one pass over it.
func firstChoice(choices gjson.Result) (message, delta gjson.Result) {
	if !choices.IsArray() {
		return message, delta
	}
	choices.ForEach(func(_, c gjson.Result) bool {
		c.ForEach(func(k, v gjson.Result) bool {
			switch {
			case k.Str == "message" && !message.Exists():
				message = v
			case k.Str == "delta" && !delta.Exists():
				delta = v
			}
			return true
		})
		return false // the first choice only
	})
	return message, delta
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
		if p.Get("type").Str == "text" {
			if b.Len() > 0 {
				b.WriteByte('\n')
			}
			b.WriteString(p.Get("text").Str)
		}
		return true
	})
	return b.String()
}
