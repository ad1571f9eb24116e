package proxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/dso-proxy/dso/config"
	"github.com/dso-proxy/dso/inject"
	"github.com/dso-proxy/dso/library"
	"github.com/dso-proxy/dso/providers"
	"github.com/dso-proxy/dso/store"
	"github.com/tidwall/gjson"
)

// Request and response headers.
const (
	HeaderDomain        = "X-DSO-Domain"
	HeaderTopK          = "X-DSO-Top-K"
	HeaderMinConfidence = "X-DSO-Min-Confidence"
	HeaderMinScore      = "X-DSO-Min-Score"
	HeaderScores        = "X-DSO-Scores"
	HeaderGate          = "X-DSO-Gate"
	HeaderInject        = "X-DSO-Inject"
	HeaderTraceID       = "X-DSO-Trace-Id"
	HeaderExperiences   = "X-DSO-Experiences"
	HeaderDegraded      = "X-DSO-Degraded"
)

// The headers read or set on every chat, as net/http keys them: given the
// X-DSO spelling, each Get and Set canonicalises the key again, and
// allocates the result.
var (
	keyInject        = http.CanonicalHeaderKey(HeaderInject)
	keyDomain        = http.CanonicalHeaderKey(HeaderDomain)
	keyTopK          = http.CanonicalHeaderKey(HeaderTopK)
	keyMinConfidence = http.CanonicalHeaderKey(HeaderMinConfidence)
	keyMinScore      = http.CanonicalHeaderKey(HeaderMinScore)
	keyTraceID       = http.CanonicalHeaderKey(HeaderTraceID)
	keyExperiences   = http.CanonicalHeaderKey(HeaderExperiences)
	keyDegraded      = http.CanonicalHeaderKey(HeaderDegraded)
	keyGate          = http.CanonicalHeaderKey(HeaderGate)
	keyFeedback      = http.CanonicalHeaderKey(HeaderFeedback)
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
	// reasonNotReady: the library's embedding space is not usable yet
	// (its embedder has not answered since start).
	reasonNotReady = "space_unavailable"
	// reasonStoreUnavailable: the experience store (Redis) could not be
	// reached, so nothing could be loaded to inject.
	reasonStoreUnavailable = "store_unavailable"
	// reasonContextFull: the request leaves no room in the backend's
	// context (config.Backend.ContextTokens) for a note.
	reasonContextFull = "context_full"
	// reasonInternal: retrieval failed in a way dso did not foresee (a
	// panic); logged at error level.
	reasonInternal = "internal_error"
)

// Retrieval configures the request path's retrieval and injection.
type Retrieval struct {
	// Library holds the experiences, in its one embedding space: every
	// query is embedded there, whatever backend answers it. Nil disables
	// retrieval: requests are forwarded untouched (they still get a trace
	// id).
	Library *library.Library
	// Budget bounds one request's retrieval. Zero: 250ms.
	Budget time.Duration
	// TopK, MinConfidence, MinScore and MaxTokens are the defaults; zero
	// TopK means 5, nil MinScore the library's calibrated gate, zero
	// MaxTokens inject's default.
	TopK          int
	MinConfidence float64
	MinScore      *float64
	MaxTokens     int
	// InjectWhole injects a domain of at most this many experiences whole,
	// through the gate (library.Query.WholeDomain). Zero: off.
	InjectWhole int
	// Position is where the notes go (config.PositionUser, the default:
	// with the newest user turn; config.PositionSystem: in the system
	// message).
	Position string
	// ForgetTurns places the notes with the newest user turn only,
	// without putting back those of the conversation's earlier turns
	// (see conversation.go): the placement alone, for measuring what
	// putting them back keeps.
	ForgetTurns bool
	// NodeID is recorded on experiences created here.
	NodeID string
	// Models override injection settings by model pattern (first match).
	Models []config.ModelInjection
}

// maxQueryBytes caps the text embedded for one query.
const maxQueryBytes = 4096

// maxTraceAnswer caps the answer bytes kept for a trace.
const maxTraceAnswer = 64 << 10

// requestKind says where the query text and the injected note live.
type requestKind int

