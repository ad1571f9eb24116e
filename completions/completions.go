package completions

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// ErrBadRequest marks a request translation cannot carry; the message
// says why and is safe to show.
var ErrBadRequest = errors.New("bad request")

func badRequest(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrBadRequest, fmt.Sprintf(format, args...))
}

// DefaultMaxTokens is the legacy API's own default for max_tokens, which
// chat servers do not share: an untranslated default would let the model
// run to its context.
const DefaultMaxTokens = 16

type request struct {
	Model            string          `json:"model"`
	Prompt           json.RawMessage `json:"prompt"`
	MaxTokens        *int            `json:"max_tokens"`
	Temperature      *float64        `json:"temperature"`
	TopP             *float64        `json:"top_p"`
	N                *int            `json:"n"`
	Stream           bool            `json:"stream"`
	StreamOptions    *streamOptions  `json:"stream_options"`
	Stop             json.RawMessage `json:"stop"`
	Seed             *int            `json:"seed"`
	PresencePenalty  *float64        `json:"presence_penalty"`
	FrequencyPenalty *float64        `json:"frequency_penalty"`
	User             string          `json:"user,omitempty"`
	Echo             bool            `json:"echo"`
	Suffix           *string         `json:"suffix"`
	BestOf           *int            `json:"best_of"`
	Logprobs         *int            `json:"logprobs"`
}

type streamOptions struct {
	IncludeUsage bool `json:"include_usage"`
}

type chatRequest struct {
	Model            string          `json:"model"`
	Messages         []chatMessage   `json:"messages"`
	MaxTokens        int             `json:"max_tokens"`
	Temperature      *float64        `json:"temperature,omitempty"`
	TopP             *float64        `json:"top_p,omitempty"`
	Stop             json.RawMessage `json:"stop,omitempty"`
	Seed             *int            `json:"seed,omitempty"`
	PresencePenalty  *float64        `json:"presence_penalty,omitempty"`
	FrequencyPenalty *float64        `json:"frequency_penalty,omitempty"`
	User             string          `json:"user,omitempty"`
	Stream           bool            `json:"stream,omitempty"`
	StreamOptions    *streamOptions  `json:"stream_options,omitempty"`
}

type chatMessage struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

// Info is what the answer's translation needs to know of the request.
type Info struct {
	Model        string
	Stream       bool
	IncludeUsage bool
}

// Prompt is a request's prompt when it is one string: what retrieval
// reads and the notes go with. ok is false for a list of prompts or
// tokens.
func Prompt(body []byte) (prompt string, ok bool) {
	var r struct {
		Prompt json.RawMessage `json:"prompt"`
	}
	if json.Unmarshal(body, &r) != nil {
		return "", false
	}
	return onePrompt(r.Prompt)
}

func onePrompt(raw json.RawMessage) (string, bool) {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s, true
	}
	var list []string
	if json.Unmarshal(raw, &list) == nil && len(list) == 1 {
		return list[0], true
	}
	return "", false
}

// ToChat translates a completions body into a chat-completions one: the
// prompt as one user message. Settings chat cannot carry (echo, suffix,
// best_of, logprobs, n > 1, several prompts, token prompts) are refused.
func ToChat(body []byte) ([]byte, Info, error) {
	var r request
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, Info{}, badRequest("invalid completions request: a field has the wrong type")
	}
	info := Info{Model: r.Model, Stream: r.Stream, IncludeUsage: r.StreamOptions != nil && r.StreamOptions.IncludeUsage}
	if r.Model == "" {
		return nil, info, badRequest("model is required")
	}
	prompt, ok := onePrompt(r.Prompt)
	if !ok {
		return nil, info, badRequest("prompt must be a string (several prompts or token prompts need a backend that serves /v1/completions)")
	}
	switch {
	case r.Echo:
		return nil, info, badRequest("echo needs a backend that serves /v1/completions")
	case r.Suffix != nil && *r.Suffix != "":
		return nil, info, badRequest("suffix needs a backend that serves /v1/completions")
	case r.BestOf != nil && *r.BestOf > 1, r.N != nil && *r.N > 1:
		return nil, info, badRequest("n and best_of above 1 need a backend that serves /v1/completions")
	case r.Logprobs != nil:
		return nil, info, badRequest("logprobs needs a backend that serves /v1/completions")
	}
	out := chatRequest{Model: r.Model, Messages: []chatMessage{{Role: "user", Content: prompt}}, MaxTokens: DefaultMaxTokens,
		Temperature: r.Temperature, TopP: r.TopP, Stop: r.Stop, Seed: r.Seed, PresencePenalty: r.PresencePenalty,
		FrequencyPenalty: r.FrequencyPenalty, User: r.User, Stream: r.Stream}
	if r.MaxTokens != nil {
		out.MaxTokens = *r.MaxTokens
	}
	if r.Stream {
		out.StreamOptions = &streamOptions{IncludeUsage: true}
	}
	b, err := json.Marshal(out)
	return b, info, err
}

