package anthropic

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// now is the clock of the created times chat answers carry (tests fix it).
var now = time.Now

// ResponseToChat translates a non-streamed Messages answer into a
// chat.completion body: text blocks joined as the content, thinking as
// reasoning_content, tool_use blocks as tool calls, stop_reason as
// finish_reason, and usage with cache reads counted in prompt_tokens (and
// named in prompt_tokens_details.cached_tokens) as chat counts them.
func ResponseToChat(body []byte, info Info) ([]byte, error) {
	var m msgResponse
	if err := json.Unmarshal(body, &m); err != nil {
		return nil, fmt.Errorf("decoding the Messages answer: %s", jsonErr(err))
	}
	if m.Type != "" && m.Type != "message" {
		return nil, fmt.Errorf("the answer is a %q, not a message", m.Type)
	}
	msg := chatAnswer{Role: "assistant"}
	var text, thinking strings.Builder
	for _, b := range m.Content {
		switch b.Type {
		case "text":
			text.WriteString(b.Text)
		case "thinking":
			thinking.WriteString(b.Thinking)
		case "tool_use":
			if len(msg.ToolCalls) >= maxToolCalls {
				return nil, fmt.Errorf("the answer has more than %d tool calls", maxToolCalls)
			}
			args, err := argsObject(string(b.Input))
			if err != nil {
				return nil, fmt.Errorf("tool_use %d: input: %v", len(msg.ToolCalls), err)
			}
			tc := chatToolCall{ID: b.ID, Type: "function"}
			tc.Function.Name, tc.Function.Arguments = b.Name, string(args)
			msg.ToolCalls = append(msg.ToolCalls, tc)
		}
		// Server tools' blocks (web search and its results) have no
		// chat form; their text answer is in the text blocks.
	}
	if text.Len() > 0 || len(msg.ToolCalls) == 0 {
		msg.Content = ptr(text.String())
	}
	msg.Reasoning = thinking.String()
	model := m.Model
	if model == "" {
		model = info.Model
	}
	fr := finishReason(m.StopReason)
	return json.Marshal(chatAnswerBody{
		ID: m.ID, Object: "chat.completion", Created: now().Unix(), Model: model,
		Choices: []chatAnswerChoice{{Index: 0, Message: msg, FinishReason: fr}},
		Usage:   usageToChat(m.Usage),
	})
}

// chatAnswer is an assistant message or delta as dso writes it: content
// null only beside tool calls, as OpenAI sends it.
type chatAnswer struct {
	Role      string         `json:"role,omitempty"`
	Content   *string        `json:"content"`
	Reasoning string         `json:"reasoning_content,omitempty"`
	ToolCalls []chatToolCall `json:"tool_calls,omitempty"`
}

type chatAnswerChoice struct {
	Index        int        `json:"index"`
	Message      chatAnswer `json:"message"`
	FinishReason string     `json:"finish_reason"`
}

type chatAnswerBody struct {
	ID      string             `json:"id"`
	Object  string             `json:"object"`
	Created int64              `json:"created"`
	Model   string             `json:"model"`
	Choices []chatAnswerChoice `json:"choices"`
	Usage   *chatUsage         `json:"usage,omitempty"`
}

// finishReason maps a stop_reason; pause_turn (a server tool's long turn
// paused) ends the chat answer as a stop.
func finishReason(sr *string) string {
	if sr == nil {
		return "stop"
	}
	switch *sr {
	case "max_tokens", "model_context_window_exceeded":
		return "length"
	case "tool_use":
		return "tool_calls"
	case "refusal":
		return "content_filter"
	}
	return "stop"
}

func usageToChat(u msgUsage) *chatUsage {
	out := &chatUsage{CompletionTokens: u.OutputTokens}
	out.PromptTokens = u.InputTokens
	if c := u.CacheCreationInputTokens; c != nil {
		out.PromptTokens += *c
	}
	if c := u.CacheReadInputTokens; c != nil {
		out.PromptTokens += *c
		out.PromptTokensDetails = &struct {
			CachedTokens int `json:"cached_tokens"`
		}{*c}
	}
	out.TotalTokens = out.PromptTokens + out.CompletionTokens
	return out
}