const (
	kindChat       requestKind = iota // messages
	kindGenerate                      // prompt / system
	kindResponses                     // a Responses API body relayed as is: input
	kindCompletion                    // a legacy completions body relayed as is: prompt
	kindMessages                      // an Anthropic Messages body relayed as is: messages / system
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
	if s.opts.Retrieval.Library == nil {
		// Nothing to retrieve, and no store to keep a trace in: no trace
		// id is handed out that feedback could never find.
		s.metrics.cached.retrieval.get("off").Inc()
		s.recordOutcome("off", 0)
		return body, nil, nil
	}
	tr := &trace{rec: store.Trace{ID: newTraceID(), Domain: st.domain, Model: model}, answer: &cappedBuffer{max: maxTraceAnswer}, w: w}
	h := w.Header()
	if s.spool.full() {
		// The store is away and the spool full: this trace would be
		// lost, so its id is not handed out.
		tr.discard = true
	} else {
		// Feedback may name this trace as soon as the client has the
		// answer, before the trace is stored: POST /v1/feedback waits
		// for the write (awaitTrace), header feedback queues its vote
		// behind it.
		s.pending.Store(tr.rec.ID, make(chan struct{}))
		h.Set(keyTraceID, tr.rec.ID)
	}
	// X-DSO-Experiences only where notes went in (issue 26: an empty
	// header told clients nothing and cost them a header to parse); a
	// backend's header of that name is dropped all the same (copyHeaders).
	query := queryText(body, kind)
	tr.rec.Query = query
	if st.off {
		s.metrics.cached.retrieval.get("off").Inc()
		s.recordOutcome("off", 0)
		return body, tr, nil
	}
	ret := s.retrieve(s.withClientAuth(r), body, model, query, kind, st)
	if ret.reason != "" {
		h.Set(keyDegraded, ret.reason)
		s.metrics.cached.retrieval.get(ret.reason).Inc()
		s.recordOutcome(ret.reason, 0)
		return body, tr, nil
	}
	h.Set(keyGate, formatScore(ret.gate))
	if len(ret.ids) == 0 {
		// Nothing new matched the filters and cleared the gate; notes
		// of earlier turns may have been put back.
		s.metrics.cached.retrieval.get("none").Inc()
		s.recordOutcome("none", 0)
		return ret.body, tr, nil
	}
	s.metrics.cached.retrieval.get("injected").Inc()
	s.metrics.injected.Observe(float64(len(ret.ids)))
	s.recordOutcome("injected", len(ret.ids))
	h.Set(keyExperiences, strings.Join(ret.ids, ","))
	h.Set(HeaderScores, strings.Join(ret.scores, ","))
	tr.rec.ExperienceIDs = ret.ids
	return ret.body, tr, nil
}

// withClientAuth is r's context carrying the client's credentials for
// the library's embedding calls, as its chat would carry them: only when
// dso checks no keys of its own (its keys are never forwarded).
func (s *Server) withClientAuth(r *http.Request) context.Context {
	if len(s.keys.digests) > 0 || len(s.admin.digests) > 0 {
		return r.Context()
	}
	return providers.WithClientAuth(r.Context(), r.Header.Get("Authorization"))
}

// formatScore writes a relevance as the response headers show it.
func formatScore(f float32) string { return strconv.FormatFloat(float64(f), 'f', 3, 32) }

// retrieval is what one request's retrieval came to.
type retrieval struct {
	body   []byte   // the body to forward
	ids    []string // the experiences injected, in order
	scores []string // their relevance, formatted
	gate   float32  // the relevance threshold applied
	reason string   // a degraded reason, or ""
}

// retrieve embeds, aligns, searches and injects within the budget. A
// panic in any of it fails open like any other retrieval failure.
func (s *Server) retrieve(ctx context.Context, body []byte, model, query string, kind requestKind, st settings) (ret retrieval) {
	defer func() {
		if p := recover(); p != nil {
			s.log.ErrorContext(ctx, "panic in retrieval; the request goes on without injection", logKeyRequestID, RequestID(ctx), "panic", fmt.Sprint(p))
			ret = retrieval{reason: reasonInternal}
		}
	}()
	return s.retrieveOpen(ctx, body, model, query, kind, st)
}

