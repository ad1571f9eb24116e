package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/dso-proxy/dso/config"
	"github.com/dso-proxy/dso/providers"
	"github.com/tidwall/gjson"
)

// maxTranslatedBody caps a non-streamed backend response that dso must
// decode to translate.
const maxTranslatedBody = 64 << 20

// chatHead is the part of a chat request dso reads; the body itself is
// forwarded as bytes.
type chatHead struct {
	Model    *string
	Stream   *bool
	Messages int // how many
}

// parseChat checks a chat body's shape: a JSON object with a model and a
// list of message objects, each with a string role. Keys match exactly, and
// the last of duplicate keys wins, as backends read them (encoding/json's
// struct decoding would also match "MODEL"). The body is validated once
// and then read in place: decoding it into values, level by level, went
// over a large body five times and copied it as often.
func parseChat(body []byte) (chatHead, error) {
	var h chatHead
	root, err := jsonObject(body)
	if err != nil {
		return h, err
	}
	var model, stream, messages gjson.Result
	root.ForEach(func(k, v gjson.Result) bool {
		switch k.Str {
		case "model":
			model = v
		case "stream":
			stream = v
		case "messages":
			messages = v
		}
		return true
	})
	if h.Model, err = stringValue(model, "model"); err != nil {
		return h, err
	}
	if stream.Exists() && stream.Type != gjson.Null {
		if stream.Type != gjson.True && stream.Type != gjson.False {
			return h, badRequest("stream must be a boolean")
		}
		b := stream.Bool()
		h.Stream = &b
	}
	if !messages.Exists() || messages.Type == gjson.Null {
		return h, badRequest("messages is required")
	}
	if !messages.IsArray() {
		return h, badRequest("messages must be a list of messages")
	}
	i := 0
	messages.ForEach(func(_, m gjson.Result) bool {
		if role := lastField(m, "role"); !m.IsObject() || role.Type != gjson.String {
			err = badRequest("messages[%d] must be an object with a string role", i)
			return false
		}
		i++
		return true
	})
	h.Messages = i
	return h, err
}

// jsonObject validates body as one JSON object and returns it for reading
// in place. The result's strings alias body, which must not change while
// they are read; what is kept is cloned.
func jsonObject(body []byte) (gjson.Result, error) {
	if !json.Valid(body) {
		var v json.RawMessage
		return gjson.Result{}, badRequest("request body is not valid JSON: %s", jsonErrMsg(json.Unmarshal(body, &v)))
	}
	root := readJSON(body)
	if !root.IsObject() {
		return gjson.Result{}, badRequest("request body must be a JSON object")
	}
	return root, nil
}

// readJSON reads body, already validated, in place, as jsonObject does.
func readJSON(body []byte) gjson.Result {
	return gjson.Parse(unsafe.String(unsafe.SliceData(body), len(body)))
}

// lastField is obj's field key, the last of duplicates (gjson's Get takes
// the first).
func lastField(obj gjson.Result, key string) gjson.Result {
	var out gjson.Result
	if obj.IsObject() {
		obj.ForEach(func(k, v gjson.Result) bool {
			if k.Str == key {
				out = v
			}
			return true
		})
	}
	return out
}

// stringValue reads a required, non-empty string field.
func stringValue(v gjson.Result, name string) (*string, error) {
	switch {
	case !v.Exists() || v.Type == gjson.Null:
		return nil, badRequest("%s is required", name)
	case v.Type != gjson.String:
		return nil, badRequest("%s must be a string", name)
	case v.Str == "":
		return nil, badRequest("%s is required", name)
	}
	s := strings.Clone(v.Str)
	return &s, nil
}

// jsonFields decodes a request body's top-level object, keys exact.
func jsonFields(body []byte) (map[string]json.RawMessage, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(body, &top); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return nil, badRequest("request body must be a JSON object")
		}
		return nil, badRequest("request body is not valid JSON: %s", jsonErrMsg(err))
	}
	if top == nil {
		return nil, badRequest("request body must be a JSON object")
	}
	return top, nil
}

// stringField reads a required, non-empty string field.
func stringField(top map[string]json.RawMessage, name string) (*string, error) {
	var s string
	raw, ok := top[name]
	if !ok || string(raw) == "null" {
		return nil, badRequest("%s is required", name)
	}
	if json.Unmarshal(raw, &s) != nil {
		return nil, badRequest("%s must be a string", name)
	}
	if s == "" {
		return nil, badRequest("%s is required", name)
	}
	return &s, nil
}

