package proxy

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/dso-proxy/dso/config"
	"github.com/dso-proxy/dso/inject"
	"github.com/dso-proxy/dso/library"
	"github.com/dso-proxy/dso/providers"
	"github.com/dso-proxy/dso/store"
)

// Request and response headers.
const (
	HeaderDomain        = "X-DSO-Domain"
	HeaderTopK          = "X-DSO-Top-K"
	HeaderMinConfidence = "X-DSO-Min-Confidence"
	HeaderInject        = "X-DSO-Inject"
	HeaderTraceID       = "X-DSO-Trace-Id"
	HeaderExperiences   = "X-DSO-Experiences"
	HeaderDegraded      = "X-DSO-Degraded"
)

// Degraded reasons: a closed vocabulary, also the metric's outcome label.
const (
	reasonTimeout     = "timeout"
	reasonEmbedError  = "embed_error"
	reasonAlignError  = "align_error"
	reasonIndexEmpty  = "index_empty"
	reasonSearchError = "search_error"
	reasonInjectError = "inject_error"
	reasonNoQuery     = "no_query"
)

// Retrieval configures the request path's retrieval and injection.
type Retrieval struct {
	// Library holds the experiences. Nil disables retrieval: requests are
	// forwarded untouched (they still get a trace id).
	Library *library.Library
	// Embedder embeds queries. Nil: the routed backend, with its
	// embedding model (or the chat model).
	Embedder library.Embedder
	// EmbedderName names a local Embedder's space, used as the model name
	// for alignment and recorded as experiences' source model.
	EmbedderName string
	// ExperienceModel embeds experiences added through the API when the
	// request names no model (backend embedder only).
	ExperienceModel string
	// Budget bounds one request's retrieval. Zero: 250ms.
	Budget time.Duration
	// TopK, MinConfidence and MaxTokens are the defaults; zero TopK means 5,
	// zero MaxTokens means inject's default.
	TopK          int
	MinConfidence float64
	MaxTokens     int
	// NodeID is recorded on experiences created here.
	NodeID string
	// Models override injection settings by model pattern (first match).
	Models []config.ModelInjection
}

// maxQueryBytes caps the text embedded for one query.
const maxQueryBytes = 4096

// maxTraceAnswer caps the answer bytes kept for a trace.
const maxTraceAnswer = 64 << 10

// settings are one request's retrieval settings after config and headers.
type settings struct {
	off           bool
	domain        string
	topK          int
	minConfidence float64
}

// requestSettings merges backend overrides and request headers; bad header
// values are the client's error.
func (s *Server) requestSettings(r *http.Request, b config.Backend, model string) (settings, error) {
	rt := s.opts.Retrieval
	st := settings{off: rt.Library == nil, topK: rt.TopK, minConfidence: rt.MinConfidence}
	st.apply(b.Injection)
	for _, m := range rt.Models {
		if ok, _ := path.Match(m.Pattern, model); ok {
			st.apply(m.Injection)
			break
		}
	}
	if v := r.Header.Get(HeaderInject); v != "" {
		switch strings.ToLower(v) {
		case "off", "false", "0", "no":
			st.off = true
		case "on", "true", "1", "yes":
		default:
			return st, badRequest("%s must be on or off", HeaderInject)
		}
	}
	if v := r.Header.Get(HeaderDomain); v != "" {
		if len(v) > 256 {
			return st, badRequest("%s is longer than 256 bytes", HeaderDomain)
		}
		st.domain = v
	}
	if v := r.Header.Get(HeaderTopK); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > 100 {
			return st, badRequest("%s must be an integer from 0 to 100", HeaderTopK)
		}
		st.topK = n
	}
	if v := r.Header.Get(HeaderMinConfidence); v != "" {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f < 0 || f > 1 {
			return st, badRequest("%s must be a number from 0 to 1", HeaderMinConfidence)
		}
		st.minConfidence = f
	}
	if st.topK == 0 {
		st.topK = config.DefaultTopK
	}
	return st, nil
}