func (s *Server) retrieveOpen(ctx context.Context, body []byte, model, query string, kind requestKind, st settings) retrieval {
	rt := s.opts.Retrieval
	if query == "" {
		return retrieval{reason: reasonNoQuery}
	}
	// Before the budget's timer: a library with nothing to search costs a
	// request no more than this.
	if reason := s.unsearchable(ctx); reason != "" {
		return retrieval{reason: reason}
	}
	ctx, cancel := context.WithTimeout(ctx, rt.Budget)
	defer cancel()
	res, gate, reason := s.find(ctx, query, st, false)
	if reason != "" {
		return retrieval{reason: reason}
	}
	ret := retrieval{body: body, gate: gate}
	// The inject stage is timed where there is something to place.
	t3 := time.Now()
	placing := false
	defer func() {
		if placing {
			s.observeStage(ctx, stageInject, time.Since(t3))
		}
	}()
	// Notes stay put where the conversation continues (conversation.go).
	var conv conversation
	keep := !rt.ForgetTurns && st.position != config.PositionSystem && (kind == kindChat || kind == kindMessages)
	if keep {
		conv = s.turns.recall(ctx, body, rt.Library.Active)
		res = slices.DeleteFunc(res, func(e library.Result) bool { return conv.held[e.ID] })
		if len(conv.earlier) > 0 {
			placing = true
			out, _, err := inject.AppendToMessages(body, conv.earlier)
			if err != nil {
				return retrieval{reason: reasonInjectError}
			}
			ret.body = out
		}
	}
	if len(res) == 0 {
		return ret
	}
	placing = true
	notes := make([]inject.Note, len(res))
	score := make(map[string]float32, len(res))
	for i, e := range res {
		notes[i] = inject.Note{ID: e.ID, Domain: e.Domain, Text: e.Text, Confidence: e.Confidence}
		score[e.ID] = e.Relevance
	}
	counter := inject.ReadyCounterFor(model)
	budget := rt.MaxTokens
	if budget <= 0 {
		budget = inject.DefaultMaxTokens
	}
	if room, ok := contextRoom(ret.body, st.contextTokens, counter); ok && room < budget {
		if budget = room; budget <= 0 {
			ret.reason = reasonContextFull
			return ret
		}
	}
	text, used := inject.Build(notes, inject.Options{MaxTokens: budget, Counter: counter})
	if len(used) == 0 {
		return ret
	}
	out, err := placeNotes(ret.body, text, kind, st.position)
	if err != nil {
		return retrieval{reason: reasonInjectError}
	}
	if keep {
		s.turns.remember(ctx, conv, text, used)
	}
	ret.body, ret.ids = out, used
	for _, id := range used {
		ret.scores = append(ret.scores, formatScore(score[id]))
	}
	return ret
}

// find embeds query in the library's space and searches it: the one
// retrieval step behind chats and the search API. It returns the matches
// that clear the gate (all of them, marked, with includeGated), the gate,
// or a degraded reason.
func (s *Server) find(ctx context.Context, query string, st settings, includeGated bool) ([]library.Result, float32, string) {
	lib := s.opts.Retrieval.Library
	if reason := s.unsearchable(ctx); reason != "" {
		return nil, 0, reason
	}
	timeout := func(err error, reason string) string {
		if errors.Is(err, context.DeadlineExceeded) || ctx.Err() != nil {
			return reasonTimeout
		}
		return reason
	}
	t0 := time.Now()
	raw, err := s.embedWithin(ctx, query)
	s.observeStage(ctx, stageEmbed, time.Since(t0))
	if err != nil {
		s.warnRetrieval(ctx, "retrieval: embedding the question failed", err)
		return nil, 0, timeout(err, reasonEmbedError)
	}
	s.retrievalWarned.Store(false)
	t1 := time.Now()
	vec, err := lib.Align(raw)
	s.observeStage(ctx, stageAlign, time.Since(t1))
	if err != nil {
		return nil, 0, reasonAlignError
	}
	t2 := time.Now()
	q := library.Query{Vector: vec, Text: query, K: st.topK, Domain: st.domain, MinConfidence: st.minConfidence, MinRelevance: st.minScore, Stricter: st.stricter, IncludeGated: includeGated, WholeDomain: s.opts.Retrieval.InjectWhole}
	res, err := lib.Search(ctx, q)
	s.observeStage(ctx, stageSearch, time.Since(t2))
	switch {
	case errors.Is(err, library.ErrEmpty):
		return nil, 0, reasonIndexEmpty
	case errors.Is(err, library.ErrNotReady):
		return nil, 0, reasonNotReady
	case errors.Is(err, store.ErrUnavailable) && ctx.Err() == nil:
		s.storeAway.Store(true) // until a trace write or /readyz finds it back
		return nil, 0, reasonStoreUnavailable
	case err != nil:
		return nil, 0, timeout(err, reasonSearchError)
	}
	return res, lib.GateFor(q), ""
}

