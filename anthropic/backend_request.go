package anthropic

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// This file and the other backend_*.go translate the other way: a chat
// client (chat completions, Responses and Ollama clients, all through
// dso's chat hub) over an Anthropic backend.

// RequestFromChat translates an OpenAI chat-completions body into a
// Messages body. Every system and developer message is joined, in order,
// into system; tool messages become tool_result blocks of a user turn;
// consecutive turns of one role are merged, as Messages alternates roles.
// maxTokens (DefaultMaxTokens when 0) is used when the body sets neither
// max_completion_tokens nor max_tokens, as Anthropic requires one.
func RequestFromChat(body []byte, maxTokens int) ([]byte, Info, error) {
	var in chatRequest
	if err := json.Unmarshal(body, &in); err != nil {
		return nil, Info{}, invalid("invalid chat request: %s", jsonErr(err))
	}
	info := Info{Model: in.Model, Stream: in.Stream, IncludeUsage: in.StreamOptions != nil && in.StreamOptions.IncludeUsage}
	if in.Model == "" {
		return nil, info, invalid("model is required")
	}
	if in.N != nil && *in.N > 1 {
		return nil, info, invalid("n > 1 is not supported by an anthropic backend")
	}
	if maxTokens <= 0 {
		maxTokens = DefaultMaxTokens
	}
	out := msgRequest{Model: in.Model, Stream: in.Stream, TopP: in.TopP, MaxTokens: &maxTokens}
	switch {
	case in.MaxCompletionTokens != nil:
		out.MaxTokens = in.MaxCompletionTokens
	case in.MaxTokens != nil:
		out.MaxTokens = in.MaxTokens
	}
	if *out.MaxTokens < 1 {
		return nil, info, invalid("max_tokens must be at least 1")
	}
	if t := in.Temperature; t != nil {
		out.Temperature = t
		if *t > 1 { // chat's range is 0..2, Anthropic's 0..1
			out.Temperature = ptr(1.0)
			info.drop(DroppedTemperature)
		}
	}
	for _, f := range []json.RawMessage{in.Seed, in.FrequencyPenalty, in.PresencePenalty, in.Logprobs, in.LogitBias} {
		if !isNull(f) {
			info.drop(DroppedSampling)
		}
	}
	if !isNull(in.ReasoningEffort) {
		info.drop(DroppedReasoning)
	}
	if !isNull(in.ServiceTier) {
		info.drop(DroppedServiceTier)
	}
	if err := responseFormat(in.ResponseFormat, &info); err != nil {
		return nil, info, err
	}
	stop, err := stopList(in.Stop)
	if err != nil {
		return nil, info, err
	}
	out.StopSequences, info.StopSequences = stop, stop
	if in.User != "" {
		out.Metadata = &msgMetadata{UserID: in.User}
	}
	if err := messagesFromChat(&out, in.Messages); err != nil {
		return nil, info, err
	}
	if err := toolsFromChat(&out, in.Tools, in.ToolChoice, in.ParallelToolCalls); err != nil {
		return nil, info, err
	}
	b, err := json.Marshal(out)
	return b, info, err
}

// responseFormat: JSON mode is approximated (dropped; the prompt must ask
// for JSON), a schema refused, as Messages has neither.
func responseFormat(raw json.RawMessage, info *Info) error {
	if isNull(raw) {
		return nil
	}
	var rf struct {
		Type string `json:"type"`
	}
	if json.Unmarshal(raw, &rf) != nil {
		return invalid("response_format must be an object")
	}
	switch rf.Type {
	case "", "text":
	case "json_object":
		info.drop(DroppedJSONMode)
	default:
		return invalid("response_format type %q is not supported by an anthropic backend", rf.Type)
	}
	return nil
}

func stopList(raw json.RawMessage) ([]string, error) {
	if isNull(raw) {
		return nil, nil
	}
	var one string
	if json.Unmarshal(raw, &one) == nil {
		return []string{one}, nil
	}
	var many []string
	if json.Unmarshal(raw, &many) != nil {
		return nil, invalid("stop must be a string or a list of strings")
	}
	return many, nil
}

