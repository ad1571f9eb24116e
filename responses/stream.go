package responses

import (
	"encoding/json"
	"fmt"
	"strings"
)

// maxToolCalls bounds the tool calls of one streamed answer, so that a
// hostile index cannot make dso allocate without limit.
const maxToolCalls = 128

// Emit writes one named event of the stream.
type Emit func(event string, payload []byte) error

// Stream turns a chat answer's chunks into the Responses event stream:
// response.created and response.in_progress, then for each output item
// output_item.added, its deltas and its .done events, output_item.done,
// and at the end response.completed (or .incomplete, or .failed), every
// event numbered by sequence_number. Text and tool calls of one answer
// are both kept, each its own item, in the order they came.
type Stream struct {
	resp *Response
	emit Emit
	seq  int

	open     openItem // the item being streamed; kind 0 when none
	tools    []int    // chat tool call index → output index, -1 before it opened
	finished string   // the chat finish reason
	usage    *Usage
}

type openItem struct {
	kind  int // 0 none, itemText, itemCall
	index int // output index
	id    string
	text  strings.Builder // the text, or the call's arguments
	call  FunctionCall
	chat  int // a call's chat tool index
}

const (
	itemText = 1 + iota
	itemCall
)

// NewStream returns a stream for resp (from New), writing through emit.
func NewStream(resp *Response, emit Emit) *Stream {
	return &Stream{resp: resp, emit: emit}
}

// send emits one event: v's fields with type and sequence_number first.
func (s *Stream) send(typ string, fields map[string]any) error {
	fields["type"] = typ
	fields["sequence_number"] = s.seq
	s.seq++
	b, err := json.Marshal(fields)
	if err != nil {
		return err
	}
	return s.emit(typ, b)
}

// Start sends response.created and response.in_progress.
func (s *Stream) Start() error {
	if err := s.send("response.created", map[string]any{"response": s.resp}); err != nil {
		return err
	}
	return s.send("response.in_progress", map[string]any{"response": s.resp})
}

// Chunk takes one chat.completion.chunk payload.
func (s *Stream) Chunk(data []byte) error {
	var c chatAnswer
	if err := json.Unmarshal(data, &c); err != nil {
		return fmt.Errorf("decoding the chat stream: %w", err)
	}
	if c.Usage != nil {
		s.usage = c.Usage.usage()
	}
	for _, ch := range c.Choices {
		if ch.Index != 0 {
			continue // one answer only: n > 1 is not translated
		}
		if ch.FinishReason != nil && *ch.FinishReason != "" {
			s.finished = *ch.FinishReason
		}
		if ch.Delta == nil {
			continue
		}
		if text := contentText(ch.Delta.Content); text != "" {
			if err := s.text(text); err != nil {
				return err
			}
		}
		for _, tc := range ch.Delta.ToolCalls {
			i := len(s.tools)
			if tc.Index != nil {
				i = *tc.Index
			} else if tc.ID == "" && i > 0 {
				i-- // a continuation without an index
			}
			if err := s.toolDelta(i, tc.ID, tc.Function.Name, tc.Function.Arguments); err != nil {
				return err
			}
		}
	}
	return nil
}

// text streams a piece of text, opening a message item if none is open.
func (s *Stream) text(t string) error {
	if s.open.kind != itemText {
		if err := s.closeOpen(); err != nil {
			return err
		}
		s.open = openItem{kind: itemText, index: len(s.resp.Output), id: NewID("msg")}
		s.resp.Output = append(s.resp.Output, nil) // its place, filled when done
		item := Message{Type: "message", ID: s.open.id, Status: "in_progress", Role: "assistant", Content: []OutputText{}}
		if err := s.send("response.output_item.added", map[string]any{"output_index": s.open.index, "item": item}); err != nil {
			return err
		}
		if err := s.send("response.content_part.added", map[string]any{"item_id": s.open.id, "output_index": s.open.index, "content_index": 0, "part": newOutputText("")}); err != nil {
			return err
		}
	}
	s.open.text.WriteString(t)
	return s.send("response.output_text.delta", map[string]any{"item_id": s.open.id, "output_index": s.open.index, "content_index": 0, "delta": t, "logprobs": []any{}})
}

