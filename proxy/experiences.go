package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/dso-proxy/dso/library"
	"github.com/dso-proxy/dso/store"
	"github.com/go-chi/chi/v5"
)

// experienceJSON is an experience as the API shows it (the code stays
// inside dso).
type experienceJSON struct {
	ID          string    `json:"id"`
	Object      string    `json:"object"`
	Text        string    `json:"text"`
	Domain      string    `json:"domain"`
	Confidence  float64   `json:"confidence"`
	Status      string    `json:"status"`
	SourceModel string    `json:"source_model,omitempty"`
	SourceNode  string    `json:"source_node,omitempty"`
	TraceID     string    `json:"trace_id,omitempty"`
	CreatedAt   time.Time `json:"created_at"`
	UpdatedAt   time.Time `json:"updated_at"`
	Space       string    `json:"space,omitempty"`
	Score       *float32  `json:"score,omitempty"`
	Relevance   *float32  `json:"relevance,omitempty"`
	Injected    *bool     `json:"injected,omitempty"`
	// Votes and Approval are filled on request (GET
	// /v1/experiences?include=votes): each costs a read.
	Votes    *votesJSON `json:"votes,omitempty"`
	Approval *float64   `json:"approval,omitempty"`
}

func toJSON(e store.Experience) experienceJSON {
	return experienceJSON{
		ID: e.ID, Object: "experience", Text: e.Text, Domain: e.Domain, Confidence: e.Confidence,
		Status: string(e.Status), SourceModel: e.SourceModel, SourceNode: e.SourceNode, TraceID: e.TraceID,
		Space: e.Space, CreatedAt: e.CreatedAt, UpdatedAt: e.UpdatedAt,
	}
}

// library returns the library or an error saying retrieval is off.
func (s *Server) library() (*library.Library, error) {
	if s.opts.Retrieval.Library == nil {
		return nil, &HTTPError{Status: http.StatusServiceUnavailable, Type: "api_error", Msg: "retrieval is disabled on this node"}
	}
	return s.opts.Retrieval.Library, nil
}

// createExperience serves POST /v1/experiences.
func (s *Server) createExperience(w http.ResponseWriter, r *http.Request) {
	const sf = surfaceOpenAI
	lib, err := s.library()
	if err != nil {
		s.fail(w, r, sf, err)
		return
	}
	body, err := s.readBody(w, r)
	if err != nil {
		s.fail(w, r, sf, err)
		return
	}
	var in struct {
		Text       *string  `json:"text"`
		Domain     string   `json:"domain"`
		Confidence *float64 `json:"confidence"`
	}
	if err := json.Unmarshal(body, &in); err != nil {
		s.fail(w, r, sf, badRequest("request body is not valid JSON: %s", jsonErrMsg(err)))
		return
	}
	if in.Text == nil || store.NormalizeText(*in.Text) == "" {
		s.fail(w, r, sf, badRequest("text is required"))
		return
	}
	conf := 0.5
	if in.Confidence != nil {
		conf = *in.Confidence
	}
	if conf < 0 || conf > 1 {
		s.fail(w, r, sf, badRequest("confidence must be between 0 and 1"))
		return
	}
	// A duplicate needs no embedding: return the stored record.
	if e, err := storeOf(lib).GetExperience(r.Context(), store.ExperienceID(in.Domain, *in.Text)); err == nil {
		writeJSON(w, http.StatusOK, toJSON(e))
		return
	}
	e, created, err := lib.Add(s.withClientAuth(r), store.Experience{
		Text: *in.Text, Domain: in.Domain, Confidence: conf, SourceNode: s.opts.Retrieval.NodeID,
	})
	if err != nil {
		s.fail(w, r, sf, libraryError(err))
		return
	}
	code := http.StatusOK
	if created {
		code = http.StatusCreated
	}
	writeJSON(w, code, toJSON(e))
}

// libraryError maps the library's errors to client-facing ones: an
// embedding space that cannot embed now is a 503 to retry, not a 500.
func libraryError(err error) error {
	switch {
	case errors.Is(err, library.ErrNotReady):
		return &HTTPError{Status: http.StatusServiceUnavailable, Type: "api_error", Code: "space_unavailable",
			Msg: "the library's embedding space is not available yet; retry later", Err: err, RetryAfter: 5}
	case errors.Is(err, library.ErrNoText):
		return badRequest("text is empty")
	case errors.Is(err, store.ErrNotFound), errors.Is(err, store.ErrInvalid), errors.Is(err, store.ErrUnavailable):
		return storeError(err)
	}
	return &HTTPError{Status: http.StatusBadGateway, Type: "api_error", Msg: "could not embed the text in the library's space", Err: err}
}

// storeError maps store errors to client-facing ones.
func storeError(err error) error {
	switch {
	case errors.Is(err, store.ErrNotFound):
		return &HTTPError{Status: http.StatusNotFound, Type: "invalid_request_error", Code: "not_found", Msg: "no experience with this id", Err: err}
	case errors.Is(err, store.ErrInvalid):
		return &HTTPError{Status: http.StatusBadRequest, Type: "invalid_request_error", Msg: err.Error(), Err: err}
	case errors.Is(err, store.ErrUnavailable):
		return unavailableError(err)
	}
	return &HTTPError{Status: http.StatusInternalServerError, Type: "api_error", Msg: "the store failed", Err: err}
}

