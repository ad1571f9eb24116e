package anthropic

import (
	"encoding/json"
	"fmt"
)

// This file translates a chat-completions stream into a Messages stream,
// for an Anthropic client over an OpenAI-compatible or Ollama backend.

// StreamFromChat reads a chat stream, each chat.completion.chunk payload
// in order through events, and emits Messages stream events in
// Anthropic's order: message_start; for each content block (text, or one
// tool call) content_block_start, its deltas (text_delta, or
// input_json_delta with the arguments as they arrive) and
// content_block_stop; message_delta with the stop reason and usage;
// message_stop. An error from events is returned as is, after what came
// before it was emitted, for the caller to end the stream with an error
// event.
func StreamFromChat(events func(fn func(data []byte) error) error, info Info, emit func(event string, data []byte) error) error {
	s := &msgStream{info: info, emit: emit, open: -1, tools: map[int]int{}, ids: map[string]int{}}
	if err := events(s.chunk); err != nil {
		return err
	}
	return s.end()
}

// msgStream is the state of one StreamFromChat.
type msgStream struct {
	info    Info
	emit    func(event string, data []byte) error
	started bool
	open    int            // the index of the open block, or -1
	text    bool           // the open block is text
	blocks  int            // blocks started
	tools   map[int]int    // chat tool call index → block index
	ids     map[string]int // tool call id → chat index, for fragments without an index
	last    int            // the chat index of the newest tool call
	finish  *string
	stop    json.RawMessage // vLLM's stop_reason
	usage   *chatUsage
}

func (s *msgStream) chunk(data []byte) error {
	var c chatResponse
	if err := json.Unmarshal(data, &c); err != nil {
		return fmt.Errorf("decoding the chat stream: %s", jsonErr(err))
	}
	if err := s.start(c.ID, c.Model); err != nil {
		return err
	}
	if c.Usage != nil {
		s.usage = c.Usage
	}
	for _, ch := range c.Choices {
		if ch.Index != 0 {
			continue // dso asks for one choice
		}
		if ch.FinishReason != nil {
			s.finish, s.stop = ch.FinishReason, ch.StopReason
		}
		if ch.Delta == nil {
			continue
		}
		if t := partsText(ch.Delta.Content); t != "" {
			if err := s.textDelta(t); err != nil {
				return err
			}
		}
		for _, tc := range ch.Delta.ToolCalls {
			if err := s.toolDelta(tc); err != nil {
				return err
			}
		}
	}
	return nil
}

// start emits message_start once, with the first chunk's id and model.
// A chat stream tells usage only at its end: input_tokens follow in
// message_delta.
func (s *msgStream) start(id, model string) error {
	if s.started {
		return nil
	}
	s.started = true
	if model == "" {
		model = s.info.Model
	}
	m := msgResponse{ID: messageID(id), Type: "message", Role: "assistant", Model: model, Content: []msgBlock{}}
	return s.send("message_start", struct {
		Type    string      `json:"type"`
		Message msgResponse `json:"message"`
	}{"message_start", m})
}

func (s *msgStream) textDelta(t string) error {
	if s.open < 0 || !s.text {
		if err := s.startBlock(json.RawMessage(`{"type":"text","text":""}`)); err != nil {
			return err
		}
		s.text = true
	}
	return s.delta(s.open, blockDelta{Type: "text_delta", Text: &t})
}

