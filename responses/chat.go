package responses

import (
	"encoding/json"
)

// chatRequest is the chat-completions body ToChat writes, fields in a
// fixed order.
type chatRequest struct {
	Model             string          `json:"model"`
	Messages          []chatMessage   `json:"messages"`
	Tools             []chatTool      `json:"tools,omitempty"`
	ToolChoice        json.RawMessage `json:"tool_choice,omitempty"`
	ParallelToolCalls *bool           `json:"parallel_tool_calls,omitempty"`
	ResponseFormat    json.RawMessage `json:"response_format,omitempty"`
	MaxTokens         *int            `json:"max_tokens,omitempty"`
	Temperature       *float64        `json:"temperature,omitempty"`
	TopP              *float64        `json:"top_p,omitempty"`
	User              string          `json:"user,omitempty"`
	PromptCacheKey    string          `json:"prompt_cache_key,omitempty"`
	Stream            bool            `json:"stream,omitempty"`
	StreamOptions     *streamOptions  `json:"stream_options,omitempty"`
}

type streamOptions struct {
	IncludeUsage bool `json:"include_usage"`
}

type chatTool struct {
	Type     string       `json:"type"`
	Function chatFunction `json:"function"`
}

type chatFunction struct {
	Name        string          `json:"name"`
	Description string          `json:"description,omitempty"`
	Parameters  json.RawMessage `json:"parameters,omitempty"`
	Strict      *bool           `json:"strict,omitempty"`
}

// ToChat translates r into a chat-completions body: the instructions as
// the first system message, then the conversation's items as messages,
// history (the turns before, from previous_response_id) first, then this
// request's input items. The same items always give the same messages, so
// a conversation's next request extends the last one's prefix.
func ToChat(r *Request, history, input []json.RawMessage) ([]byte, error) {
	if len(history)+len(input) > MaxItems {
		return nil, badRequest("the conversation has more than %d items", MaxItems)
	}
	out := chatRequest{Model: r.Model, Temperature: r.Temperature, TopP: r.TopP, MaxTokens: r.MaxOutputTokens,
		ParallelToolCalls: r.ParallelToolCalls, User: r.User, PromptCacheKey: r.PromptCacheKey, Stream: r.Stream}
	if r.Stream {
		out.StreamOptions = &streamOptions{IncludeUsage: true}
	}
	if !isNull(r.Instructions) {
		var s string
		if json.Unmarshal(r.Instructions, &s) != nil {
			return nil, badRequest("instructions must be a string")
		}
		if s != "" {
			c, _ := json.Marshal(s)
			out.Messages = append(out.Messages, chatMessage{Role: "system", Content: c})
		}
	}
	for _, items := range [][]json.RawMessage{history, input} {
		for i, raw := range items {
			var it item
			if err := json.Unmarshal(raw, &it); err != nil {
				return nil, badRequest("input[%d] is not an item", i)
			}
			var err error
			if out.Messages, err = chatMessages(out.Messages, it, i); err != nil {
				return nil, err
			}
		}
	}
	if len(out.Messages) == 0 {
		return nil, badRequest("input has no messages")
	}
	var err error
	if out.Tools, err = chatTools(r.Tools); err != nil {
		return nil, err
	}
	if out.ToolChoice, err = chatToolChoice(r.ToolChoice); err != nil {
		return nil, err
	}
	if out.ResponseFormat, err = chatFormat(r.Text); err != nil {
		return nil, err
	}
	return json.Marshal(out)
}

// chatTools translates function tools, flat in Responses
// ({type, name, parameters}), nested in chat. Hosted tools (web search,
// file search, computer use, ...) run at OpenAI: refused.
func chatTools(raw json.RawMessage) ([]chatTool, error) {
	if isNull(raw) {
		return nil, nil
	}
	var tools []struct {
		Type        string          `json:"type"`
		Name        string          `json:"name"`
		Description string          `json:"description"`
		Parameters  json.RawMessage `json:"parameters"`
		Strict      *bool           `json:"strict"`
	}
	if err := json.Unmarshal(raw, &tools); err != nil {
		return nil, badRequest("tools must be a list of tools")
	}
	if len(tools) > MaxTools {
		return nil, badRequest("tools has more than %d tools", MaxTools)
	}
	out := make([]chatTool, 0, len(tools))
	for i, t := range tools {
		if t.Type != "function" {
			return nil, badRequest("tools[%d]: tools of type %q run at OpenAI and are not supported by this backend; only function tools are", i, t.Type)
		}
		if t.Name == "" {
			return nil, badRequest("tools[%d]: name is required", i)
		}
		params := t.Parameters
		if isNull(params) {
			params = nil
		}
		out = append(out, chatTool{Type: "function", Function: chatFunction{Name: t.Name, Description: t.Description, Parameters: params, Strict: t.Strict}})
	}
	return out, nil
}

// chatToolChoice translates tool_choice: the modes stay as they are, a
// named function is nested as chat names it.
func chatToolChoice(raw json.RawMessage) (json.RawMessage, error) {
	if isNull(raw) {
		return nil, nil
	}
	var mode string
	if json.Unmarshal(raw, &mode) == nil {
		switch mode {
		case "auto", "none", "required":
			return raw, nil
		}
		return nil, badRequest("tool_choice must be auto, none, required or a function")
	}
	var c struct {
		Type string `json:"type"`
		Name string `json:"name"`
	}
	if json.Unmarshal(raw, &c) != nil || c.Type != "function" || c.Name == "" {
		return nil, badRequest("tool_choice: only {\"type\":\"function\",\"name\":...} is supported by this backend")
	}
	return json.Marshal(map[string]any{"type": "function", "function": map[string]string{"name": c.Name}})
}

// chatFormat translates text.format into response_format.
func chatFormat(raw json.RawMessage) (json.RawMessage, error) {
	if isNull(raw) {
		return nil, nil
	}
	var t struct {
		Format *struct {
			Type        string          `json:"type"`
			Name        string          `json:"name"`
			Description string          `json:"description"`
			Schema      json.RawMessage `json:"schema"`
			Strict      *bool           `json:"strict"`
		} `json:"format"`
	}
	if err := json.Unmarshal(raw, &t); err != nil {
		return nil, badRequest("text must be an object")
	}
	if t.Format == nil {
		return nil, nil
	}
	switch f := t.Format; f.Type {
	case "", "text":
		return nil, nil
	case "json_object":
		return json.RawMessage(`{"type":"json_object"}`), nil
	case "json_schema":
		if isNull(f.Schema) {
			return nil, badRequest("text.format.schema is required")
		}
		name := f.Name
		if name == "" {
			name = "response"
		}
		js := map[string]any{"name": name, "schema": f.Schema}
		if f.Description != "" {
			js["description"] = f.Description
		}
		if f.Strict != nil {
			js["strict"] = *f.Strict
		}
		return json.Marshal(map[string]any{"type": "json_schema", "json_schema": js})
	default:
		return nil, badRequest("text.format.type %q is not supported", f.Type)
	}
}