// unsearchable is why the library cannot be searched now, or "": its
// space is not ready, or it holds nothing.
func (s *Server) unsearchable(ctx context.Context) string {
	lib := s.opts.Retrieval.Library
	if lib.StoreAway() || s.storeAway.Load() {
		// The index is as this replica last read the store: what was
		// retired or changed since is unknown, and the trace of what
		// would be injected may not be kept.
		return reasonStoreUnavailable
	}
	if lib.Ready() != nil {
		// With this request's credentials the embedder may answer now.
		lib.PrepareInBackground(ctx)
		return reasonNotReady
	}
	if lib.Len() == 0 {
		return reasonIndexEmpty
	}
	return ""
}

// warnRetrieval logs a retrieval failure at warn level the first time and
// after each success, at debug level otherwise, so that a broken embedder
// is said once, not once per request.
func (s *Server) warnRetrieval(ctx context.Context, msg string, err error) {
	level := slog.LevelDebug
	if s.retrievalWarned.CompareAndSwap(false, true) {
		level = slog.LevelWarn
	}
	s.log.Log(ctx, level, msg, logKeyRequestID, RequestID(ctx), logKeyErr, err.Error())
}

// embedWithin embeds text in the library's space, giving up when ctx ends
// even if the embedder does not watch its context.
func (s *Server) embedWithin(ctx context.Context, text string) ([]float32, error) {
	type result struct {
		v   []float32
		err error
	}
	ch := make(chan result, 1)
	go func() {
		vs, err := s.opts.Retrieval.Library.Embed(ctx, text)
		var v []float32
		if err == nil {
			v = vs[0]
		}
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
	root := readJSON(body) // validated by the handler
	if kind == kindGenerate || kind == kindCompletion {
		p := lastField(root, "prompt")
		if p.Type != gjson.String {
			return ""
		}
		return strings.Clone(capText(strings.TrimSpace(p.Str), maxQueryBytes))
	}
	var users []gjson.Result
	if kind == kindResponses {
		in := lastField(root, "input")
		if in.Type == gjson.String {
			return strings.Clone(capText(strings.TrimSpace(in.Str), maxQueryBytes))
		}
		in.ForEach(func(_, it gjson.Result) bool {
			if lastField(it, "role").Str == "user" {
				users = append(users, lastField(it, "content"))
			}
			return true
		})
	} else {
		lastField(root, "messages").ForEach(func(_, m gjson.Result) bool {
			if lastField(m, "role").Str == "user" {
				users = append(users, lastField(m, "content"))
			}
			return true
		})
	}
	var turns []string
	for i := len(users) - 1; i >= 0 && len(turns) < 2; i-- {
		if t := strings.TrimSpace(partsText(users[i])); t != "" {
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
	return strings.Clone(capText(q, maxQueryBytes))
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

// cappedBuffer keeps the first max bytes written to it, and the last
// maxUsageTail bytes (where a stream's usage is).
type cappedBuffer struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	max  int
	tail []byte
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
	if c.buf.Len() >= c.max { // past the head: keep the tail apart
		if len(p) >= maxUsageTail {
			c.tail = append(c.tail[:0], p[len(p)-maxUsageTail:]...)
		} else {
			if over := len(c.tail) + len(p) - maxUsageTail; over > 0 {
				c.tail = append(c.tail[:0], c.tail[over:]...)
			}
			c.tail = append(c.tail, p...)
		}
	}
	return len(p), nil
}

func (c *cappedBuffer) Bytes() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.Bytes()
}

// Tail is the end of what was written: the last bytes of the head when
// it all fit, else the last maxUsageTail bytes written.
func (c *cappedBuffer) Tail() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.tail) > 0 {
		return c.tail
	}
	b := c.buf.Bytes()
	return b[max(0, len(b)-maxUsageTail):]
}