// toolDelta streams a fragment of chat tool call i.
func (s *Stream) toolDelta(i int, callID, name, args string) error {
	if i < 0 || i >= maxToolCalls {
		return fmt.Errorf("tool call index %d is outside 0..%d", i, maxToolCalls-1)
	}
	for len(s.tools) <= i {
		s.tools = append(s.tools, -1)
	}
	if s.tools[i] >= 0 && !(s.open.kind == itemCall && s.open.chat == i) {
		return fmt.Errorf("tool call %d continued after another began", i)
	}
	if s.tools[i] < 0 {
		if err := s.closeOpen(); err != nil {
			return err
		}
		if callID == "" {
			callID = NewID("call")
		}
		s.open = openItem{kind: itemCall, index: len(s.resp.Output), id: NewID("fc"), chat: i,
			call: FunctionCall{Type: "function_call", CallID: callID, Name: name, Status: "in_progress"}}
		s.open.call.ID = s.open.id
		s.tools[i] = s.open.index
		s.resp.Output = append(s.resp.Output, nil)
		if err := s.send("response.output_item.added", map[string]any{"output_index": s.open.index, "item": s.open.call}); err != nil {
			return err
		}
	} else if name != "" && s.open.call.Name == "" {
		s.open.call.Name = name
	}
	if args == "" {
		return nil
	}
	s.open.text.WriteString(args)
	return s.send("response.function_call_arguments.delta", map[string]any{"item_id": s.open.id, "output_index": s.open.index, "delta": args})
}

// closeOpen ends the open item with its .done events.
func (s *Stream) closeOpen() error {
	o := &s.open
	switch o.kind {
	case itemText:
		text := o.text.String()
		part := newOutputText(text)
		if err := s.send("response.output_text.done", map[string]any{"item_id": o.id, "output_index": o.index, "content_index": 0, "text": text, "logprobs": []any{}}); err != nil {
			return err
		}
		if err := s.send("response.content_part.done", map[string]any{"item_id": o.id, "output_index": o.index, "content_index": 0, "part": part}); err != nil {
			return err
		}
		item := Message{Type: "message", ID: o.id, Status: "completed", Role: "assistant", Content: []OutputText{part}}
		s.resp.Output[o.index] = item
		if err := s.send("response.output_item.done", map[string]any{"output_index": o.index, "item": item}); err != nil {
			return err
		}
	case itemCall:
		call := o.call
		call.Arguments, call.Status = o.text.String(), "completed"
		if err := s.send("response.function_call_arguments.done", map[string]any{"item_id": o.id, "output_index": o.index, "name": call.Name, "arguments": call.Arguments}); err != nil {
			return err
		}
		s.resp.Output[o.index] = call
		if err := s.send("response.output_item.done", map[string]any{"output_index": o.index, "item": call}); err != nil {
			return err
		}
	}
	*o = openItem{}
	return nil
}

// Finish closes the open item and completes the response, which it
// returns: as the terminal event will carry it, for the caller to keep
// before sending that event with End.
func (s *Stream) Finish() (*Response, error) {
	if err := s.closeOpen(); err != nil {
		return nil, err
	}
	s.resp.Usage = s.usage
	s.resp.finish(s.finished)
	if s.resp.Status == "incomplete" {
		for i, it := range s.resp.Output {
			if m, ok := it.(Message); ok {
				m.Status = "incomplete"
				s.resp.Output[i] = m
			}
		}
	}
	return s.resp, nil
}

// End sends the terminal event: response.completed, .incomplete or
// .failed, as the response's status says.
func (s *Stream) End() error {
	typ := "response.completed"
	switch s.resp.Status {
	case "incomplete":
		typ = "response.incomplete"
	case "failed":
		typ = "response.failed"
	}
	return s.send(typ, map[string]any{"response": s.resp})
}

// Fail ends a stream that broke off: the response failed with code and
// msg, its finished items kept, sent as response.failed.
func (s *Stream) Fail(code, msg string) error {
	if s.open.kind != 0 {
		s.resp.Output = s.resp.Output[:s.open.index]
		s.open = openItem{}
	}
	out := s.resp.Output[:0]
	for _, it := range s.resp.Output {
		if it != nil {
			out = append(out, it)
		}
	}
	s.resp.Output = out
	s.resp.Usage = s.usage
	s.resp.Fail(code, msg)
	return s.End()
}
