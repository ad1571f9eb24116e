package anthropic

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// This file translates a Messages request into a chat-completions one,
// for an Anthropic client over an OpenAI-compatible or Ollama backend.

// RequestToChat translates a Messages request body into an OpenAI
// chat-completions body. A stream asks for the usage chunk, which the
// Messages stream reports. What chat completions cannot carry is dropped
// and named in Info.Dropped (cache_control, top_k, thinking); what would
// change the answer's meaning if dropped (Anthropic's own tool types,
// file sources) is refused with an error wrapping ErrInvalid.
func RequestToChat(body []byte) ([]byte, Info, error) {
	var in msgRequest
	if err := json.Unmarshal(body, &in); err != nil {
		return nil, Info{}, invalid("invalid Messages request: %s", jsonErr(err))
	}
	info := Info{Model: in.Model, Stream: in.Stream, StopSequences: in.StopSequences}
	switch {
	case in.Model == "":
		return nil, info, invalid("model: Field required")
	case in.MaxTokens == nil:
		return nil, info, invalid("max_tokens: Field required")
	case *in.MaxTokens < 1:
		return nil, info, invalid("max_tokens: must be at least 1")
	}
	out := chatRequest{Model: in.Model, MaxTokens: in.MaxTokens, Temperature: in.Temperature, TopP: in.TopP, Stream: in.Stream}
	if in.Stream {
		out.StreamOptions = &streamOptions{IncludeUsage: true}
	}
	if in.TopK != nil {
		info.drop(DroppedTopK)
	}
	if !isNull(in.Thinking) {
		info.drop(DroppedThinking)
	}
	if in.ServiceTier != "" {
		info.drop(DroppedServiceTier)
	}
	if len(in.StopSequences) > 0 {
		out.Stop, _ = json.Marshal(in.StopSequences)
	}
	if in.Metadata != nil {
		out.User = in.Metadata.UserID
	}
	sys, err := systemText(in.System, &info)
	if err != nil {
		return nil, info, err
	}
	if sys != "" {
		out.Messages = append(out.Messages, chatMessage{Role: "system", Content: quote(sys)})
	}
	for i, m := range in.Messages {
		ms, err := chatMessages(m, &info)
		if err != nil {
			return nil, info, invalid("messages[%d]: %v", i, err)
		}
		out.Messages = append(out.Messages, ms...)
	}
	if len(out.Messages) == 0 {
		return nil, info, invalid("messages: at least one message is required")
	}
	if err := chatTools(&out, in.Tools, in.ToolChoice, &info); err != nil {
		return nil, info, err
	}
	b, err := json.Marshal(out)
	return b, info, err
}

// systemText reads system: a string, or a list of text blocks, joined by
// blank lines.
func systemText(raw json.RawMessage, info *Info) (string, error) {
	if isNull(raw) {
		return "", nil
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s, nil
	}
	var blocks []msgBlock
	if json.Unmarshal(raw, &blocks) != nil {
		return "", invalid("system: must be a string or a list of text blocks")
	}
	var texts []string
	for i, b := range blocks {
		if b.Type != "text" {
			return "", invalid("system[%d]: block type %q is not a text block", i, b.Type)
		}
		if !isNull(b.CacheControl) {
			info.drop(DroppedCacheControl)
		}
		texts = append(texts, b.Text)
	}
	return strings.Join(texts, "\n\n"), nil
}

// chatMessages translates one Messages message into chat messages: a
// user turn's tool results become tool messages (first, as chat requires
// them right after the assistant's calls), the rest one user message.
func chatMessages(m msgMessage, info *Info) ([]chatMessage, error) {
	if m.Role != "user" && m.Role != "assistant" {
		return nil, fmt.Errorf("role must be user or assistant, not %q", m.Role)
	}
	var s string
	if json.Unmarshal(m.Content, &s) == nil {
		return []chatMessage{{Role: m.Role, Content: quote(s)}}, nil
	}
	var blocks []msgBlock
	if err := json.Unmarshal(m.Content, &blocks); err != nil {
		return nil, errors.New("content must be a string or a list of content blocks")
	}
	if m.Role == "assistant" {
		am, err := assistantMessage(blocks, info)
		if err != nil {
			return nil, err
		}
		return []chatMessage{am}, nil
	}
	var out []chatMessage
	var parts []chatPart
	for i, b := range blocks {
		if !isNull(b.CacheControl) {
			info.drop(DroppedCacheControl)
		}
		if b.Type == "tool_result" {
			tm, images, err := toolMessage(b, info)
			if err != nil {
				return nil, fmt.Errorf("content[%d]: %v", i, err)
			}
			out = append(out, tm)
			// Chat's tool messages carry text only: images a tool
			// returned follow in the user message.
			parts = append(parts, images...)
			continue
		}
		p, err := userPart(b)
		if err != nil {
			return nil, fmt.Errorf("content[%d]: %v", i, err)
		}
		if p != nil {
			parts = append(parts, *p)
		}
	}
	if len(parts) > 0 {
		out = append(out, chatMessage{Role: "user", Content: partsContent(parts)})
	}
	return out, nil
}

