package inject

import (
	"encoding/json"
	"fmt"
)

// Where the notes go in a request. A backend's prompt cache (OpenAI's and
// Anthropic's cached input tokens, the KV cache of Ollama, llama.cpp and
// vLLM) holds an unchanged prefix of the prompt: notes in the system
// message change the prompt right after the system text, so from the
// second turn on nothing of the conversation is reused. Notes with the
// newest user turn leave everything before that turn as the client sent
// it.
const (
	// PositionUser appends the notes to the newest user message's
	// content, after a blank line (a text part for content in parts):
	// the client's messages before it are forwarded byte for byte, and
	// the roles still alternate, as strict chat templates require (a
	// system message after the user turn, or a second user message, is
	// refused or rendered wrongly by many). The default.
	PositionUser = "user"
	// PositionSystem appends the notes to the first system message, or
	// inserts one first (Messages): every turn's prompt then differs
	// from the previous one right after the system text.
	PositionSystem = "system"
)

// ValidPosition reports whether p names a position ("" is the default).
func ValidPosition(p string) bool { return p == "" || p == PositionUser || p == PositionSystem }

// MessagesAt is ValidMessages at position pos: for PositionUser (or ""),
// as LastUser places it; a body with no user message gets it as
// ValidMessages places it. body must be valid JSON.
func MessagesAt(body []byte, sys, pos string) ([]byte, error) {
	if sys == "" || pos == PositionSystem {
		return ValidMessages(body, sys)
	}
	out, ok, err := LastUser(body, sys)
	if err != nil || ok {
		return out, err
	}
	return ValidMessages(body, sys)
}

// LastUser appends sys to the content of the last message of body's
// messages whose role is "user", as mergeContent appends to a system
// message: after a blank line to a string, as a new text part (or
// Anthropic text block, the same shape) after the others, or as the
// content when it is null or absent. Every other byte is kept. ok is
// false, and body returned as it is, when there is no such message or its
// content has a shape not known here. Chat completions, Ollama chat and
// Anthropic Messages bodies all take it. body must be valid JSON.
func LastUser(body []byte, sys string) (out []byte, ok bool, err error) {
	if sys == "" {
		return body, true, nil
	}
	top, err := walkObject(body)
	if err != nil {
		return body, false, err
	}
	f, err := top.only("messages")
	if err != nil {
		return body, false, err
	}
	if f == nil {
		return body, false, ErrNoMessages
	}
	arr := body[f.start:f.end]
	elems, err := walkArray(arr)
	if err != nil {
		return body, false, err
	}
	for i := len(elems) - 1; i >= 0; i-- {
		e := elems[i]
		msg := arr[e.start:e.end]
		if msg[0] != '{' {
			continue
		}
		obj, err := walkObject(msg)
		if err != nil {
			return body, false, err
		}
		role, err := obj.only("role")
		if err != nil {
			return body, false, err
		}
		var r string
		if role == nil || json.Unmarshal(msg[role.start:role.end], &r) != nil || r != "user" {
			continue
		}
		merged, ok := mergeContent(msg, obj, sys)
		if !ok {
			return body, false, nil // a content shape we do not know: leave it
		}
		return splice(body, f.start+e.start, f.start+e.end, merged), true, nil
	}
	return body, false, nil
}

// PromptAt is ValidPrompt at position pos: for PositionUser (or ""), sys
// is appended to an Ollama generate body's string prompt after a blank
// line, so the system prompt and template before it stay as they were; an
// empty or missing prompt gets it as ValidPrompt places it. body must be
// valid JSON.
func PromptAt(body []byte, sys, pos string) ([]byte, error) {
	if sys == "" || pos == PositionSystem {
		return ValidPrompt(body, sys)
	}
	top, err := walkObject(body)
	if err != nil {
		return body, err
	}
	f, err := top.only("prompt")
	if err != nil {
		return body, err
	}
	if f == nil || body[f.start] != '"' || f.end-f.start <= 2 {
		return ValidPrompt(body, sys)
	}
	v, err := appendToString(body[f.start:f.end], sys)
	if err != nil {
		return body, fmt.Errorf("%w: prompt is not a string", ErrBadBody)
	}
	return splice(body, f.start, f.end, v), nil
}

// AppendToMessages appends add[i] to the content of message i of body's
// messages, for every i in add, as LastUser appends to one: notes kept
// where an earlier turn of the conversation had them. It walks the body
// once. An index past the messages, or a message whose content has a
// shape not known here, is left as it is; ok reports whether every one
// was placed. body must be valid JSON.
func AppendToMessages(body []byte, add map[int]string) (out []byte, ok bool, err error) {
	if len(add) == 0 {
		return body, true, nil
	}
	top, err := walkObject(body)
	if err != nil {
		return body, false, err
	}
	f, err := top.only("messages")
	if err != nil || f == nil {
		return body, false, err
	}
	arr := body[f.start:f.end]
	elems, err := walkArray(arr)
	if err != nil {
		return body, false, err
	}
	out = make([]byte, 0, len(body)+len(add)*256)
	out = append(out, body[:f.start]...)
	at, placed := 0, 0
	for i, e := range elems {
		text, want := add[i]
		if !want || text == "" || arr[e.start] != '{' {
			continue
		}
		msg := arr[e.start:e.end]
		obj, err := walkObject(msg)
		if err != nil {
			return body, false, err
		}
		merged, ok := mergeContent(msg, obj, text)
		if !ok {
			continue
		}
		out = append(append(out, arr[at:e.start]...), merged...)
		at = e.end
		placed++
	}
	out = append(append(out, arr[at:]...), body[f.end:]...)
	return out, placed == len(add), nil
}