// toolDelta opens a tool_use block for each new tool call and streams its
// arguments. A fragment without an index (servers that send each call
// whole) continues the call its id names, or with a new id starts the
// next one, or with neither continues the newest.
func (s *msgStream) toolDelta(tc chatToolCall) error {
	idx := s.last
	if i, ok := s.ids[tc.ID]; ok && tc.Index == nil {
		idx = i
	} else if tc.Index != nil {
		idx = *tc.Index
	} else if tc.ID != "" || len(s.tools) == 0 {
		idx = len(s.tools)
	}
	if idx < 0 || idx >= maxToolCalls {
		return fmt.Errorf("tool call index %d is outside 0..%d", idx, maxToolCalls-1)
	}
	s.last = idx
	block, ok := s.tools[idx]
	if !ok {
		id := tc.ID
		if id == "" {
			id = newID("toolu_")
		}
		start, _ := json.Marshal(struct {
			Type  string          `json:"type"`
			ID    string          `json:"id"`
			Name  string          `json:"name"`
			Input json.RawMessage `json:"input"`
		}{"tool_use", id, tc.Function.Name, json.RawMessage(`{}`)})
		if err := s.startBlock(start); err != nil {
			return err
		}
		s.text = false
		block = s.open
		s.tools[idx] = block
		s.ids[id] = idx
	}
	if tc.Function.Arguments == "" {
		return nil
	}
	// A fragment for a call whose block was closed (servers that
	// interleave calls) goes to that block's index, which SDKs accept.
	return s.delta(block, blockDelta{Type: "input_json_delta", PartialJSON: &tc.Function.Arguments})
}

// startBlock closes the open block and starts the next one.
func (s *msgStream) startBlock(block json.RawMessage) error {
	if err := s.stopBlock(); err != nil {
		return err
	}
	if s.blocks >= maxBlocks {
		return fmt.Errorf("the answer has more than %d content blocks", maxBlocks)
	}
	s.open = s.blocks
	s.blocks++
	return s.send("content_block_start", struct {
		Type         string          `json:"type"`
		Index        int             `json:"index"`
		ContentBlock json.RawMessage `json:"content_block"`
	}{"content_block_start", s.open, block})
}

func (s *msgStream) stopBlock() error {
	if s.open < 0 {
		return nil
	}
	i := s.open
	s.open = -1
	return s.send("content_block_stop", struct {
		Type  string `json:"type"`
		Index int    `json:"index"`
	}{"content_block_stop", i})
}

// blockDelta is the delta of a content_block_delta event.
type blockDelta struct {
	Type        string  `json:"type"`
	Text        *string `json:"text,omitempty"`
	PartialJSON *string `json:"partial_json,omitempty"`
	Thinking    *string `json:"thinking,omitempty"`
	Signature   *string `json:"signature,omitempty"`
}

func (s *msgStream) delta(index int, d blockDelta) error {
	return s.send("content_block_delta", struct {
		Type  string     `json:"type"`
		Index int        `json:"index"`
		Delta blockDelta `json:"delta"`
	}{"content_block_delta", index, d})
}

// end closes the open block and the message.
func (s *msgStream) end() error {
	if err := s.start("", ""); err != nil {
		return err
	}
	if err := s.stopBlock(); err != nil {
		return err
	}
	reason, seq := stopReason(s.finish, s.stop, len(s.tools) > 0, s.info)
	u := usageFromChat(s.usage)
	usage := struct {
		InputTokens          *int `json:"input_tokens,omitempty"`
		OutputTokens         int  `json:"output_tokens"`
		CacheReadInputTokens *int `json:"cache_read_input_tokens,omitempty"`
	}{OutputTokens: u.OutputTokens, CacheReadInputTokens: u.CacheReadInputTokens}
	if s.usage != nil {
		usage.InputTokens = &u.InputTokens
	}
	err := s.send("message_delta", struct {
		Type  string `json:"type"`
		Delta struct {
			StopReason   string  `json:"stop_reason"`
			StopSequence *string `json:"stop_sequence"`
		} `json:"delta"`
		Usage any `json:"usage"`
	}{Type: "message_delta", Delta: struct {
		StopReason   string  `json:"stop_reason"`
		StopSequence *string `json:"stop_sequence"`
	}{reason, seq}, Usage: usage})
	if err != nil {
		return err
	}
	return s.send("message_stop", struct {
		Type string `json:"type"`
	}{"message_stop"})
}

func (s *msgStream) send(event string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return s.emit(event, b)
}