// completion is a text_completion object, whole or one stream event.
type completion struct {
	ID      string          `json:"id"`
	Object  string          `json:"object"`
	Created int64           `json:"created"`
	Model   string          `json:"model"`
	Choices []choice        `json:"choices"`
	Usage   json.RawMessage `json:"usage,omitempty"`
}

type choice struct {
	Text         string  `json:"text"`
	Index        int     `json:"index"`
	Logprobs     any     `json:"logprobs"`
	FinishReason *string `json:"finish_reason"`
}

type chatAnswer struct {
	Model   string `json:"model"`
	Choices []struct {
		Index   int `json:"index"`
		Message *struct {
			Content json.RawMessage `json:"content"`
		} `json:"message"`
		Delta *struct {
			Content json.RawMessage `json:"content"`
		} `json:"delta"`
		FinishReason *string `json:"finish_reason"`
	} `json:"choices"`
	Usage json.RawMessage `json:"usage"`
}

func newID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return "cmpl-" + hex.EncodeToString(b[:])
}

func text(raw json.RawMessage) string {
	var s string
	_ = json.Unmarshal(raw, &s)
	return s
}

func model(got string, info Info) string {
	if got != "" {
		return got
	}
	return info.Model
}

// FromChat translates a whole chat.completion into a text_completion.
func FromChat(body []byte, info Info) ([]byte, error) {
	var a chatAnswer
	if err := json.Unmarshal(body, &a); err != nil {
		return nil, fmt.Errorf("decoding the chat answer: %w", err)
	}
	if len(a.Choices) == 0 || a.Choices[0].Message == nil {
		return nil, fmt.Errorf("the chat answer has no choices")
	}
	c := a.Choices[0]
	return json.Marshal(completion{ID: newID(), Object: "text_completion", Created: time.Now().Unix(), Model: model(a.Model, info),
		Choices: []choice{{Text: text(c.Message.Content), FinishReason: finish(c.FinishReason)}}, Usage: usage(a.Usage)})
}

func finish(fr *string) *string {
	if fr == nil || *fr == "" {
		return nil
	}
	s := *fr
	if s == "tool_calls" || s == "function_call" {
		s = "stop"
	}
	return &s
}

func usage(raw json.RawMessage) json.RawMessage {
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	return raw
}

// Stream translates chat.completion.chunk payloads into text_completion
// events, one at a time; Done gives the last ones.
type Stream struct {
	info    Info
	id      string
	created int64
	usage   json.RawMessage
}

// NewStream returns a stream translator for a request with info.
func NewStream(info Info) *Stream {
	return &Stream{info: info, id: newID(), created: time.Now().Unix()}
}

// Chunk translates one chunk; it returns nil when the chunk carries
// nothing a completions client reads (a role, an empty delta, usage kept
// for the end).
func (s *Stream) Chunk(data []byte) ([]byte, error) {
	var a chatAnswer
	if err := json.Unmarshal(data, &a); err != nil {
		return nil, fmt.Errorf("decoding the chat stream: %w", err)
	}
	if u := usage(a.Usage); u != nil {
		s.usage = u
	}
	for _, c := range a.Choices {
		if c.Index != 0 {
			continue
		}
		t := ""
		if c.Delta != nil {
			t = text(c.Delta.Content)
		}
		fr := finish(c.FinishReason)
		if t == "" && fr == nil {
			return nil, nil
		}
		return json.Marshal(completion{ID: s.id, Object: "text_completion", Created: s.created, Model: model(a.Model, s.info),
			Choices: []choice{{Text: t, FinishReason: fr}}})
	}
	return nil, nil
}

// Done returns the events that end the stream: the usage, when the client
// asked for it (stream_options.include_usage), then "[DONE]".
func (s *Stream) Done() [][]byte {
	var out [][]byte
	if s.info.IncludeUsage && s.usage != nil {
		b, _ := json.Marshal(completion{ID: s.id, Object: "text_completion", Created: s.created, Model: s.info.Model, Choices: []choice{}, Usage: s.usage})
		out = append(out, b)
	}
	return append(out, []byte("[DONE]"))
}