// apply lays configured overrides over st; zero values inherit.
func (st *settings) apply(in config.Injection) {
	st.off = st.off || in.Off
	if in.Domain != "" {
		st.domain = in.Domain
	}
	if in.TopK > 0 {
		st.topK = in.TopK
	}
	if in.MinConfidence > 0 {
		st.minConfidence = in.MinConfidence
	}
}

// trace is what a request records for later feedback.
type trace struct {
	rec    store.Trace
	answer *cappedBuffer
}

// newTraceID returns a fresh trace id.
func newTraceID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return "tr_" + hex.EncodeToString(b[:])
}

// requestKind says where the query text and the injected note live.
type requestKind int

const (
	kindChat     requestKind = iota // messages
	kindGenerate                    // prompt / system
)

// augment runs retrieval for a chat or generate body and returns the body
// to forward. It never fails the request for a retrieval problem: those set
// X-DSO-Degraded and the body goes out unchanged. It returns an error only
// for bad request headers.
func (s *Server) augment(w http.ResponseWriter, r *http.Request, body []byte, b providers.Backend, model string, kind requestKind) ([]byte, *trace, error) {
	st, err := s.requestSettings(r, b.Config(), model)
	if err != nil {
		return nil, nil, err
	}
	tr := &trace{rec: store.Trace{ID: newTraceID(), Domain: st.domain, Model: model}, answer: &cappedBuffer{max: maxTraceAnswer}}
	if s.opts.Retrieval.Library != nil {
		// Feedback may name this trace as soon as the client has the answer,
		// before the trace is stored: it waits for the write (awaitTrace).
		s.pending.Store(tr.rec.ID, make(chan struct{}))
	}
	h := w.Header()
	h.Set(HeaderTraceID, tr.rec.ID)
	h.Set(HeaderExperiences, "")
	query := queryText(body, kind)
	tr.rec.Query = query
	if st.off {
		s.metrics.retrieval.WithLabelValues("off").Inc()
		return body, tr, nil
	}
	out, ids, reason := s.retrieve(r.Context(), body, b, model, query, kind, st)
	if reason != "" {
		h.Set(HeaderDegraded, reason)
		s.metrics.retrieval.WithLabelValues(reason).Inc()
		return body, tr, nil
	}
	if len(ids) == 0 {
		s.metrics.retrieval.WithLabelValues("none").Inc()
		return body, tr, nil
	}
	s.metrics.retrieval.WithLabelValues("injected").Inc()
	s.metrics.injected.Observe(float64(len(ids)))
	h.Set(HeaderExperiences, strings.Join(ids, ","))
	tr.rec.ExperienceIDs = ids
	return out, tr, nil
}

// retrieve embeds, aligns, searches and injects within the budget. It
// returns the new body and the injected ids, or a degraded reason.
func (s *Server) retrieve(ctx context.Context, body []byte, b providers.Backend, model, query string, kind requestKind, st settings) ([]byte, []string, string) {
	rt := s.opts.Retrieval
	if query == "" {
		return nil, nil, reasonNoQuery
	}
	if rt.Library.Len() == 0 {
		return nil, nil, reasonIndexEmpty
	}
	ctx, cancel := context.WithTimeout(ctx, rt.Budget)
	defer cancel()
	timeout := func(err error, reason string) string {
		if errors.Is(err, context.DeadlineExceeded) || ctx.Err() != nil {
			return reasonTimeout
		}
		return reason
	}

	t0 := time.Now()
	emb, space := s.queryEmbedder(b, model)
	vec, err := s.embedWithin(ctx, emb, space, query)
	s.metrics.stage.WithLabelValues("embed").Observe(time.Since(t0).Seconds())
	if err != nil {
		s.log.DebugContext(ctx, "retrieval: embed failed", logKeyRequestID, RequestID(ctx), logKeyErr, err.Error())
		return nil, nil, timeout(err, reasonEmbedError)
	}

	t1 := time.Now()
	canon, err := rt.Library.Canonical(space, vec)
	s.metrics.stage.WithLabelValues("align").Observe(time.Since(t1).Seconds())
	if err != nil {
		return nil, nil, reasonAlignError
	}

	t2 := time.Now()
	res, err := rt.Library.Search(ctx, library.Query{Vector: canon, K: st.topK, Domain: st.domain, MinConfidence: st.minConfidence})
	s.metrics.stage.WithLabelValues("search").Observe(time.Since(t2).Seconds())
	if errors.Is(err, library.ErrEmpty) {
		return nil, nil, reasonIndexEmpty
	}
	if err != nil {
		return nil, nil, timeout(err, reasonSearchError)
	}
	if len(res) == 0 {
		return body, nil, ""
	}

	t3 := time.Now()
	defer func() { s.metrics.stage.WithLabelValues("inject").Observe(time.Since(t3).Seconds()) }()
	notes := make([]inject.Note, len(res))
	for i, e := range res {
		notes[i] = inject.Note{ID: e.ID, Domain: e.Domain, Text: e.Text, Confidence: e.Confidence}
	}
	text, used := inject.Build(notes, inject.Options{MaxTokens: rt.MaxTokens, Counter: inject.CounterFor(model)})
	if len(used) == 0 {
		return body, nil, ""
	}
	var out []byte
	if kind == kindGenerate {
		out, err = inject.Prompt(body, text)
	} else {
		out, err = inject.Messages(body, text)
	}
	if err != nil {
		return nil, nil, reasonInjectError
	}
	return out, used, ""
}

