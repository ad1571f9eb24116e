package responses

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// ErrBadRequest marks a request that is malformed or asks for what
// translation cannot do; the message says which and is safe to show.
var ErrBadRequest = errors.New("bad request")

func badRequest(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrBadRequest, fmt.Sprintf(format, args...))
}

// Limits on what one request may hold.
const (
	// MaxItems caps a conversation's items (its history and the new
	// input together).
	MaxItems = 4096
	// MaxTools caps the tools of one request.
	MaxTools = 512
)

// Request is the part of a Responses API request that dso reads. Fields
// it does not read (reasoning, truncation, include, service_tier, ...)
// are not translated; Unknown names them.
type Request struct {
	Model              string          `json:"model"`
	Input              json.RawMessage `json:"input"`
	Instructions       json.RawMessage `json:"instructions"`
	Tools              json.RawMessage `json:"tools"`
	ToolChoice         json.RawMessage `json:"tool_choice"`
	Text               json.RawMessage `json:"text"`
	MaxOutputTokens    *int            `json:"max_output_tokens"`
	Temperature        *float64        `json:"temperature"`
	TopP               *float64        `json:"top_p"`
	Metadata           json.RawMessage `json:"metadata"`
	ParallelToolCalls  *bool           `json:"parallel_tool_calls"`
	Stream             bool            `json:"stream"`
	Store              *bool           `json:"store"`
	PreviousResponseID string          `json:"previous_response_id"`
	User               string          `json:"user"`
	PromptCacheKey     string          `json:"prompt_cache_key"`

	// Unknown lists the top-level fields translation drops, for a log line.
	Unknown []string `json:"-"`
}

// known are the fields Request reads, and those that need no translation
// (stream_options is replaced; background is refused below).
var known = map[string]bool{
	"model": true, "input": true, "instructions": true, "tools": true, "tool_choice": true, "text": true,
	"max_output_tokens": true, "temperature": true, "top_p": true, "metadata": true, "parallel_tool_calls": true,
	"stream": true, "store": true, "previous_response_id": true, "user": true, "stream_options": true,
	"prompt_cache_key": true,
}

// Parse reads and checks a request body.
func Parse(body []byte) (*Request, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(body, &top); err != nil || top == nil {
		return nil, badRequest("request body must be a JSON object")
	}
	var r Request
	if err := json.Unmarshal(body, &r); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return nil, badRequest("%s has the wrong type", te.Field)
		}
		return nil, badRequest("request body is not valid JSON")
	}
	if r.Model == "" {
		return nil, badRequest("model is required")
	}
	if isNull(r.Input) {
		return nil, badRequest("input is required")
	}
	if b, ok := top["background"]; ok && string(b) == "true" {
		return nil, badRequest("background responses are not supported by this backend")
	}
	if v := r.MaxOutputTokens; v != nil && *v < 1 {
		return nil, badRequest("max_output_tokens must be at least 1")
	}
	for k := range top {
		if !known[k] {
			r.Unknown = append(r.Unknown, k)
		}
	}
	return &r, nil
}

// Stored reports whether the response is to be kept: the default.
func (r *Request) Stored() bool { return r.Store == nil || *r.Store }

func isNull(raw json.RawMessage) bool {
	t := bytes.TrimSpace(raw)
	return len(t) == 0 || string(t) == "null"
}

// NewID returns an id in OpenAI's style: prefix, then 24 random hex digits.
func NewID(prefix string) string {
	var b [24]byte
	_, _ = rand.Read(b[:])
	return prefix + "_" + hex.EncodeToString(b[:])
}

// item is an input or output item as dso reads it; Raw keeps it whole.
type item struct {
	Type      string          `json:"type"`
	ID        string          `json:"id"`
	Role      string          `json:"role"`
	Content   json.RawMessage `json:"content"`
	CallID    string          `json:"call_id"`
	Name      string          `json:"name"`
	Arguments string          `json:"arguments"`
	Output    json.RawMessage `json:"output"`
}

// InputItems returns the request's input as items, each with an id (one
// is given where the client gave none), as they are listed and kept: a
// string input is one user message.
func InputItems(r *Request) ([]json.RawMessage, error) {
	var s string
	if json.Unmarshal(r.Input, &s) == nil {
		it := map[string]any{"type": "message", "id": NewID("msg"), "role": "user", "status": "completed",
			"content": []map[string]string{{"type": "input_text", "text": s}}}
		b, err := json.Marshal(it)
		return []json.RawMessage{b}, err
	}
	var raws []json.RawMessage
	if err := json.Unmarshal(r.Input, &raws); err != nil {
		return nil, badRequest("input must be a string or a list of items")
	}
	if len(raws) > MaxItems {
		return nil, badRequest("input has more than %d items", MaxItems)
	}
	out := make([]json.RawMessage, 0, len(raws))
	for i, raw := range raws {
		var fields map[string]json.RawMessage
		if json.Unmarshal(raw, &fields) != nil || fields == nil {
			return nil, badRequest("input[%d] must be an object", i)
		}
		var it item
		if err := json.Unmarshal(raw, &it); err != nil {
			return nil, badRequest("input[%d]: a field has the wrong type", i)
		}
		if it.Type == "" && it.Role != "" {
			it.Type = "message"
			fields["type"] = json.RawMessage(`"message"`)
		}
		if _, err := chatMessages(nil, it, i); err != nil {
			return nil, err
		}
		if it.ID == "" {
			prefix := "msg"
			switch it.Type {
			case "function_call":
				prefix = "fc"
			case "function_call_output":
				prefix = "fco"
			}
			id, _ := json.Marshal(NewID(prefix))
			fields["id"] = id
		}
		b, err := json.Marshal(fields)
		if err != nil {
			return nil, badRequest("input[%d]: %v", i, err)
		}
		out = append(out, b)
	}
	return out, nil
}