// messagesFromChat fills system and messages.
func messagesFromChat(out *msgRequest, msgs []chatMessage) error {
	var system []string
	var turns []turn
	add := func(role string, blocks []msgBlock) {
		if len(blocks) == 0 {
			return
		}
		if n := len(turns); n > 0 && turns[n-1].role == role {
			turns[n-1].blocks = append(turns[n-1].blocks, blocks...)
			return
		}
		turns = append(turns, turn{role, blocks})
	}
	for i, m := range msgs {
		switch m.Role {
		case "system", "developer":
			text, err := textOf(m.Content)
			if err != nil {
				return invalid("messages[%d]: %v", i, err)
			}
			if text != "" {
				system = append(system, text)
			}
		case "user":
			blocks, err := userBlocks(m.Content)
			if err != nil {
				return invalid("messages[%d]: %v", i, err)
			}
			add("user", blocks)
		case "assistant":
			blocks, err := assistantBlocks(m)
			if err != nil {
				return invalid("messages[%d]: %v", i, err)
			}
			add("assistant", blocks)
		case "tool":
			if m.ToolCallID == "" {
				return invalid("messages[%d]: tool_call_id is required", i)
			}
			text, err := textOf(m.Content)
			if err != nil {
				return invalid("messages[%d]: %v", i, err)
			}
			add("user", []msgBlock{{Type: "tool_result", ToolUseID: m.ToolCallID, Content: quote(text)}})
		default:
			return invalid("messages[%d]: role %q is not supported by an anthropic backend", i, m.Role)
		}
	}
	if len(turns) == 0 {
		return invalid("messages: at least one user or assistant message is required")
	}
	if len(system) > 0 {
		out.System = quote(strings.Join(system, "\n\n"))
	}
	for _, t := range turns {
		b, err := json.Marshal(t.blocks)
		if err != nil {
			return err
		}
		out.Messages = append(out.Messages, msgMessage{Role: t.role, Content: b})
	}
	return nil
}

type turn struct {
	role   string
	blocks []msgBlock
}

// textOf reads chat content that may only be text: a string, or text
// parts joined by newlines.
func textOf(raw json.RawMessage) (string, error) {
	if isNull(raw) {
		return "", nil
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s, nil
	}
	var parts []chatPart
	if json.Unmarshal(raw, &parts) != nil {
		return "", errors.New("content must be a string or a list of parts")
	}
	var texts []string
	for j, p := range parts {
		if p.Type != "text" {
			return "", fmt.Errorf("content[%d]: part type %q is not text", j, p.Type)
		}
		texts = append(texts, p.Text)
	}
	return strings.Join(texts, "\n"), nil
}

// userBlocks translates a user message's content. Empty text is left out:
// Messages refuses empty text blocks.
func userBlocks(raw json.RawMessage) ([]msgBlock, error) {
	if isNull(raw) {
		return nil, nil
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		if s == "" {
			return nil, nil
		}
		return []msgBlock{{Type: "text", Text: s}}, nil
	}
	var parts []chatPart
	if json.Unmarshal(raw, &parts) != nil {
		return nil, errors.New("content must be a string or a list of parts")
	}
	var out []msgBlock
	for j, p := range parts {
		switch p.Type {
		case "text":
			if p.Text != "" {
				out = append(out, msgBlock{Type: "text", Text: p.Text})
			}
		case "image_url":
			if p.ImageURL == nil {
				return nil, fmt.Errorf("content[%d]: image_url is missing", j)
			}
			src, err := imageSource(p.ImageURL.URL)
			if err != nil {
				return nil, fmt.Errorf("content[%d]: %v", j, err)
			}
			out = append(out, msgBlock{Type: "image", Source: src})
		case "file":
			b, err := fileBlock(p)
			if err != nil {
				return nil, fmt.Errorf("content[%d]: %v", j, err)
			}
			out = append(out, b)
		default:
			return nil, fmt.Errorf("content[%d]: part type %q is not supported by an anthropic backend", j, p.Type)
		}
	}
	return out, nil
}

// imageSource is an image URL as a Messages source: base64 for a data:
// URL, else the URL.
func imageSource(u string) (*msgSource, error) {
	if rest, ok := strings.CutPrefix(u, "data:"); ok {
		mt, data, ok := strings.Cut(rest, ";base64,")
		if !ok || mt == "" || data == "" {
			return nil, errors.New("an image data URL must be data:TYPE;base64,DATA")
		}
		return &msgSource{Type: "base64", MediaType: mt, Data: data}, nil
	}
	if strings.HasPrefix(u, "https://") || strings.HasPrefix(u, "http://") {
		return &msgSource{Type: "url", URL: u}, nil
	}
	return nil, errors.New("an image URL must be a data: or http(s) URL")
}

