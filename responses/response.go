package responses

import (
	"encoding/json"
	"fmt"
	"time"
)

// Response is a response object as the Responses API returns it.
type Response struct {
	ID                 string          `json:"id"`
	Object             string          `json:"object"`
	CreatedAt          int64           `json:"created_at"`
	Status             string          `json:"status"`
	Background         bool            `json:"background"`
	Error              *Error          `json:"error"`
	IncompleteDetails  *Incomplete     `json:"incomplete_details"`
	Instructions       json.RawMessage `json:"instructions"`
	MaxOutputTokens    *int            `json:"max_output_tokens"`
	Metadata           json.RawMessage `json:"metadata"`
	Model              string          `json:"model"`
	Output             []any           `json:"output"`
	ParallelToolCalls  bool            `json:"parallel_tool_calls"`
	PreviousResponseID *string         `json:"previous_response_id"`
	Store              bool            `json:"store"`
	Temperature        float64         `json:"temperature"`
	Text               json.RawMessage `json:"text"`
	ToolChoice         json.RawMessage `json:"tool_choice"`
	Tools              json.RawMessage `json:"tools"`
	TopP               float64         `json:"top_p"`
	Truncation         string          `json:"truncation"`
	Usage              *Usage          `json:"usage"`
	User               *string         `json:"user,omitempty"`
}

// Error is a failed response's error.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Incomplete says why a response stopped early.
type Incomplete struct {
	Reason string `json:"reason"`
}

// Usage counts a response's tokens.
type Usage struct {
	InputTokens        int `json:"input_tokens"`
	InputTokensDetails struct {
		CachedTokens int `json:"cached_tokens"`
	} `json:"input_tokens_details"`
	OutputTokens        int `json:"output_tokens"`
	OutputTokensDetails struct {
		ReasoningTokens int `json:"reasoning_tokens"`
	} `json:"output_tokens_details"`
	TotalTokens int `json:"total_tokens"`
}

// Message is an assistant message output item.
type Message struct {
	Type    string       `json:"type"`
	ID      string       `json:"id"`
	Status  string       `json:"status"`
	Role    string       `json:"role"`
	Content []OutputText `json:"content"`
}

// OutputText is a message's text part.
type OutputText struct {
	Type        string `json:"type"`
	Text        string `json:"text"`
	Annotations []any  `json:"annotations"`
	Logprobs    []any  `json:"logprobs"`
}

// FunctionCall is a function call output item.
type FunctionCall struct {
	Type      string `json:"type"`
	ID        string `json:"id"`
	CallID    string `json:"call_id"`
	Name      string `json:"name"`
	Arguments string `json:"arguments"`
	Status    string `json:"status"`
}

func newOutputText(text string) OutputText {
	return OutputText{Type: "output_text", Text: text, Annotations: []any{}, Logprobs: []any{}}
}

// New is the response to r, in progress and with no output yet: every
// setting of the request echoed, with the API's defaults for those it
// left out.
func New(r *Request, id string, created time.Time) *Response {
	resp := &Response{
		ID: id, Object: "response", CreatedAt: created.Unix(), Status: "in_progress", Model: r.Model,
		Instructions: orJSON(r.Instructions, "null"), MaxOutputTokens: r.MaxOutputTokens,
		Metadata: orJSON(r.Metadata, "{}"), Output: []any{}, ParallelToolCalls: r.ParallelToolCalls == nil || *r.ParallelToolCalls,
		Store: r.Stored(), Temperature: 1, TopP: 1, Text: orJSON(r.Text, `{"format":{"type":"text"}}`),
		ToolChoice: orJSON(r.ToolChoice, `"auto"`), Tools: orJSON(r.Tools, "[]"), Truncation: "disabled",
	}
	if r.Temperature != nil {
		resp.Temperature = *r.Temperature
	}
	if r.TopP != nil {
		resp.TopP = *r.TopP
	}
	if r.PreviousResponseID != "" {
		p := r.PreviousResponseID
		resp.PreviousResponseID = &p
	}
	if r.User != "" {
		u := r.User
		resp.User = &u
	}
	return resp
}

func orJSON(raw json.RawMessage, def string) json.RawMessage {
	if isNull(raw) {
		return json.RawMessage(def)
	}
	return raw
}

// chat answer shapes, only what translation reads.
type chatAnswer struct {
	Model   string       `json:"model"`
	Choices []chatChoice `json:"choices"`
	Usage   *chatUsage   `json:"usage"`
}