// partsContent is one text part as a plain string (every backend takes
// one), else the list of parts.
func partsContent(parts []chatPart) json.RawMessage {
	if len(parts) == 1 && parts[0].Type == "text" {
		return quote(parts[0].Text)
	}
	b, _ := json.Marshal(parts)
	return b
}

// userPart translates a user turn's block into a chat content part; nil
// for a block that is dropped.
func userPart(b msgBlock) (*chatPart, error) {
	switch b.Type {
	case "text":
		return &chatPart{Type: "text", Text: b.Text}, nil
	case "image":
		u, err := imageURL(b.Source)
		if err != nil {
			return nil, err
		}
		p := &chatPart{Type: "image_url"}
		p.ImageURL = &struct {
			URL    string `json:"url"`
			Detail string `json:"detail,omitempty"`
		}{URL: u}
		return p, nil
	case "document":
		return documentPart(b)
	case "thinking", "redacted_thinking":
		return nil, nil
	}
	return nil, fmt.Errorf("content block type %q is not supported over this backend", b.Type)
}

// imageURL is an image source as chat's image_url: a data: URL for
// base64 data, or the URL.
func imageURL(src *msgSource) (string, error) {
	if src == nil {
		return "", errors.New("image source is required")
	}
	switch src.Type {
	case "base64":
		if src.MediaType == "" || src.Data == "" {
			return "", errors.New("image source needs media_type and data")
		}
		return "data:" + src.MediaType + ";base64," + src.Data, nil
	case "url":
		if src.URL == "" {
			return "", errors.New("image source needs a url")
		}
		return src.URL, nil
	}
	return "", fmt.Errorf("image source type %q needs an anthropic backend", src.Type)
}

// documentPart carries a plain-text document as text and a base64 PDF as
// a chat file part.
func documentPart(b msgBlock) (*chatPart, error) {
	src := b.Source
	switch {
	case src == nil:
		return nil, errors.New("document source is required")
	case src.Type == "text":
		return &chatPart{Type: "text", Text: src.Data}, nil
	case src.Type == "base64" && src.MediaType == "application/pdf":
		p := &chatPart{Type: "file"}
		name := b.Title
		if name == "" {
			name = "document.pdf"
		}
		p.File = &struct {
			FileData string `json:"file_data,omitempty"`
			FileID   string `json:"file_id,omitempty"`
			Filename string `json:"filename,omitempty"`
		}{FileData: "data:application/pdf;base64," + src.Data, Filename: name}
		return p, nil
	}
	return nil, fmt.Errorf("document source type %q needs an anthropic backend", src.Type)
}

// toolMessage translates a tool_result block into a tool message and the
// images it returned.
func toolMessage(b msgBlock, info *Info) (chatMessage, []chatPart, error) {
	if b.ToolUseID == "" {
		return chatMessage{}, nil, errors.New("tool_result needs a tool_use_id")
	}
	var text string
	var images []chatPart
	if !isNull(b.Content) {
		if json.Unmarshal(b.Content, &text) != nil {
			var blocks []msgBlock
			if json.Unmarshal(b.Content, &blocks) != nil {
				return chatMessage{}, nil, errors.New("tool_result content must be a string or a list of blocks")
			}
			var texts []string
			for _, c := range blocks {
				if !isNull(c.CacheControl) {
					info.drop(DroppedCacheControl)
				}
				p, err := userPart(c)
				switch {
				case err != nil:
					return chatMessage{}, nil, err
				case p == nil:
				case p.Type == "text":
					texts = append(texts, p.Text)
				default:
					images = append(images, *p)
				}
			}
			text = strings.Join(texts, "\n")
		}
	}
	if b.IsError {
		// Chat has no error flag on a tool's answer: the model reads it.
		text = "Error: " + text
	}
	return chatMessage{Role: "tool", ToolCallID: b.ToolUseID, Content: quote(text)}, images, nil
}