// EmbedSpace returns the embedder and embedding-space name used for
// queries to model, for lessons learned from its answers to live in the
// same space. The embedder is nil when model has no backend.
func (s *Server) EmbedSpace(model string) (library.Embedder, string) {
	if e := s.opts.Retrieval.Embedder; e != nil {
		return e, s.opts.Retrieval.EmbedderName
	}
	chain, err := s.router.Route(model)
	if err != nil {
		return nil, model
	}
	return s.queryEmbedder(chain[0], model)
}

// queryEmbedder returns the embedder for a request and the name of its
// embedding space.
func (s *Server) queryEmbedder(b providers.Backend, model string) (library.Embedder, string) {
	if e := s.opts.Retrieval.Embedder; e != nil {
		return e, s.opts.Retrieval.EmbedderName
	}
	if m := b.Config().EmbeddingModel; m != "" {
		return b, m
	}
	return b, model
}

// embedWithin embeds text, giving up when ctx ends even if the embedder
// does not watch its context.
func (s *Server) embedWithin(ctx context.Context, emb library.Embedder, model, text string) ([]float32, error) {
	type result struct {
		v   []float32
		err error
	}
	ch := make(chan result, 1)
	go func() {
		v, err := s.opts.Retrieval.Library.Embed(ctx, emb, model, text)
		ch <- result{v, err}
	}()
	select {
	case r := <-ch:
		return r.v, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// queryText takes the last user turn, and for a short follow-up the turn
// before it, capped at maxQueryBytes.
func queryText(body []byte, kind requestKind) string {
	if kind == kindGenerate {
		var g struct {
			Prompt string `json:"prompt"`
		}
		_ = json.Unmarshal(body, &g)
		return capText(strings.TrimSpace(g.Prompt), maxQueryBytes)
	}
	var c struct {
		Messages []struct {
			Role    string          `json:"role"`
			Content json.RawMessage `json:"content"`
		} `json:"messages"`
	}
	if json.Unmarshal(body, &c) != nil {
		return ""
	}
	var turns []string
	for i := len(c.Messages) - 1; i >= 0 && len(turns) < 2; i-- {
		if c.Messages[i].Role != "user" {
			continue
		}
		if t := strings.TrimSpace(contentText(c.Messages[i].Content)); t != "" {
			turns = append(turns, t)
			if len(turns) == 1 && len(t) >= 64 {
				break // a full question stands on its own
			}
		}
	}
	if len(turns) == 0 {
		return ""
	}
	q := turns[0]
	if len(turns) == 2 {
		q = capText(turns[1], 512) + "\n" + q
	}
	return capText(q, maxQueryBytes)
}

// contentText flattens string or multi-part content to its text.
func contentText(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var parts []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	if json.Unmarshal(raw, &parts) != nil {
		return ""
	}
	var b strings.Builder
	for _, p := range parts {
		if p.Type == "text" {
			if b.Len() > 0 {
				b.WriteByte('\n')
			}
			b.WriteString(p.Text)
		}
	}
	return b.String()
}

// capText cuts s to at most n bytes on a rune boundary.
func capText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

func utf8RuneStart(b byte) bool { return b&0xC0 != 0x80 }

// cappedBuffer keeps the first max bytes written to it.
type cappedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
	max int
}

func (c *cappedBuffer) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if room := c.max - c.buf.Len(); room > 0 {
		if len(p) > room {
			c.buf.Write(p[:room])
		} else {
			c.buf.Write(p)
		}
	}
	return len(p), nil
}