type chatChoice struct {
	Index        int        `json:"index"`
	Message      *chatReply `json:"message"`
	Delta        *chatReply `json:"delta"`
	FinishReason *string    `json:"finish_reason"`
}

type chatReply struct {
	Content   json.RawMessage `json:"content"`
	Refusal   string          `json:"refusal"`
	ToolCalls []struct {
		Index    *int   `json:"index"`
		ID       string `json:"id"`
		Function struct {
			Name      string `json:"name"`
			Arguments string `json:"arguments"`
		} `json:"function"`
	} `json:"tool_calls"`
}

type chatUsage struct {
	PromptTokens        int `json:"prompt_tokens"`
	CompletionTokens    int `json:"completion_tokens"`
	TotalTokens         int `json:"total_tokens"`
	PromptTokensDetails *struct {
		CachedTokens int `json:"cached_tokens"`
	} `json:"prompt_tokens_details"`
	CompletionTokensDetails *struct {
		ReasoningTokens int `json:"reasoning_tokens"`
	} `json:"completion_tokens_details"`
}

func (u *chatUsage) usage() *Usage {
	if u == nil {
		return nil
	}
	out := &Usage{InputTokens: u.PromptTokens, OutputTokens: u.CompletionTokens, TotalTokens: u.TotalTokens}
	if out.TotalTokens == 0 {
		out.TotalTokens = u.PromptTokens + u.CompletionTokens
	}
	if d := u.PromptTokensDetails; d != nil {
		out.InputTokensDetails.CachedTokens = d.CachedTokens
	}
	if d := u.CompletionTokensDetails; d != nil {
		out.OutputTokensDetails.ReasoningTokens = d.ReasoningTokens
	}
	return out
}

// contentText is a chat message's content as text: a string, or its text
// parts joined.
func contentText(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var parts []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	_ = json.Unmarshal(raw, &parts)
	for _, p := range parts {
		if p.Type == "text" {
			s += p.Text
		}
	}
	return s
}

// finish sets the response's status from a chat finish reason.
func (r *Response) finish(reason string) {
	switch reason {
	case "length":
		r.Status, r.IncompleteDetails = "incomplete", &Incomplete{Reason: "max_output_tokens"}
	case "content_filter":
		r.Status, r.IncompleteDetails = "incomplete", &Incomplete{Reason: "content_filter"}
	default:
		r.Status = "completed"
	}
}

// FromChat completes resp (from New) with a whole chat.completion answer:
// its text as a message item, its tool calls as function_call items, its
// usage, and the status its finish reason implies.
func FromChat(resp *Response, body []byte) error {
	var a chatAnswer
	if err := json.Unmarshal(body, &a); err != nil {
		return fmt.Errorf("decoding the chat answer: %w", err)
	}
	if len(a.Choices) == 0 || a.Choices[0].Message == nil {
		return fmt.Errorf("the chat answer has no choices")
	}
	c := a.Choices[0]
	status := "completed"
	if c.FinishReason != nil && *c.FinishReason == "length" {
		status = "incomplete"
	}
	if text := contentText(c.Message.Content); text != "" || len(c.Message.ToolCalls) == 0 {
		resp.Output = append(resp.Output, Message{Type: "message", ID: NewID("msg"), Status: status, Role: "assistant", Content: []OutputText{newOutputText(text)}})
	}
	for _, tc := range c.Message.ToolCalls {
		callID := tc.ID
		if callID == "" {
			callID = NewID("call")
		}
		resp.Output = append(resp.Output, FunctionCall{Type: "function_call", ID: NewID("fc"), CallID: callID, Name: tc.Function.Name, Arguments: tc.Function.Arguments, Status: "completed"})
	}
	resp.Usage = a.Usage.usage()
	reason := ""
	if c.FinishReason != nil {
		reason = *c.FinishReason
	}
	resp.finish(reason)
	return nil
}

// OutputItems is the response's output as items, for the conversation a
// later request continues.
func (r *Response) OutputItems() ([]json.RawMessage, error) {
	out := make([]json.RawMessage, 0, len(r.Output))
	for _, it := range r.Output {
		b, err := json.Marshal(it)
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, nil
}

// Fail marks the response failed with code and message.
func (r *Response) Fail(code, msg string) {
	r.Status, r.Error = "failed", &Error{Code: code, Message: msg}
}
