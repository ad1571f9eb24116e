package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/dso-proxy/dso/config"
	"github.com/dso-proxy/dso/providers"
	"github.com/dso-proxy/dso/store"
	"github.com/go-chi/chi/v5"
)

// relayResponses serves POST /v1/responses over backends that serve it
// themselves: the notes go in as an input item after the client's input
// (inject.ResponsesInput), and the backend's bytes are relayed as a
// chat's are.
func (s *Server) relayResponses(w http.ResponseWriter, r *http.Request, body []byte, chain []providers.Backend, model string) {
	const sf = surfaceOpenAI
	fwd, tr, err := s.augment(w, r, body, chain[0], model, kindResponses)
	if err != nil {
		s.fail(w, r, sf, err)
		return
	}
	defer s.recordTrace(r.Context(), tr)
	resp, b, err := s.dispatch(r.Context(), chain, func(ctx context.Context, b providers.Backend) (*http.Response, error) {
		return b.(responsesBackend).Responses(ctx, http.MethodPost, "", "", fwd, s.upstreamHeader(r, b.Config().APIKey != ""))
	})
	if err != nil {
		s.failFrom(w, r, sf, b, config.TypeOpenAI, err)
		return
	}
	s.relay(w, resp, sf, tr.tee(framingOf(resp) == framingNone && resp.ContentLength >= 0))
}

// relayResponseCall asks the backends that serve the Responses API
// themselves for a response dso does not keep (sub names it below
// /responses), and relays the first answer that is not a 404. It reports
// whether it wrote a response; with no such backend it writes nothing.
func (s *Server) relayResponseCall(w http.ResponseWriter, r *http.Request, method, sub string) bool {
	var last error
	var lastB providers.Backend
	for _, b := range s.router.Backends() {
		rb, ok := b.(responsesBackend)
		if !ok || !b.Config().NativeResponses() {
			continue
		}
		resp, err := rb.Responses(r.Context(), method, sub, r.URL.RawQuery, nil, s.upstreamHeader(r, b.Config().APIKey != ""))
		if err == nil {
			info(r.Context()).backend = b.Name()
			s.relay(w, resp, surfaceOpenAI, nil)
			return true
		}
		var se *providers.StatusError
		if errors.As(err, &se) && se.StatusCode == http.StatusNotFound {
			last, lastB = err, b
			continue
		}
		s.failFrom(w, r, surfaceOpenAI, b, config.TypeOpenAI, err)
		return true
	}
	if last != nil {
		s.failFrom(w, r, surfaceOpenAI, lastB, config.TypeOpenAI, last)
		return true
	}
	return false
}

// listInputItems serves GET /v1/responses/{id}/input_items: the input
// items of a kept response, newest first unless order=asc, limit (1 to
// 100, default 20) at a time after the item named by after.
func (s *Server) listInputItems(w http.ResponseWriter, r *http.Request) {
	id := chi.URLParam(r, "id")
	rec, err := s.responses.GetResponse(r.Context(), id)
	if errors.Is(err, store.ErrNotFound) && s.relayResponseCall(w, r, http.MethodGet, "/"+id+"/input_items") {
		return
	}
	if err != nil {
		s.fail(w, r, surfaceOpenAI, responseLookupError(err, id, "id"))
		return
	}
	q := r.URL.Query()
	limit := 20
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 100 {
			s.fail(w, r, surfaceOpenAI, badRequest("limit must be an integer from 1 to 100"))
			return
		}
		limit = n
	}
	order := q.Get("order")
	if order != "" && order != "asc" && order != "desc" {
		s.fail(w, r, surfaceOpenAI, badRequest("order must be asc or desc"))
		return
	}
	var items []json.RawMessage
	if err := json.Unmarshal(rec.Input, &items); err != nil {
		s.fail(w, r, surfaceOpenAI, err)
		return
	}
	if order != "asc" {
		for i, j := 0, len(items)-1; i < j; i, j = i+1, j-1 {
			items[i], items[j] = items[j], items[i]
		}
	}
	if after := q.Get("after"); after != "" {
		for i, it := range items {
			var v struct {
				ID string `json:"id"`
			}
			if json.Unmarshal(it, &v) == nil && v.ID == after {
				items = items[i+1:]
				break
			}
		}
	}
	more := len(items) > limit
	if more {
		items = items[:limit]
	}
	out := map[string]any{"object": "list", "data": items, "has_more": more, "first_id": nil, "last_id": nil}
	if len(items) > 0 {
		var first, last struct {
			ID string `json:"id"`
		}
		_ = json.Unmarshal(items[0], &first)
		_ = json.Unmarshal(items[len(items)-1], &last)
		out["first_id"], out["last_id"] = first.ID, last.ID
	}
	writeJSON(w, http.StatusOK, out)
}

// Memory-kept responses, for a server with no store.
const (
	// DefaultMemoryResponses is how many responses memory keeps.
	DefaultMemoryResponses = 1024
	// DefaultResponseMaxAge is how long a kept response is served.
	DefaultResponseMaxAge = store.DefaultResponseMaxAge
)

// memResponses keeps the newest max responses in memory, each for at
// most maxAge.
type memResponses struct {
	max    int
	maxAge time.Duration
	now    func() time.Time

	mu    sync.Mutex // protects the fields below
	byID  map[string]store.Response
	order []string // ids, oldest first; may hold deleted or replaced ids
}

func newMemResponses(max int, maxAge time.Duration, now func() time.Time) *memResponses {
	return &memResponses{max: max, maxAge: maxAge, now: now, byID: map[string]store.Response{}}
}

func (m *memResponses) PutResponse(_ context.Context, r store.Response) error {
	if r.CreatedAt.IsZero() {
		r.CreatedAt = m.now()
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.byID[r.ID] = r
	m.order = append(m.order, r.ID)
	for len(m.byID) > m.max {
		delete(m.byID, m.order[0])
		m.order = m.order[1:]
	}
	if len(m.order) > 2*m.max { // deleted ids linger in order: drop them
		kept := m.order[:0]
		for _, id := range m.order {
			if _, ok := m.byID[id]; ok {
				kept = append(kept, id)
			}
		}
		m.order = kept
	}
	return nil
}

func (m *memResponses) GetResponse(_ context.Context, id string) (store.Response, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.byID[id]
	if !ok || m.now().Sub(r.CreatedAt) > m.maxAge {
		return store.Response{}, store.ErrNotFound
	}
	return r, nil
}

func (m *memResponses) DeleteResponse(_ context.Context, id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.byID[id]; !ok {
		return store.ErrNotFound
	}
	delete(m.byID, id)
	return nil
}