// chatMessage is one chat-completions message as translation writes it.
// Fields are in a fixed order, so the same items always give the same
// bytes: a conversation's next request then extends its last one.
type chatMessage struct {
	Role       string          `json:"role"`
	Content    json.RawMessage `json:"content"`
	ToolCalls  []chatToolCall  `json:"tool_calls,omitempty"`
	ToolCallID string          `json:"tool_call_id,omitempty"`
}

type chatToolCall struct {
	ID       string `json:"id"`
	Type     string `json:"type"`
	Function struct {
		Name      string `json:"name"`
		Arguments string `json:"arguments"`
	} `json:"function"`
}

// chatMessages appends item it (the i-th) to msgs as chat messages. A
// function call joins the assistant message before it, as chat keeps a
// turn's text and calls in one message.
func chatMessages(msgs []chatMessage, it item, i int) ([]chatMessage, error) {
	switch it.Type {
	case "message":
		role := it.Role
		switch role {
		case "user", "system", "assistant":
		case "developer":
			role = "system"
		default:
			return nil, badRequest("input[%d]: role must be user, assistant, system or developer", i)
		}
		content, err := chatContent(it.Content, i)
		if err != nil {
			return nil, err
		}
		return append(msgs, chatMessage{Role: role, Content: content}), nil
	case "function_call":
		if it.CallID == "" || it.Name == "" {
			return nil, badRequest("input[%d]: a function_call needs call_id and name", i)
		}
		var tc chatToolCall
		tc.ID, tc.Type = it.CallID, "function"
		tc.Function.Name, tc.Function.Arguments = it.Name, it.Arguments
		if n := len(msgs); n > 0 && msgs[n-1].Role == "assistant" {
			msgs[n-1].ToolCalls = append(msgs[n-1].ToolCalls, tc)
			return msgs, nil
		}
		return append(msgs, chatMessage{Role: "assistant", Content: json.RawMessage("null"), ToolCalls: []chatToolCall{tc}}), nil
	case "function_call_output":
		if it.CallID == "" {
			return nil, badRequest("input[%d]: a function_call_output needs call_id", i)
		}
		out, err := outputText(it.Output, i)
		if err != nil {
			return nil, err
		}
		s, _ := json.Marshal(out)
		return append(msgs, chatMessage{Role: "tool", Content: s, ToolCallID: it.CallID}), nil
	case "reasoning":
		return msgs, nil // a model's own reasoning: not sent back to chat models
	case "":
		return nil, badRequest("input[%d]: type is required", i)
	}
	return nil, badRequest("input[%d]: items of type %q are not supported by this backend", i, it.Type)
}

// chatContent translates a message's content: a string stays a string,
// and so do text parts (input_text, output_text, refusal), joined by
// newlines; with an image, parts become chat parts (text, and image_url
// for input_image).
func chatContent(raw json.RawMessage, i int) (json.RawMessage, error) {
	if isNull(raw) {
		return json.RawMessage(`""`), nil
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return raw, nil
	}
	var parts []struct {
		Type     string          `json:"type"`
		Text     *string         `json:"text"`
		ImageURL json.RawMessage `json:"image_url"`
		FileID   string          `json:"file_id"`
		Detail   string          `json:"detail"`
		Refusal  string          `json:"refusal"`
	}
	if err := json.Unmarshal(raw, &parts); err != nil {
		return nil, badRequest("input[%d].content must be a string or a list of parts", i)
	}
	out := make([]map[string]any, 0, len(parts))
	texts, allText := make([]string, 0, len(parts)), true
	for j, p := range parts {
		switch p.Type {
		case "input_text", "output_text", "text":
			if p.Text == nil {
				return nil, badRequest("input[%d].content[%d]: text is required", i, j)
			}
			out = append(out, map[string]any{"type": "text", "text": *p.Text})
			texts = append(texts, *p.Text)
		case "refusal":
			out = append(out, map[string]any{"type": "text", "text": p.Refusal})
			texts = append(texts, p.Refusal)
		case "input_image":
			var url string
			if json.Unmarshal(p.ImageURL, &url) != nil || url == "" {
				if p.FileID != "" {
					return nil, badRequest("input[%d].content[%d]: images by file_id need an OpenAI backend; send image_url", i, j)
				}
				return nil, badRequest("input[%d].content[%d]: image_url is required", i, j)
			}
			img := map[string]string{"url": url}
			if p.Detail != "" {
				img["detail"] = p.Detail
			}
			out = append(out, map[string]any{"type": "image_url", "image_url": img})
			allText = false
		default:
			return nil, badRequest("input[%d].content[%d]: parts of type %q are not supported by this backend", i, j, p.Type)
		}
	}
	if allText {
		// Text alone goes as one string, which every chat server and
		// template takes (not all take parts, above all in assistant
		// messages).
		return json.Marshal(strings.Join(texts, "\n"))
	}
	return json.Marshal(out)
}

// outputText is a function call's output as chat's tool message text: a
// string, or the text of its parts.
func outputText(raw json.RawMessage, i int) (string, error) {
	if isNull(raw) {
		return "", nil
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s, nil
	}
	var parts []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	if json.Unmarshal(raw, &parts) != nil {
		return "", badRequest("input[%d].output must be a string or a list of parts", i)
	}
	var b strings.Builder
	for _, p := range parts {
		if p.Type == "input_text" || p.Type == "output_text" || p.Type == "text" {
			if b.Len() > 0 {
				b.WriteByte('\n')
			}
			b.WriteString(p.Text)
		}
	}
	return b.String(), nil
}