// jsonErrMsg describes a decoding error without echoing the input.
func jsonErrMsg(err error) string {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf("syntax error at byte %d", se.Offset)
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return fmt.Sprintf("field %q has the wrong type", te.Field)
	}
	return "cannot decode"
}

// chatBackend is what a chat-capable backend offers: the raw native chat
// call.
type chatBackend interface {
	Chat(ctx context.Context, body []byte, hdr http.Header) (*http.Response, error)
}

var (
	_ chatBackend = (*providers.OpenAI)(nil)
	_ chatBackend = (*providers.Ollama)(nil)
)

// attempt sends one request to one backend.
type attempt func(ctx context.Context, b providers.Backend) (*http.Response, error)

// failure is how dispatch treats an error.
type failure int

const (
	failFatal    failure = iota // relay it: the backend answered
	failRetry                   // retry on this backend, then fall back
	failFailover                // skip to the next backend
)

func classify(err error) failure {
	var se *providers.StatusError
	switch {
	case errors.As(err, &se):
		switch se.StatusCode {
		case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
			return failRetry
		}
		return failFatal
	case errors.Is(err, providers.ErrUnreachable):
		return failRetry
	case errors.Is(err, providers.ErrTimeout):
		return failFailover // a slow backend retried is only slower
	case errors.Is(err, providers.ErrRedirect):
		return failFailover // it will redirect again
	}
	return failFatal
}

// dispatch runs call on the backends of chain in order until one answers
// with a response head. A failure before the first byte is retried on the
// same backend with doubling backoff, up to its Retries, then the next
// backend is tried. It returns the backend that answered or failed last.
func (s *Server) dispatch(ctx context.Context, chain []providers.Backend, call attempt) (*http.Response, providers.Backend, error) {
	var last providers.Backend
	var lastErr error
	t0 := time.Now()
	defer func() { info(ctx).timing.upstream = time.Since(t0) }()
	for _, b := range chain {
		last = b
		info(ctx).backend = b.Name()
		cfg := b.Config()
		backoff := cfg.RetryBackoff
		for try := 0; ; try++ {
			start := time.Now()
			resp, err := call(ctx, b)
			if err == nil {
				s.metrics.cached.upstream.get(b.Name()).Observe(time.Since(start).Seconds())
				name := b.Name()
				resp.Body = &attemptBody{ReadCloser: resp.Body, ctx: ctx, ri: info(ctx), count: func(outcome string) {
					s.metrics.cached.attempts.get(attemptKey{name, outcome}).Inc()
				}}
				return resp, b, nil
			}
			lastErr = err
			if ctx.Err() != nil {
				return nil, b, ctx.Err()
			}
			kind := classify(err)
			if kind == failFatal {
				s.metrics.cached.attempts.get(attemptKey{b.Name(), "error"}).Inc()
				return nil, b, err
			}
			if kind == failRetry && try < cfg.Retries {
				s.metrics.cached.attempts.get(attemptKey{b.Name(), "retry"}).Inc()
				wait := backoff
				var se *providers.StatusError
				if errors.As(err, &se) {
					wait = max(wait, retryAfter(se.Header, s.opts.MaxRetryWait))
				}
				if !sleep(ctx, min(wait, s.opts.MaxRetryWait)) {
					return nil, b, ctx.Err()
				}
				backoff *= 2
				continue
			}
			s.metrics.cached.attempts.get(attemptKey{b.Name(), "failover"}).Inc()
			s.log.WarnContext(ctx, "backend failed, trying fallback", logKeyRequestID, RequestID(ctx), logKeyBackend, b.Name(), logKeyErr, err.Error())
			break
		}
	}
	return nil, last, lastErr
}

// attemptBody counts an answered attempt's outcome once its body is
// closed: "ok" only if the body was read without error (a head followed
// by a body that breaks off is no success), "broken" if the backend broke
// it off, "cancelled" if the client went away first. A broken body also
// marks the request (reqInfo.broken), so that its trace is not kept. The
// time its reads wait is the backend's (timing.body).
type attemptBody struct {
	io.ReadCloser
	ctx    context.Context
	ri     *reqInfo // ctx's, looked up once: Read is on every answer's path
	count  func(outcome string)
	failed atomic.Bool
	once   sync.Once
}

func (b *attemptBody) Read(p []byte) (int, error) {
	t0 := time.Now()
	n, err := b.ReadCloser.Read(p)
	b.ri.timing.body.Add(int64(time.Since(t0)))
	if err != nil && err != io.EOF && !b.failed.Swap(true) && b.ctx.Err() == nil {
		b.ri.broken.Store(true)
	}
	return n, err
}

