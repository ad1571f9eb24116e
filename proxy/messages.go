package proxy

import (
	"context"
	"errors"
	"math"
	"net/http"

	"github.com/dso-proxy/dso/anthropic"
	"github.com/dso-proxy/dso/config"
	"github.com/dso-proxy/dso/inject"
	"github.com/dso-proxy/dso/providers"
	"github.com/tidwall/gjson"
)

// The Anthropic Messages surface: POST /v1/messages and
// /v1/messages/count_tokens, as Claude Code and the Anthropic SDKs call
// them. Over an anthropic backend the body is relayed as bytes, only the
// notes added to its system field; over any other backend it is
// translated to a chat body and sent through the chat hub, and the answer
// translated back.

// messagesBackend is a backend that takes Messages bodies as they are.
type messagesBackend interface {
	Messages(ctx context.Context, body []byte, hdr http.Header) (*http.Response, error)
	CountTokens(ctx context.Context, body []byte, hdr http.Header) (*http.Response, error)
}

var _ messagesBackend = (*providers.Anthropic)(nil)

// nativeChain is the part of chain that takes Messages bodies natively,
// in order. A request whose first backend is one is served by these
// alone: a fallback of another type would need the body translated after
// the notes went into it natively.
func nativeChain(chain []providers.Backend) []providers.Backend {
	var out []providers.Backend
	for _, b := range chain {
		if _, ok := b.(messagesBackend); ok {
			out = append(out, b)
		}
	}
	return out
}

// parseMessages checks a Messages body as parseChat checks a chat body,
// and, for a message (not a token count), that max_tokens is a positive
// integer, as Anthropic requires. It returns the model.
func parseMessages(body []byte, message bool) (string, error) {
	head, err := parseChat(body)
	if err != nil {
		return "", err
	}
	if message {
		mt := lastField(readJSON(body), "max_tokens")
		switch {
		case !mt.Exists() || mt.Type == gjson.Null:
			return "", badRequest("max_tokens: Field required")
		case mt.Type != gjson.Number || mt.Num < 1 || mt.Num != math.Trunc(mt.Num):
			return "", badRequest("max_tokens: must be a positive integer")
		}
	}
	return *head.Model, nil
}

// anthropicMessages serves POST /v1/messages.
func (s *Server) anthropicMessages(w http.ResponseWriter, r *http.Request) {
	const sf = surfaceAnthropic
	info(r.Context()).timing.on = true
	s.headerFeedback(w, r)
	body, err := s.readBody(w, r)
	if err != nil {
		s.fail(w, r, sf, err)
		return
	}
	model, err := parseMessages(body, true)
	if err != nil {
		s.fail(w, r, sf, err)
		return
	}
	info(r.Context()).model = model
	chain, err := s.router.Route(model)
	if err != nil {
		s.fail(w, r, sf, err)
		return
	}
	if _, ok := chain[0].(messagesBackend); ok {
		s.messagesNative(w, r, body, nativeChain(chain), model)
		return
	}
	s.messagesViaHub(w, r, body, chain, model)
}

// messagesNative relays a Messages request to an anthropic backend: the
// notes go into system, every other byte of the body and of the answer
// is relayed as it is.
func (s *Server) messagesNative(w http.ResponseWriter, r *http.Request, body []byte, chain []providers.Backend, model string) {
	const sf = surfaceAnthropic
	fwd, tr, err := s.augment(w, r, body, chain[0], model, kindMessages)
	if err != nil {
		s.fail(w, r, sf, err)
		return
	}
	defer s.recordTrace(r.Context(), tr)
	resp, b, err := s.dispatch(r.Context(), chain, func(ctx context.Context, b providers.Backend) (*http.Response, error) {
		return b.(messagesBackend).Messages(ctx, fwd, s.upstreamHeader(r, b.Config().APIKey != ""))
	})
	if err != nil {
		s.failFrom(w, r, sf, b, config.TypeAnthropic, err)
		return
	}
	// Relayed whole when of known length: one body, not a stream.
	s.relay(w, resp, sf, tr.tee(framingOf(resp) == framingNone && resp.ContentLength >= 0))
}

