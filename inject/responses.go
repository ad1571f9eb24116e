package inject

import (
	"encoding/json"
	"fmt"
)

// ResponsesInput adds the system text sys to an OpenAI Responses API
// request body as a developer message item after the request's input, so
// that everything before it (the instructions, the conversation the
// backend keeps, this turn's input) is what the client sent, and a
// backend's prompt cache of it still holds. A string input becomes the
// user message it stands for, followed by the note. Every other byte of
// body is kept as it was. An empty sys returns body unchanged.
func ResponsesInput(body []byte, sys string) ([]byte, error) {
	if sys != "" && !json.Valid(body) {
		return body, fmt.Errorf("%w: not valid JSON", ErrBadBody)
	}
	return ValidResponsesInput(body, sys)
}

// ValidResponsesInput is ResponsesInput for a body already checked to be
// valid JSON, as ValidMessages is Messages.
func ValidResponsesInput(body []byte, sys string) ([]byte, error) {
	if sys == "" {
		return body, nil
	}
	top, err := walkObject(body)
	if err != nil {
		return body, err
	}
	f, err := top.only("input")
	if err != nil {
		return body, err
	}
	if f == nil {
		return body, fmt.Errorf("%w: no input", ErrBadBody)
	}
	note := `{"type":"message","role":"developer","content":` + string(quote(sys)) + `}`
	v := body[f.start:f.end]
	switch v[0] {
	case '"':
		repl := `[{"type":"message","role":"user","content":` + string(v) + `},` + note + `]`
		return splice(body, f.start, f.end, []byte(repl)), nil
	case '[':
		elems, err := walkArray(v)
		if err != nil {
			return body, err
		}
		at := len(v) - 1 // the closing ']'
		if len(elems) > 0 {
			at = elems[len(elems)-1].end
			note = "," + note
		}
		return splice(body, f.start+at, f.start+at, []byte(note)), nil
	}
	return body, fmt.Errorf("%w: input is neither a string nor a list", ErrBadBody)
}

// ValidCompletionPrompt adds the system text sys to a legacy completions
// body (already checked to be valid JSON) before its string prompt, with
// a blank line between: a completion continues its prompt's text, so the
// notes can only come first. Every other byte is kept; a prompt that is
// not one string is refused with ErrBadBody.
func ValidCompletionPrompt(body []byte, sys string) ([]byte, error) {
	if sys == "" {
		return body, nil
	}
	top, err := walkObject(body)
	if err != nil {
		return body, err
	}
	f, err := top.only("prompt")
	if err != nil {
		return body, err
	}
	if f == nil || body[f.start] != '"' {
		return body, fmt.Errorf("%w: prompt is not a string", ErrBadBody)
	}
	head := quote(sys + noteSeparator)
	v := body[f.start:f.end]
	repl := make([]byte, 0, len(head)+len(v))
	repl = append(append(repl, head[:len(head)-1]...), v[1:]...)
	return splice(body, f.start, f.end, repl), nil
}