func (c *cappedBuffer) Bytes() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.Bytes()
}

// answerText extracts the answer's text from a response in any of the
// formats dso relays: OpenAI JSON or SSE, Ollama JSON or NDJSON.
func answerText(raw []byte) string {
	var out strings.Builder
	for _, line := range bytes.Split(raw, []byte("\n")) {
		line = bytes.TrimSpace(line)
		if d, ok := bytes.CutPrefix(line, []byte("data:")); ok {
			line = bytes.TrimSpace(d)
		}
		if len(line) == 0 || line[0] != '{' {
			continue
		}
		var v struct {
			Choices []struct {
				Message *struct {
					Content json.RawMessage `json:"content"`
				} `json:"message"`
				Delta *struct {
					Content json.RawMessage `json:"content"`
				} `json:"delta"`
			} `json:"choices"`
			Message *struct {
				Content string `json:"content"`
			} `json:"message"`
			Response string `json:"response"`
		}
		if json.Unmarshal(line, &v) != nil {
			continue
		}
		for _, c := range v.Choices {
			if c.Message != nil {
				out.WriteString(contentText(c.Message.Content))
			}
			if c.Delta != nil {
				out.WriteString(contentText(c.Delta.Content))
			}
			break
		}
		if v.Message != nil {
			out.WriteString(v.Message.Content)
		}
		out.WriteString(v.Response)
	}
	return out.String()
}

// recordTrace queues tr for the store; it never blocks the request.
func (s *Server) recordTrace(ctx context.Context, tr *trace) {
	if tr == nil || s.opts.Retrieval.Library == nil {
		return
	}
	tr.rec.Answer = answerText(tr.answer.Bytes())
	s.traceMu.RLock()
	defer s.traceMu.RUnlock()
	if s.tracesClosed {
		// A request outlived a forced shutdown: its trace is not stored.
		s.traceSettled(tr.rec.ID)
		return
	}
	select {
	case s.traces <- tr.rec:
	default:
		s.metrics.traceDropped.Inc()
		s.log.WarnContext(ctx, "trace queue full; trace dropped", logKeyRequestID, RequestID(ctx))
		s.traceSettled(tr.rec.ID)
	}
}

// traceSettled wakes feedback waiting for a trace that is now stored (or
// dropped).
func (s *Server) traceSettled(id string) {
	if ch, ok := s.pending.LoadAndDelete(id); ok {
		close(ch.(chan struct{}))
	}
}

// maxTraceWait bounds how long feedback waits for its trace to be stored.
const maxTraceWait = 10 * time.Second

// awaitTrace waits until a trace this node is still storing is stored.
func (s *Server) awaitTrace(ctx context.Context, id string) {
	ch, ok := s.pending.Load(id)
	if !ok {
		return
	}
	t := time.NewTimer(maxTraceWait)
	defer t.Stop()
	select {
	case <-ch.(chan struct{}):
	case <-ctx.Done():
	case <-t.C:
	}
}

// traceWriter stores queued traces until the queue is closed.
func (s *Server) traceWriter() {
	defer close(s.tracesDone)
	st := s.opts.Retrieval.Library.Store()
	for t := range s.traces {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := st.PutTrace(ctx, t); err != nil {
			s.log.Warn("storing trace failed", "trace_id", t.ID, logKeyErr, err.Error())
		}
		cancel()
		s.traceSettled(t.ID)
	}
}

// Close stops accepting traces and waits for queued ones to be stored.
// Call it after the HTTP server has shut down.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		if s.traces != nil {
			s.traceMu.Lock()
			s.tracesClosed = true
			close(s.traces)
			s.traceMu.Unlock()
			<-s.tracesDone
		}
	})
	return nil
}