// messagesViaHub serves a Messages request over a chat backend: the body
// is translated to chat, augmented as a chat, sent through the hub, and
// the answer (whole or streamed) translated back.
func (s *Server) messagesViaHub(w http.ResponseWriter, r *http.Request, body []byte, chain []providers.Backend, model string) {
	const sf = surfaceAnthropic
	ctx := r.Context()
	chat, ti, err := anthropic.RequestToChat(body)
	if err != nil {
		if errors.Is(err, anthropic.ErrInvalid) {
			err = badRequest("%s", err.Error())
		}
		s.fail(w, r, sf, err)
		return
	}
	if len(ti.Dropped) > 0 {
		s.log.DebugContext(ctx, "anthropic request: fields a chat backend cannot take were dropped", logKeyRequestID, RequestID(ctx), logKeyModel, model, "dropped", ti.Dropped)
	}
	fwd, tr, err := s.augment(w, r, chat, chain[0], model, kindChat)
	if err != nil {
		s.fail(w, r, sf, err)
		return
	}
	defer s.recordTrace(ctx, tr)
	ans, _, err := s.hubChat(ctx, r, chain, fwd)
	if err != nil {
		s.fail(w, r, sf, err)
		return
	}
	defer ans.Close()
	if !ans.Stream() {
		raw, err := ans.Whole()
		if err != nil {
			s.fail(w, r, sf, err)
			return
		}
		out, err := anthropic.ResponseFromChat(raw, ti)
		if err != nil {
			s.fail(w, r, sf, &HTTPError{Status: http.StatusBadGateway, Type: "upstream_error", Msg: "the backend's response could not be translated", Err: err})
			return
		}
		if tee := tr.tee(true); tee != nil {
			_, _ = tee.Write(out)
		}
		writeRawJSON(w, http.StatusOK, out)
		return
	}
	ew := newEventWriter(w, framingSSE, tr.tee(false))
	if err := anthropic.StreamFromChat(ans.Events, ti, ew.emitNamed); err != nil {
		s.endStream(w, r, sf, framingSSE, err)
	}
}

// anthropicCountTokens serves POST /v1/messages/count_tokens: relayed to
// an anthropic backend, else estimated with the model's token counter
// (exact for OpenAI models, an estimate that errs high for others).
func (s *Server) anthropicCountTokens(w http.ResponseWriter, r *http.Request) {
	const sf = surfaceAnthropic
	body, err := s.readBody(w, r)
	if err != nil {
		s.fail(w, r, sf, err)
		return
	}
	model, err := parseMessages(body, false)
	if err != nil {
		s.fail(w, r, sf, err)
		return
	}
	info(r.Context()).model = model
	chain, err := s.router.Route(model)
	if err != nil {
		s.fail(w, r, sf, err)
		return
	}
	if _, ok := chain[0].(messagesBackend); !ok {
		writeJSON(w, http.StatusOK, map[string]int{"input_tokens": estimateTokens(body, model)})
		return
	}
	resp, b, err := s.dispatch(r.Context(), nativeChain(chain), func(ctx context.Context, b providers.Backend) (*http.Response, error) {
		return b.(messagesBackend).CountTokens(ctx, body, s.upstreamHeader(r, b.Config().APIKey != ""))
	})
	if err != nil {
		s.failFrom(w, r, sf, b, config.TypeAnthropic, err)
		return
	}
	s.relay(w, resp, sf, nil)
}

// Token estimates of what a counter cannot read.
const (
	// imageTokens: Anthropic counts an image as width×height/750 tokens,
	// about 1600 for the largest it takes without resizing.
	imageTokens = 1600
	// turnTokens: the role markers around each message.
	turnTokens = 4
)

// estimateTokens estimates the input tokens of a Messages body (already
// validated): system, messages, tools.
func estimateTokens(body []byte, model string) int {
	c := inject.ReadyCounterFor(model)
	root := readJSON(body)
	n := 0
	var blocks func(v gjson.Result)
	blocks = func(v gjson.Result) {
		if v.Type == gjson.String {
			n += c.Count(v.Str)
			return
		}
		v.ForEach(func(_, b gjson.Result) bool {
			switch b.Get("type").Str {
			case "text":
				n += c.Count(b.Get("text").Str)
			case "image":
				n += imageTokens
			case "document":
				if src := b.Get("source"); src.Get("type").Str == "text" {
					n += c.Count(src.Get("data").Str)
				} else {
					n += len(src.Get("data").Str) / 4 // base64: 3 bytes in 4
				}
			case "tool_use":
				n += c.Count(b.Get("name").Str) + c.Count(b.Get("input").Raw)
			case "tool_result":
				blocks(b.Get("content"))
			case "thinking":
				n += c.Count(b.Get("thinking").Str)
			}
			return true
		})
	}
	blocks(lastField(root, "system"))
	lastField(root, "messages").ForEach(func(_, m gjson.Result) bool {
		n += turnTokens
		blocks(lastField(m, "content"))
		return true
	})
	lastField(root, "tools").ForEach(func(_, t gjson.Result) bool {
		n += c.Count(t.Get("name").Str) + c.Count(t.Get("description").Str) + c.Count(t.Get("input_schema").Raw)
		return true
	})
	return n
}