func (b *attemptBody) Close() error {
	b.once.Do(func() {
		switch {
		case b.failed.Load() && b.ctx.Err() != nil:
			b.count("cancelled")
		case b.failed.Load():
			b.count("broken")
		default:
			b.count("ok")
		}
	})
	return b.ReadCloser.Close()
}

// sleep waits d or until ctx is done; it reports whether d elapsed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// call sends body to a chat backend, translating it once per backend type.
func chatCall(s *Server, r *http.Request, body []byte, sameType string, translate func([]byte) ([]byte, providers.ChatRequestInfo, error), infoOut *providers.ChatRequestInfo) attempt {
	var translated []byte
	return func(ctx context.Context, b providers.Backend) (*http.Response, error) {
		cb, ok := b.(chatBackend)
		if !ok {
			return nil, providers.ErrUnsupported
		}
		out := body
		if chatFormat(b) != sameType {
			if translated == nil {
				var err error
				if translated, *infoOut, err = translate(body); err != nil {
					return nil, err
				}
			}
			out = translated
		}
		return cb.Chat(ctx, out, s.upstreamHeader(r, b.Config().APIKey != ""))
	}
}

// openAIChat serves POST /v1/chat/completions.
func (s *Server) openAIChat(w http.ResponseWriter, r *http.Request) {
	const sf = surfaceOpenAI
	info(r.Context()).timing.on = true
	s.headerFeedback(w, r)
	body, err := s.readBody(w, r)
	if err != nil {
		s.fail(w, r, sf, err)
		return
	}
	head, err := parseChat(body)
	if err != nil {
		s.fail(w, r, sf, err)
		return
	}
	info(r.Context()).model = *head.Model
	chain, err := s.router.Route(*head.Model)
	if err != nil {
		s.fail(w, r, sf, err)
		return
	}
	fwd, tr, err := s.augment(w, r, body, chain[0], *head.Model, kindChat)
	if err != nil {
		s.fail(w, r, sf, err)
		return
	}
	defer s.recordTrace(r.Context(), tr)
	var ti providers.ChatRequestInfo
	resp, b, err := s.dispatch(r.Context(), chain, chatCall(s, r, fwd, "openai", providers.OpenAIChatToOllama, &ti))
	if err != nil {
		s.failFrom(w, r, sf, b, "openai", err)
		return
	}
	if chatFormat(b) == config.TypeOpenAI {
		// Relayed whole when of known length: one body, not a stream.
		s.relay(w, resp, sf, tr.tee(framingOf(resp) == framingNone && resp.ContentLength >= 0))
		return
	}
	defer resp.Body.Close()
	if !ti.Stream {
		s.translateWhole(w, r, sf, resp, tr.tee(true), func(b []byte) ([]byte, error) { return providers.OllamaChatResponseToOpenAI(b, ti) })
		return
	}
	ew := newEventWriter(w, framingSSE, tr.tee(false))
	if err := providers.OllamaToOpenAIStream(resp.Body, ti, ew.emit); err != nil {
		s.endStream(w, r, sf, framingSSE, err)
	}
}

// ollamaChat serves POST /api/chat.
func (s *Server) ollamaChat(w http.ResponseWriter, r *http.Request) {
	s.ollamaChatLike(w, r, false)
}

// ollamaGenerate serves POST /api/generate. Only a model is required; no
// prompt is Ollama's "load the model" (with keep_alive 0, "unload"): passed
// through to Ollama, answered by dso for other backends (generateLoad).
func (s *Server) ollamaGenerate(w http.ResponseWriter, r *http.Request) {
	s.ollamaChatLike(w, r, true)
}