// listExperiences serves GET /v1/experiences?domain=&status=&limit=&after=&include=votes.
func (s *Server) listExperiences(w http.ResponseWriter, r *http.Request) {
	const sf = surfaceOpenAI
	lib, err := s.library()
	if err != nil {
		s.fail(w, r, sf, err)
		return
	}
	q := r.URL.Query()
	opts := store.ListOptions{DomainPrefix: q.Get("domain"), Status: store.Status(q.Get("status")), After: q.Get("after")}
	if opts.Status != "" && !opts.Status.Valid() {
		s.fail(w, r, sf, badRequest("status must be active or retired"))
		return
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			s.fail(w, r, sf, badRequest("limit must be an integer from 1 to 1000"))
			return
		}
		opts.Limit = n
	}
	exps, next, err := storeOf(lib).ListExperiences(r.Context(), opts)
	if err != nil {
		s.fail(w, r, sf, storeError(err))
		return
	}
	data := make([]experienceJSON, len(exps))
	for i, e := range exps {
		data[i] = toJSON(e)
	}
	if q.Get("include") == "votes" {
		if err := s.talliesFor(r.Context(), storeOf(lib), data); err != nil {
			s.fail(w, r, sf, storeError(err))
			return
		}
	}
	writeList(w, data, next)
}

// searchExperiences serves GET /v1/experiences/search?q=&domain=&k=&min_confidence=&min_score=:
// what retrieval would do for q, through the same step as a chat: every
// match with its score and relevance, whether it clears the gate, and the
// gate.
func (s *Server) searchExperiences(w http.ResponseWriter, r *http.Request) {
	const sf = surfaceOpenAI
	if _, err := s.library(); err != nil {
		s.fail(w, r, sf, err)
		return
	}
	q := r.URL.Query()
	text := q.Get("q")
	if text == "" {
		s.fail(w, r, sf, badRequest("q is required"))
		return
	}
	rt := s.opts.Retrieval
	st := settings{domain: q.Get("domain"), topK: rt.TopK, minConfidence: rt.MinConfidence, minScore: score32(rt.MinScore)}
	if v := q.Get("k"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 100 {
			s.fail(w, r, sf, badRequest("k must be an integer from 1 to 100"))
			return
		}
		st.topK = n
	}
	if v := q.Get("min_confidence"); v != "" {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f < 0 || f > 1 {
			s.fail(w, r, sf, badRequest("min_confidence must be a number from 0 to 1"))
			return
		}
		st.minConfidence = f
	}
	if v := q.Get("min_score"); v != "" && v != "auto" {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f < -1 || f > 1 {
			s.fail(w, r, sf, badRequest("min_score must be auto or a number from -1 to 1"))
			return
		}
		st.minScore = score32(&f)
	}
	ctx, cancel := context.WithTimeout(s.withClientAuth(r), maxSearchWait)
	defer cancel()
	res, gate, reason := s.find(ctx, capText(text, maxQueryBytes), st, true)
	out := map[string]any{"object": "list", "data": []experienceJSON{}}
	switch reason {
	case "", reasonIndexEmpty:
	case reasonNotReady:
		s.fail(w, r, sf, libraryError(rt.Library.Ready()))
		return
	default:
		s.fail(w, r, sf, &HTTPError{Status: http.StatusBadGateway, Type: "api_error", Code: reason, Msg: "retrieval failed: " + reason})
		return
	}
	if reason == "" {
		out["gate"] = gate
	}
	if g, ok := rt.Library.Gate(); ok {
		out["calibration"] = g
	}
	data := make([]experienceJSON, 0, len(res))
	for _, e := range res {
		j := toJSON(e.Experience)
		j.Score, j.Relevance, j.Injected = &e.Score, &e.Relevance, &e.Passed
		data = append(data, j)
	}
	out["data"] = data
	writeJSON(w, http.StatusOK, out)
}

// maxSearchWait bounds one search API call (an embedding included).
const maxSearchWait = 30 * time.Second

// getExperience serves GET /v1/experiences/{id}?include=votes.
func (s *Server) getExperience(w http.ResponseWriter, r *http.Request) {
	lib, err := s.library()
	if err != nil {
		s.fail(w, r, surfaceOpenAI, err)
		return
	}
	e, err := storeOf(lib).GetExperience(r.Context(), chi.URLParam(r, "id"))
	if err != nil {
		s.fail(w, r, surfaceOpenAI, storeError(err))
		return
	}
	data := []experienceJSON{toJSON(e)}
	if r.URL.Query().Get("include") == "votes" {
		if err := s.talliesFor(r.Context(), storeOf(lib), data); err != nil {
			s.fail(w, r, surfaceOpenAI, storeError(err))
			return
		}
	}
	writeJSON(w, http.StatusOK, data[0])
}

// deleteExperience serves DELETE /v1/experiences/{id}.
func (s *Server) deleteExperience(w http.ResponseWriter, r *http.Request) {
	lib, err := s.library()
	if err != nil {
		s.fail(w, r, surfaceOpenAI, err)
		return
	}
	id := chi.URLParam(r, "id")
	if err := lib.Delete(r.Context(), id); err != nil {
		s.fail(w, r, surfaceOpenAI, storeError(err))
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"id": id, "object": "experience.deleted", "deleted": true})
}

// writeList writes one page of a listing: {"object":"list","data",
// "has_more"} and, when there is a next page, its cursor in "next".
func writeList[T any](w http.ResponseWriter, data []T, next string) {
	out := map[string]any{"object": "list", "data": data, "has_more": next != ""}
	if next != "" {
		out["next"] = next
	}
	writeJSON(w, http.StatusOK, out)
}