// assistantMessage translates an assistant turn: text blocks become the
// content, tool_use blocks tool calls; thinking is dropped (its signature
// means nothing to another model).
func assistantMessage(blocks []msgBlock, info *Info) (chatMessage, error) {
	out := chatMessage{Role: "assistant"}
	var texts []string
	for i, b := range blocks {
		if !isNull(b.CacheControl) {
			info.drop(DroppedCacheControl)
		}
		switch b.Type {
		case "text":
			texts = append(texts, b.Text)
		case "tool_use":
			if len(out.ToolCalls) >= maxToolCalls {
				return out, fmt.Errorf("more than %d tool calls in one message", maxToolCalls)
			}
			if b.ID == "" || b.Name == "" {
				return out, fmt.Errorf("content[%d]: tool_use needs an id and a name", i)
			}
			args := []byte("{}")
			if !isNull(b.Input) {
				var buf bytes.Buffer
				if json.Compact(&buf, b.Input) != nil || buf.Bytes()[0] != '{' {
					return out, fmt.Errorf("content[%d]: tool_use input must be an object", i)
				}
				args = buf.Bytes()
			}
			tc := chatToolCall{ID: b.ID, Type: "function"}
			tc.Function.Name, tc.Function.Arguments = b.Name, string(args)
			out.ToolCalls = append(out.ToolCalls, tc)
		case "thinking", "redacted_thinking":
			info.drop(DroppedThinking)
		default:
			return out, fmt.Errorf("content[%d]: content block type %q is not supported in an assistant turn over this backend", i, b.Type)
		}
	}
	switch {
	case len(texts) > 0:
		out.Content = quote(strings.Join(texts, "\n"))
	case len(out.ToolCalls) == 0:
		out.Content = quote("")
	}
	return out, nil
}

// chatTools translates tools and tool_choice. Anthropic's own tool types
// (bash, text editor, web search, ...) have no schema to send elsewhere.
func chatTools(out *chatRequest, tools []msgTool, choice *msgToolChoice, info *Info) error {
	for i, t := range tools {
		if t.Type != "" && t.Type != "custom" {
			return invalid("tools[%d]: tool type %q is Anthropic's own and needs an anthropic backend", i, t.Type)
		}
		if t.Name == "" {
			return invalid("tools[%d].name: Field required", i)
		}
		if !isNull(t.CacheControl) {
			info.drop(DroppedCacheControl)
		}
		ct := chatTool{Type: "function"}
		ct.Function.Name, ct.Function.Description = t.Name, t.Description
		ct.Function.Parameters = t.InputSchema
		if isNull(ct.Function.Parameters) {
			ct.Function.Parameters = json.RawMessage(`{"type":"object","properties":{}}`)
		}
		out.Tools = append(out.Tools, ct)
	}
	if choice == nil || len(out.Tools) == 0 {
		return nil // chat refuses a tool_choice without tools
	}
	switch choice.Type {
	case "auto":
		out.ToolChoice = quote("auto")
	case "any":
		out.ToolChoice = quote("required")
	case "none":
		out.ToolChoice = quote("none")
	case "tool":
		if choice.Name == "" {
			return invalid("tool_choice.name: Field required")
		}
		b, _ := json.Marshal(map[string]any{"type": "function", "function": map[string]string{"name": choice.Name}})
		out.ToolChoice = b
	default:
		return invalid("tool_choice.type: %q is not auto, any, tool or none", choice.Type)
	}
	if d := choice.DisableParallelToolUse; d != nil && *d && choice.Type != "none" {
		out.ParallelToolCalls = ptr(false)
	}
	return nil
}

// quote is s as a JSON string.
func quote(s string) json.RawMessage {
	b, _ := json.Marshal(s)
	return b
}

// jsonErr describes a decoding error without echoing the input.
func jsonErr(err error) string {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf("syntax error at byte %d", se.Offset)
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		if te.Field == "" {
			return "the body must be a JSON object"
		}
		return fmt.Sprintf("field %s has the wrong type", te.Field)
	}
	return "cannot decode"
}