func (s *Server) ollamaChatLike(w http.ResponseWriter, r *http.Request, generate bool) {
	const sf = surfaceOllama
	info(r.Context()).timing.on = true
	s.headerFeedback(w, r)
	body, err := s.readBody(w, r)
	if err != nil {
		s.fail(w, r, sf, err)
		return
	}
	var model string
	var top map[string]json.RawMessage
	if generate {
		top, err = jsonFields(body)
		if err == nil {
			var m *string
			m, err = stringField(top, "model")
			if m != nil {
				model = *m
			}
		}
		if err != nil {
			s.fail(w, r, sf, err)
			return
		}
	} else {
		head, err := parseChat(body)
		if err != nil {
			s.fail(w, r, sf, err)
			return
		}
		model = *head.Model
		if head.Messages == 0 {
			// No messages is Ollama's chat-style load; its keep_alive
			// is read as generate's is.
			top, _ = jsonFields(body)
		}
	}
	info(r.Context()).model = model
	chain, err := s.router.Route(model)
	if err != nil {
		s.fail(w, r, sf, err)
		return
	}
	if top != nil && chain[0].Type() != config.TypeOllama && s.generateLoad(w, r, top, model, !generate) {
		info(r.Context()).backend = chain[0].Name()
		return // a load or unload: answered as Ollama does, nothing to forward
	}
	kind := kindChat
	if generate {
		kind = kindGenerate
	}
	body, tr, err := s.augment(w, r, body, chain[0], model, kind)
	if err != nil {
		s.fail(w, r, sf, err)
		return
	}
	defer s.recordTrace(r.Context(), tr)
	var ti providers.ChatRequestInfo
	translate := providers.OllamaChatToOpenAI
	if generate {
		translate = providers.OllamaGenerateToOpenAI
	}
	call := chatCall(s, r, body, "ollama", translate, &ti)
	if generate {
		chat := call
		call = func(ctx context.Context, b providers.Backend) (*http.Response, error) {
			if o, ok := b.(*providers.Ollama); ok {
				return o.Generate(ctx, body, s.upstreamHeader(r, b.Config().APIKey != ""))
			}
			return chat(ctx, b)
		}
	}
	resp, b, err := s.dispatch(r.Context(), chain, call)
	if err != nil {
		s.failFrom(w, r, sf, b, "ollama", err)
		return
	}
	if chatFormat(b) == config.TypeOllama {
		// Relayed whole when of known length: one body, not a stream.
		s.relay(w, resp, sf, tr.tee(framingOf(resp) == framingNone && resp.ContentLength >= 0))
		return
	}
	defer resp.Body.Close()
	if !ti.Stream {
		s.translateWhole(w, r, sf, resp, tr.tee(true), func(b []byte) ([]byte, error) {
			return providers.OpenAIChatResponseToOllama(b, ti, generate)
		})
		return
	}
	ew := newEventWriter(w, framingNDJSON, tr.tee(false))
	if err := providers.OpenAIToOllamaStream(resp.Body, ti, generate, ew.emit); err != nil {
		s.endStream(w, r, sf, framingNDJSON, err)
	}
}

// translateWhole reads a whole backend response, translates it and writes
// it; nothing has been sent yet, so failures get a real status.
func (s *Server) translateWhole(w http.ResponseWriter, r *http.Request, sf surface, resp *http.Response, tee io.Writer, tr func([]byte) ([]byte, error)) {
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxTranslatedBody))
	if err != nil {
		s.fail(w, r, sf, err)
		return
	}
	out, err := tr(raw)
	if err != nil {
		s.fail(w, r, sf, &HTTPError{Status: http.StatusBadGateway, Type: "upstream_error", Msg: "the backend's response could not be translated", Err: err})
		return
	}
	if tee != nil {
		_, _ = tee.Write(out)
	}
	writeRawJSON(w, http.StatusOK, out)
}

// endStream ends a translated stream that failed after its header.
func (s *Server) endStream(w http.ResponseWriter, r *http.Request, sf surface, fr framing, err error) {
	if errors.Is(err, errClientGone) {
		return
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		err = fmt.Errorf("%w: stream ended early", providers.ErrUnreachable)
	}
	info(r.Context()).err = err
	var se *providers.StreamError
	if errors.As(err, &se) {
		err = &HTTPError{Status: http.StatusBadGateway, Type: "upstream_error", Msg: se.Msg, Err: err}
	}
	s.streamError(w, sf, fr, err)
}

// fail writes err before any byte was sent, and records it for the log.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, sf surface, err error) {
	info(r.Context()).err = err
	writeError(w, sf, err)
}

// failFrom is fail for backend errors: a status error from a backend that
// speaks the client's format is relayed byte for byte.
func (s *Server) failFrom(w http.ResponseWriter, r *http.Request, sf surface, b providers.Backend, sameType string, err error) {
	var se *providers.StatusError
	if b != nil && b.Type() == sameType && errors.As(err, &se) && len(se.Body) > 0 {
		info(r.Context()).err = err
		copyHeaders(w.Header(), se.Header, map[string]bool{"Content-Length": true})
		w.WriteHeader(se.StatusCode)
		_, _ = w.Write(se.Body)
		return
	}
	s.fail(w, r, sf, err)
}
