package anthropic

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// This file translates a chat-completions answer into a Messages one, for
// an Anthropic client over an OpenAI-compatible or Ollama backend.

// ResponseFromChat translates a non-streamed chat.completion body into a
// Messages answer: the text as a text block, each tool call as a tool_use
// block with its arguments parsed, the finish reason as stop_reason, and
// usage with cached prompt tokens as cache_read_input_tokens (Anthropic's
// input_tokens leave them out; chat's prompt_tokens count them).
func ResponseFromChat(body []byte, info Info) ([]byte, error) {
	var r chatResponse
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, fmt.Errorf("decoding the chat answer: %s", jsonErr(err))
	}
	if len(r.Choices) == 0 || r.Choices[0].Message == nil {
		return nil, errors.New("the chat answer has no choices")
	}
	c := r.Choices[0]
	m := c.Message
	out := msgResponse{ID: messageID(r.ID), Type: "message", Role: "assistant", Model: r.Model, Content: []msgBlock{}}
	if out.Model == "" {
		out.Model = info.Model
	}
	if text := partsText(m.Content); text != "" {
		out.Content = append(out.Content, msgBlock{Type: "text", Text: text})
	}
	if len(m.ToolCalls) > maxToolCalls {
		return nil, fmt.Errorf("the chat answer has more than %d tool calls", maxToolCalls)
	}
	for i, tc := range m.ToolCalls {
		input, err := argsObject(tc.Function.Arguments)
		if err != nil {
			return nil, fmt.Errorf("tool call %d: %v", i, err)
		}
		id := tc.ID
		if id == "" {
			id = newID("toolu_")
		}
		out.Content = append(out.Content, msgBlock{Type: "tool_use", ID: id, Name: tc.Function.Name, Input: input})
	}
	reason, seq := stopReason(c.FinishReason, c.StopReason, len(m.ToolCalls) > 0, info)
	out.StopReason, out.StopSequence = &reason, seq
	out.Usage = usageFromChat(r.Usage)
	return json.Marshal(out)
}

// messageID is a chat answer's id as a Messages id.
func messageID(id string) string {
	if id == "" {
		return newID("msg_")
	}
	return "msg_" + strings.TrimPrefix(id, "chatcmpl-")
}

// stopReason maps a finish reason. A stop by one of the request's stop
// sequences is known where the backend names it (vLLM's stop_reason); a
// stop with tool calls is tool_use, whatever the backend said, as the
// client runs tools on tool_use.
func stopReason(finish *string, backendStop json.RawMessage, tools bool, info Info) (string, *string) {
	fr := ""
	if finish != nil {
		fr = *finish
	}
	switch {
	case tools && (fr == "" || fr == "stop" || fr == "tool_calls" || fr == "function_call"):
		return "tool_use", nil
	case fr == "length":
		return "max_tokens", nil
	case fr == "tool_calls", fr == "function_call":
		return "tool_use", nil
	case fr == "content_filter":
		return "refusal", nil
	}
	var s string
	if json.Unmarshal(backendStop, &s) == nil && s != "" {
		for _, seq := range info.StopSequences {
			if seq == s {
				return "stop_sequence", &s
			}
		}
	}
	return "end_turn", nil
}

func usageFromChat(u *chatUsage) msgUsage {
	if u == nil {
		return msgUsage{}
	}
	out := msgUsage{InputTokens: u.PromptTokens, OutputTokens: u.CompletionTokens}
	if d := u.PromptTokensDetails; d != nil {
		cached := min(max(d.CachedTokens, 0), u.PromptTokens)
		out.InputTokens -= cached
		out.CacheReadInputTokens = &cached
	}
	return out
}

// partsText reads chat content: a string, or its text parts joined.
func partsText(raw json.RawMessage) string {
	if isNull(raw) {
		return ""
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var parts []chatPart
	if json.Unmarshal(raw, &parts) != nil {
		return ""
	}
	var b strings.Builder
	for _, p := range parts {
		if p.Type == "text" {
			b.WriteString(p.Text)
		}
	}
	return b.String()
}
