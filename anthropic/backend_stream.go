package anthropic

import (
	"encoding/json"
	"fmt"
	"io"
)

// StreamToChat reads a Messages stream (SSE with named events) and emits
// the payloads of an OpenAI chat stream (without "data: " framing) as
// the events arrive: a first chunk with the role, text and thinking
// deltas as content and reasoning_content, each tool_use block as a tool
// call whose arguments follow its input_json_delta fragments, a chunk with
// the finish reason at message_delta, the usage chunk when the client
// asked for it (Info.IncludeUsage), then "[DONE]". An error event is
// returned as a *StreamError; a stream that ends before message_stop as
// io.ErrUnexpectedEOF, after what came before was emitted.
func StreamToChat(src io.Reader, info Info, emit func(data []byte) error) error {
	s := &chatStream{info: info, emit: emit, model: info.Model, tools: map[int]int{}}
	return readSSE(src, s.event)
}

// chatStream is the state of one StreamToChat.
type chatStream struct {
	info    Info
	emit    func([]byte) error
	id      string
	model   string
	created int64
	tools   map[int]int // block index → chat tool call index
	usage   msgUsage
}

// streamEvent is any Messages stream event; which fields are set depends
// on Type.
type streamEvent struct {
	Type         string       `json:"type"`
	Message      *msgResponse `json:"message"`
	Index        int          `json:"index"`
	ContentBlock *msgBlock    `json:"content_block"`
	Delta        *struct {
		Type        string  `json:"type"`
		Text        string  `json:"text"`
		PartialJSON string  `json:"partial_json"`
		Thinking    string  `json:"thinking"`
		StopReason  *string `json:"stop_reason"`
	} `json:"delta"`
	Usage *struct {
		InputTokens              *int `json:"input_tokens"`
		OutputTokens             *int `json:"output_tokens"`
		CacheCreationInputTokens *int `json:"cache_creation_input_tokens"`
		CacheReadInputTokens     *int `json:"cache_read_input_tokens"`
	} `json:"usage"`
	Error *struct {
		Type    string `json:"type"`
		Message string `json:"message"`
	} `json:"error"`
}

func (s *chatStream) event(name string, data []byte) (bool, error) {
	var ev streamEvent
	if err := json.Unmarshal(data, &ev); err != nil {
		return false, fmt.Errorf("decoding the Messages stream: %s", jsonErr(err))
	}
	if ev.Type == "" {
		ev.Type = name
	}
	switch ev.Type {
	case "message_start":
		return false, s.messageStart(ev)
	case "content_block_start":
		return false, s.blockStart(ev)
	case "content_block_delta":
		return false, s.blockDelta(ev)
	case "message_delta":
		return false, s.messageDelta(ev)
	case "message_stop":
		if s.info.IncludeUsage {
			if err := s.send(nil, nil, usageToChat(s.usage)); err != nil {
				return true, err
			}
		}
		return true, s.emit([]byte("[DONE]"))
	case "error":
		se := &StreamError{Type: "api_error", Message: "the backend failed"}
		if ev.Error != nil {
			se.Type, se.Message = ev.Error.Type, ev.Error.Message
		}
		return true, se
	}
	// ping, content_block_stop, and events added after this was written.
	return false, nil
}

func (s *chatStream) messageStart(ev streamEvent) error {
	s.created = now().Unix()
	if m := ev.Message; m != nil {
		s.id = m.ID
		if m.Model != "" {
			s.model = m.Model
		}
		s.usage = m.Usage
	}
	if s.id == "" {
		s.id = newID("msg_")
	}
	return s.send(&chatDelta{Role: "assistant", Content: ptr("")}, nil, nil)
}

func (s *chatStream) blockStart(ev streamEvent) error {
	b := ev.ContentBlock
	if b == nil {
		return nil
	}
	switch b.Type {
	case "tool_use":
		if len(s.tools) >= maxToolCalls {
			return fmt.Errorf("the answer has more than %d tool calls", maxToolCalls)
		}
		i := len(s.tools)
		s.tools[ev.Index] = i
		tc := chatToolCall{Index: &i, ID: b.ID, Type: "function"}
		tc.Function.Name = b.Name
		return s.send(&chatDelta{ToolCalls: []chatToolCall{tc}}, nil, nil)
	case "text":
		if b.Text != "" {
			return s.send(&chatDelta{Content: &b.Text}, nil, nil)
		}
	}
	return nil
}

func (s *chatStream) blockDelta(ev streamEvent) error {
	d := ev.Delta
	if d == nil {
		return nil
	}
	switch d.Type {
	case "text_delta":
		return s.send(&chatDelta{Content: &d.Text}, nil, nil)
	case "thinking_delta":
		return s.send(&chatDelta{Reasoning: d.Thinking}, nil, nil)
	case "input_json_delta":
		i, ok := s.tools[ev.Index]
		if !ok || d.PartialJSON == "" {
			return nil // a server tool's input: no chat form
		}
		tc := chatToolCall{Index: &i}
		tc.Function.Arguments = d.PartialJSON
		return s.send(&chatDelta{ToolCalls: []chatToolCall{tc}}, nil, nil)
	}
	return nil // signature_delta, citations_delta
}

// messageDelta ends the answer: its usage counts are whole-message totals.
func (s *chatStream) messageDelta(ev streamEvent) error {
	if u := ev.Usage; u != nil {
		if u.OutputTokens != nil {
			s.usage.OutputTokens = *u.OutputTokens
		}
		if u.InputTokens != nil {
			s.usage.InputTokens = *u.InputTokens
		}
		if u.CacheCreationInputTokens != nil {
			s.usage.CacheCreationInputTokens = u.CacheCreationInputTokens
		}
		if u.CacheReadInputTokens != nil {
			s.usage.CacheReadInputTokens = u.CacheReadInputTokens
		}
	}
	var sr *string
	if ev.Delta != nil {
		sr = ev.Delta.StopReason
	}
	fr := finishReason(sr)
	return s.send(&chatDelta{}, &fr, nil)
}

// chatDelta is a chunk's delta: only what changed.
type chatDelta struct {
	Role      string         `json:"role,omitempty"`
	Content   *string        `json:"content,omitempty"`
	Reasoning string         `json:"reasoning_content,omitempty"`
	ToolCalls []chatToolCall `json:"tool_calls,omitempty"`
}

type chunkChoice struct {
	Index        int       `json:"index"`
	Delta        chatDelta `json:"delta"`
	FinishReason *string   `json:"finish_reason"`
}

// send emits one chunk: a delta with its finish reason, or (delta nil)
// the usage chunk, whose choices are empty.
func (s *chatStream) send(d *chatDelta, finish *string, usage *chatUsage) error {
	if s.id == "" {
		s.id, s.created = newID("msg_"), now().Unix()
	}
	choices := []chunkChoice{}
	if d != nil {
		choices = append(choices, chunkChoice{Delta: *d, FinishReason: finish})
	}
	b, err := json.Marshal(struct {
		ID      string        `json:"id"`
		Object  string        `json:"object"`
		Created int64         `json:"created"`
		Model   string        `json:"model"`
		Choices []chunkChoice `json:"choices"`
		Usage   *chatUsage    `json:"usage,omitempty"`
	}{s.id, "chat.completion.chunk", s.created, s.model, choices, usage})
	if err != nil {
		return err
	}
	return s.emit(b)
}
