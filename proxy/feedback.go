package proxy

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/dso-proxy/dso/learn"
	"github.com/dso-proxy/dso/store"
)

// Feedback headers.
const (
	// HeaderFeedback grades earlier answers on any request:
	// "<trace-id>=<grade>[; <trace-id>=<grade> ...]", grade in [0,1] or up/down.
	HeaderFeedback = "X-DSO-Feedback"
	// HeaderCorrection gives the right answer for a graded trace:
	// "<trace-id>=<percent-encoded text>".
	HeaderCorrection = "X-DSO-Correction"
	// HeaderVoter names the voter; honoured only with an admin key.
	HeaderVoter = "X-DSO-Voter"
	// HeaderFeedbackAccepted and HeaderFeedbackRejected report what became
	// of header feedback; the request itself goes on either way.
	HeaderFeedbackAccepted = "X-DSO-Feedback-Accepted"
	HeaderFeedbackRejected = "X-DSO-Feedback-Rejected"
)

// Grader records feedback; *learn.Learner implements it.
type Grader interface {
	Grade(ctx context.Context, fb store.Feedback) error
}

var _ Grader = (*learn.Learner)(nil)

// maxFeedbackEntries caps the grades one header may carry.
const maxFeedbackEntries = 16

// voter is the client's identity for voting: the hash of its key, or
// X-DSO-Voter when an admin key allows it, or its address when there are
// no keys at all.
func (s *Server) voter(r *http.Request) string {
	key := presentedKey(r)
	if v := r.Header.Get(HeaderVoter); v != "" && len(s.admin.digests) > 0 && s.admin.check(key) && len(v) <= 128 {
		return "name:" + v
	}
	if key != "" {
		d := sha256.Sum256([]byte(key))
		return "key:" + hex.EncodeToString(d[:8])
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	return "addr:" + host
}

// parseGrade accepts a number in [0,1] or thumbs up/down.
func parseGrade(raw json.RawMessage) (float64, error) {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return gradeString(s)
	}
	var f float64
	if err := json.Unmarshal(raw, &f); err != nil {
		return 0, errors.New("grade must be a number from 0 to 1, or up or down")
	}
	if !(f >= 0 && f <= 1) {
		return 0, errors.New("grade must be between 0 and 1")
	}
	return f, nil
}

func gradeString(s string) (float64, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "up", "👍", "thumbs_up", "good":
		return 1, nil
	case "down", "👎", "thumbs_down", "bad":
		return 0, nil
	}
	f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil || !(f >= 0 && f <= 1) {
		return 0, fmt.Errorf("grade %q must be a number from 0 to 1, or up or down", s)
	}
	return f, nil
}

// postFeedback serves POST /v1/feedback.
func (s *Server) postFeedback(w http.ResponseWriter, r *http.Request) {
	const sf = surfaceOpenAI
	if s.opts.Learner == nil {
		s.fail(w, r, sf, &HTTPError{Status: http.StatusServiceUnavailable, Type: "api_error", Msg: "learning is disabled on this node"})
		return
	}
	body, err := s.readBody(w, r)
	if err != nil {
		s.fail(w, r, sf, err)
		return
	}
	var in struct {
		TraceID    string          `json:"trace_id"`
		Grade      json.RawMessage `json:"grade"`
		Comment    string          `json:"comment"`
		Correction string          `json:"correction"`
	}
	if err := json.Unmarshal(body, &in); err != nil {
		s.fail(w, r, sf, badRequest("request body is not valid JSON: %s", jsonErrMsg(err)))
		return
	}
	if in.TraceID == "" {
		s.fail(w, r, sf, badRequest("trace_id is required"))
		return
	}
	if len(in.Grade) == 0 {
		s.fail(w, r, sf, badRequest("grade is required"))
		return
	}
	g, err := parseGrade(in.Grade)
	if err != nil {
		s.fail(w, r, sf, badRequest("%v", err))
		return
	}
	fb := store.Feedback{TraceID: in.TraceID, Voter: s.voter(r), Grade: g, Comment: in.Comment, Correction: in.Correction}
	s.awaitTrace(r.Context(), fb.TraceID)
	if err := s.opts.Learner.Grade(r.Context(), fb); err != nil {
		s.fail(w, r, sf, feedbackError(err))
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"object": "feedback", "trace_id": fb.TraceID, "grade": g, "voter": fb.Voter, "accepted": true})
}

func feedbackError(err error) error {
	switch {
	case errors.Is(err, learn.ErrUnknownTrace):
		return &HTTPError{Status: http.StatusBadRequest, Type: "invalid_request_error", Code: "unknown_trace", Msg: "unknown trace_id", Err: err}
	case errors.Is(err, learn.ErrBadGrade), errors.Is(err, store.ErrInvalid):
		return &HTTPError{Status: http.StatusBadRequest, Type: "invalid_request_error", Msg: err.Error(), Err: err}
	}
	return &HTTPError{Status: http.StatusInternalServerError, Type: "api_error", Msg: "feedback could not be recorded", Err: err}
}

// headerFeedback applies X-DSO-Feedback on a chat request. The request goes
// on whatever happens; the response says what was accepted and rejected.
func (s *Server) headerFeedback(w http.ResponseWriter, r *http.Request) {
	raw := r.Header.Values(HeaderFeedback)
	if len(raw) == 0 {
		return
	}
	var rejected []string
	reject := func(format string, args ...any) { rejected = append(rejected, fmt.Sprintf(format, args...)) }
	defer func() {
		if len(rejected) > 0 {
			w.Header().Set(HeaderFeedbackRejected, strings.Join(rejected, "; "))
		}
	}()
	if s.closed {
		reject("%s", errLibraryClosed().Msg)
		return
	}
	if s.opts.Learner == nil {
		reject("learning is disabled on this node")
		return
	}
	corrections := map[string]string{}
	for _, v := range r.Header.Values(HeaderCorrection) {
		id, text, ok := strings.Cut(v, "=")
		if t, err := url.QueryUnescape(text); ok && err == nil {
			corrections[strings.TrimSpace(id)] = t
		} else {
			reject("%s must be <trace-id>=<percent-encoded text>", HeaderCorrection)
		}
	}
	var entries []string
	for _, v := range raw {
		for _, e := range strings.Split(v, ";") {
			if e = strings.TrimSpace(e); e != "" {
				entries = append(entries, e)
			}
		}
	}
	if len(entries) > maxFeedbackEntries {
		reject("at most %d grades per request", maxFeedbackEntries)
		entries = entries[:maxFeedbackEntries]
	}
	voter := s.voter(r)
	accepted := 0
	for _, e := range entries {
		id, gs, ok := strings.Cut(e, "=")
		id = strings.TrimSpace(id)
		if !ok || id == "" || len(id) > 128 {
			reject("%q is not <trace-id>=<grade>", clipHeader(e))
			continue
		}
		g, err := gradeString(gs)
		if err != nil {
			reject("%s: %v", clipHeader(id), err)
			continue
		}
		s.awaitTrace(r.Context(), id)
		err = s.opts.Learner.Grade(r.Context(), store.Feedback{TraceID: id, Voter: voter, Grade: g, Correction: corrections[id]})
		if err != nil {
			reject("%s: %s", clipHeader(id), feedbackError(err).(*HTTPError).Msg)
			continue
		}
		accepted++
	}
	w.Header().Set(HeaderFeedbackAccepted, strconv.Itoa(accepted))
}

func clipHeader(s string) string {
	if len(s) > 64 {
		s = s[:64]
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r > 0x7e {
			return '?'
		}
		return r
	}, s)
}