// fileBlock carries a PDF given as a data: URL as a document block.
func fileBlock(p chatPart) (msgBlock, error) {
	if p.File == nil || p.File.FileData == "" {
		return msgBlock{}, errors.New("only files given inline (file_data) can be sent to an anthropic backend")
	}
	src, err := imageSource(p.File.FileData)
	if err != nil || src.Type != "base64" {
		return msgBlock{}, errors.New("file_data must be a data: URL")
	}
	if src.MediaType != "application/pdf" {
		return msgBlock{}, fmt.Errorf("file type %q is not supported by an anthropic backend", src.MediaType)
	}
	return msgBlock{Type: "document", Source: src, Title: p.File.Filename}, nil
}

// assistantBlocks translates an assistant message: text, then its tool
// calls as tool_use blocks. Reasoning is dropped: Anthropic accepts
// thinking back only with the signature it made.
func assistantBlocks(m chatMessage) ([]msgBlock, error) {
	var out []msgBlock
	if !isNull(m.Content) {
		var s string
		if json.Unmarshal(m.Content, &s) != nil {
			var parts []chatPart
			if json.Unmarshal(m.Content, &parts) != nil {
				return nil, errors.New("content must be a string or a list of parts")
			}
			var texts []string
			for _, p := range parts {
				if p.Type == "text" || p.Type == "refusal" {
					texts = append(texts, p.Text)
				}
			}
			s = strings.Join(texts, "\n")
		}
		if s != "" {
			out = append(out, msgBlock{Type: "text", Text: s})
		}
	}
	if len(m.ToolCalls) > maxToolCalls {
		return nil, fmt.Errorf("more than %d tool calls in one message", maxToolCalls)
	}
	for j, tc := range m.ToolCalls {
		if tc.Function.Name == "" {
			return nil, fmt.Errorf("tool_calls[%d]: function name is required", j)
		}
		input, err := argsObject(tc.Function.Arguments)
		if err != nil {
			return nil, fmt.Errorf("tool_calls[%d]: %v", j, err)
		}
		id := tc.ID
		if id == "" {
			id = fmt.Sprintf("toolu_%d", j)
		}
		out = append(out, msgBlock{Type: "tool_use", ID: id, Name: tc.Function.Name, Input: input})
	}
	return out, nil
}

// argsObject is a tool call's arguments string as a JSON object; empty
// arguments are the empty object.
func argsObject(args string) (json.RawMessage, error) {
	t := strings.TrimSpace(args)
	if t == "" {
		return json.RawMessage(`{}`), nil
	}
	var buf bytes.Buffer
	if json.Compact(&buf, []byte(t)) != nil || buf.Bytes()[0] != '{' {
		return nil, errors.New("arguments are not a JSON object")
	}
	return buf.Bytes(), nil
}

// toolsFromChat translates function tools and tool_choice.
func toolsFromChat(out *msgRequest, tools []chatTool, choice json.RawMessage, parallel *bool) error {
	for i, t := range tools {
		if t.Type != "function" {
			return invalid("tools[%d]: tool type %q is not supported by an anthropic backend", i, t.Type)
		}
		if t.Function.Name == "" {
			return invalid("tools[%d]: function name is required", i)
		}
		schema := t.Function.Parameters
		if isNull(schema) {
			schema = json.RawMessage(`{"type":"object","properties":{}}`)
		}
		out.Tools = append(out.Tools, msgTool{Name: t.Function.Name, Description: t.Function.Description, InputSchema: schema})
	}
	if len(out.Tools) == 0 {
		return nil
	}
	var tc *msgToolChoice
	if !isNull(choice) {
		var s string
		if json.Unmarshal(choice, &s) == nil {
			switch s {
			case "auto":
				tc = &msgToolChoice{Type: "auto"}
			case "required":
				tc = &msgToolChoice{Type: "any"}
			case "none":
				tc = &msgToolChoice{Type: "none"}
			default:
				return invalid("tool_choice %q is not auto, required or none", s)
			}
		} else {
			var o struct {
				Type     string `json:"type"`
				Function struct {
					Name string `json:"name"`
				} `json:"function"`
			}
			if json.Unmarshal(choice, &o) != nil || o.Type != "function" || o.Function.Name == "" {
				return invalid("tool_choice must name a function")
			}
			tc = &msgToolChoice{Type: "tool", Name: o.Function.Name}
		}
	}
	if parallel != nil && !*parallel {
		if tc == nil {
			tc = &msgToolChoice{Type: "auto"}
		}
		if tc.Type != "none" {
			tc.DisableParallelToolUse = ptr(true)
		}
	}
	out.ToolChoice = tc
	return nil
}
