package proxy

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/dso-proxy/dso/store"
	"github.com/go-chi/chi/v5"
)

// The JSON endpoints the dashboard (package ui) calls beside the
// experience API: traces, experience updates and vote tallies. They are
// ordinary API routes, authorised like the experience API.

// traceJSON is a trace as GET /v1/traces shows it.
type traceJSON struct {
	ID            string   `json:"id"`
	Object        string   `json:"object"`
	Query         string   `json:"query"`
	Domain        string   `json:"domain"`
	Model         string   `json:"model"`
	ExperienceIDs []string `json:"experience_ids"`
	// Experiences are the injected experiences' texts, in the order of
	// ExperienceIDs, so the page shows what was injected, not hashes;
	// "" for one deleted since.
	Experiences []traceExperience `json:"experiences"`
	Answer      string            `json:"answer"`
	CreatedAt   time.Time         `json:"created_at"`
	Grades      int               `json:"grades"`
	Grade       *float64          `json:"grade,omitempty"`
}

type traceExperience struct {
	ID   string `json:"id"`
	Text string `json:"text"`
}

// maxTraceExperienceShown caps an injected experience's text in a trace
// listing, as the answer is.
const maxTraceExperienceShown = 500

// maxTraceAnswerShown caps the answer excerpt a trace listing carries:
// the page shows an excerpt, and a page of full answers could be large.
const maxTraceAnswerShown = 2000

// listTraces serves GET /v1/traces?limit=&before=: recent traces, newest
// first, with their feedback; "next" is the cursor of the next page.
func (s *Server) listTraces(w http.ResponseWriter, r *http.Request) {
	const sf = surfaceOpenAI
	lib, err := s.library()
	if err != nil {
		s.fail(w, r, sf, err)
		return
	}
	q := r.URL.Query()
	opts := store.TraceListOptions{Limit: 50, Before: q.Get("before")}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > store.MaxTraceList {
			s.fail(w, r, sf, badRequest("limit must be an integer from 1 to %d", store.MaxTraceList))
			return
		}
		opts.Limit = n
	}
	ts, next, err := storeOf(lib).ListTraces(r.Context(), opts)
	if err != nil {
		s.fail(w, r, sf, storeError(err))
		return
	}
	data := make([]traceJSON, len(ts))
	texts := experienceTexts{st: storeOf(lib), seen: map[string]string{}}
	for i, t := range ts {
		j := traceJSON{
			ID: t.ID, Object: "trace", Query: t.Query, Domain: t.Domain, Model: t.Model,
			ExperienceIDs: t.ExperienceIDs, Answer: capText(t.Answer, maxTraceAnswerShown),
			CreatedAt: t.CreatedAt, Grades: t.Grades,
		}
		if j.ExperienceIDs == nil {
			j.ExperienceIDs = []string{}
		}
		j.Experiences = make([]traceExperience, len(j.ExperienceIDs))
		for k, id := range j.ExperienceIDs {
			j.Experiences[k] = traceExperience{ID: id, Text: texts.get(r.Context(), id)}
		}
		if t.Grades > 0 {
			g := t.Grade
			j.Grade = &g
		}
		data[i] = j
	}
	writeList(w, data, next)
}

// experienceTexts reads each experience's text once for a page of traces
// (most share their experiences): at most the page's traces × top-k reads.
type experienceTexts struct {
	st   Store
	seen map[string]string
}

func (e experienceTexts) get(ctx context.Context, id string) string {
	if t, ok := e.seen[id]; ok {
		return t
	}
	var text string
	if x, err := e.st.GetExperience(ctx, id); err == nil {
		text = capText(x.Text, maxTraceExperienceShown)
	}
	e.seen[id] = text
	return text
}

// patchExperience serves PATCH /v1/experiences/{id} with
// {"status": "active"|"retired", "confidence": 0..1}: retiring (or
// reviving) an experience and setting its confidence by hand. Text and
// domain cannot change: they define the id.
func (s *Server) patchExperience(w http.ResponseWriter, r *http.Request) {
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
		Status     *store.Status `json:"status"`
		Confidence *float64      `json:"confidence"`
	}
	if err := json.Unmarshal(body, &in); err != nil {
		s.fail(w, r, sf, badRequest("request body is not valid JSON: %s", jsonErrMsg(err)))
		return
	}
	if in.Status == nil && in.Confidence == nil {
		s.fail(w, r, sf, badRequest("nothing to change: give status or confidence"))
		return
	}
	if in.Status != nil && !in.Status.Valid() {
		s.fail(w, r, sf, badRequest("status must be active or retired"))
		return
	}
	if in.Confidence != nil && !(*in.Confidence >= 0 && *in.Confidence <= 1) {
		s.fail(w, r, sf, badRequest("confidence must be between 0 and 1"))
		return
	}
	e, err := lib.Update(r.Context(), chi.URLParam(r, "id"), store.Update{Status: in.Status, Confidence: in.Confidence})
	if err != nil {
		s.fail(w, r, sf, storeError(err))
		return
	}
	writeJSON(w, http.StatusOK, toJSON(e))
}

// tallier is what talliesFor needs of the store.
type tallier interface {
	Tally(ctx context.Context, experienceID string) (store.Tally, error)
}

// talliesFor adds each experience's votes and approval to a listing: one
// read each, so listings bound how many they hold.
func (s *Server) talliesFor(ctx context.Context, st tallier, data []experienceJSON) error {
	for i := range data {
		t, err := st.Tally(ctx, data[i].ID)
		if err != nil {
			return err
		}
		data[i].Votes = &votesJSON{Up: t.Up, Down: t.Down}
		if n := t.Up + t.Down; n > 0 {
			a := float64(t.Up) / float64(n)
			data[i].Approval = &a
		}
	}
	return nil
}

// votesJSON is an experience's tally, one vote per voter.
type votesJSON struct {
	Up   int `json:"up"`
	Down int `json:"down"`
}

// sameOrigin refuses cross-origin browser requests that could change
// something (POST, PATCH, DELETE): without it, in a library opened to
// everyone on the network (no keys), any web page a user visits could
// post experiences or grades through the user's browser. Requests from
// other programs carry neither Sec-Fetch-Site nor Origin and pass.
func (s *Server) sameOrigin(next http.Handler) http.Handler {
	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.fail(w, r, routeSurface(r), &HTTPError{Status: http.StatusForbidden, Type: "permission_error", Code: "cross_origin",
			Msg: "cross-origin requests may not change the library or send feedback"})
	}))
	return cop.Handler(next)
}
