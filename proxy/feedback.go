package proxy

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

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
	// HeaderVoter names the voter: outright with an admin key, or within
	// the client's key when Options.TrustVoterHeader is set.
	HeaderVoter = "X-DSO-Voter"
	// HeaderFeedbackAccepted, HeaderFeedbackQueued and
	// HeaderFeedbackRejected report what became of header feedback; the
	// request itself goes on either way, without waiting for any of it to
	// be written.
	//
	// Accepted is the number of grades accepted: well-formed, for a trace
	// this node has stored or is storing. Their votes are recorded in the
	// background, moments after the response.
	HeaderFeedbackAccepted = "X-DSO-Feedback-Accepted"
	// HeaderFeedbackQueued names, "<trace-id>=queued[; ...]", the accepted
	// grades whose trace was still being stored (feedback sent right after
	// its answer), here or, with a shared store, on another replica: each
	// vote is recorded once its trace is, and lost, with a warning in the
	// log, if the trace never is.
	HeaderFeedbackQueued = "X-DSO-Feedback-Queued"
	// HeaderFeedbackRejected gives the reason for each grade rejected:
	// malformed, out of range, or for a trace this node does not have.
	HeaderFeedbackRejected = "X-DSO-Feedback-Rejected"
)

// Grader records feedback; *learn.Learner implements it.
type Grader interface {
	Grade(ctx context.Context, fb store.Feedback) error
}

var _ Grader = (*learn.Learner)(nil)

// maxFeedbackEntries caps the grades one header may carry.
const maxFeedbackEntries = 16

// voter is the client's identity for voting: the hash of its key, or its
// address when there are no keys at all. X-DSO-Voter names the voter
// outright with an admin key; with Options.TrustVoterHeader it names a
// member within the client's own identity ("key:…/name:alice"), so a team
// sharing one key votes as its members (and can retire a lesson), while
// no header can speak for another key's voters or an admin-named one.
func (s *Server) voter(r *http.Request) string {
	key := presentedKey(r)
	name := r.Header.Get(HeaderVoter)
	named := name != "" && len(name) <= 128
	if named && len(s.admin.digests) > 0 && s.admin.check(key) {
		return "name:" + name
	}
	var id string
	if key != "" {
		d := sha256.Sum256([]byte(key))
		id = "key:" + hex.EncodeToString(d[:8])
	} else {
		id = "addr:" + s.clientAddr(r)
	}
	if named && s.opts.TrustVoterHeader {
		return id + "/name:" + name
	}
	return id
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
	parked, err := s.grade(r.Context(), fb)
	if err != nil {
		s.fail(w, r, sf, feedbackError(err))
		return
	}
	out := map[string]any{"object": "feedback", "trace_id": fb.TraceID, "grade": g, "voter": fb.Voter, "accepted": true}
	if parked {
		// Another replica is storing the trace: recorded when it is.
		out["queued"] = true
		writeJSON(w, http.StatusAccepted, out)
		return
	}
	s.stats.feedback()
	writeJSON(w, http.StatusOK, out)
}

func feedbackError(err error) error {
	switch {
	case errors.Is(err, learn.ErrUnknownTrace):
		return &HTTPError{Status: http.StatusBadRequest, Type: "invalid_request_error", Code: "unknown_trace", Msg: "unknown trace_id", Err: err}
	case errors.Is(err, learn.ErrBadGrade), errors.Is(err, store.ErrInvalid):
		return &HTTPError{Status: http.StatusBadRequest, Type: "invalid_request_error", Msg: err.Error(), Err: err}
	case errors.Is(err, store.ErrUnavailable):
		return unavailableError(err)
	case errors.Is(err, store.ErrParkingFull):
		return &HTTPError{Status: http.StatusServiceUnavailable, Type: "api_error", Code: "overloaded",
			Msg: "too much feedback is waiting for its traces; send it again shortly", Err: err}
	}
	return &HTTPError{Status: http.StatusInternalServerError, Type: "api_error", Msg: "feedback could not be recorded", Err: err}
}

// headerFeedback takes X-DSO-Feedback on a chat request. The request goes
// on whatever happens, and never waits for a store write: each grade is
// checked here (its syntax and range, and with a read whether its trace is
// known) and a valid one is queued for recordFeedback. The response says
// what was accepted, queued and rejected.
func (s *Server) headerFeedback(w http.ResponseWriter, r *http.Request) {
	raw := r.Header.Values(keyFeedback)
	if len(raw) == 0 {
		return
	}
	var rejected, queued []string
	reject := func(format string, args ...any) { rejected = append(rejected, fmt.Sprintf(format, args...)) }
	defer func() {
		if len(queued) > 0 {
			w.Header().Set(HeaderFeedbackQueued, strings.Join(queued, "; "))
		}
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
		fb := store.Feedback{TraceID: id, Voter: voter, Grade: g, Correction: corrections[id]}
		if err := fb.Validate(); err != nil {
			reject("%s: %s", clipHeader(id), feedbackError(err).(*HTTPError).Msg)
			continue
		}
		state, err := s.traceState(r.Context(), id)
		if err != nil {
			s.feedbackFails.add(r.Context(), 1, fmt.Errorf("request %s, trace %s: checking the trace: %w", RequestID(r.Context()), clipHeader(id), err))
			reject("%s: %s", clipHeader(id), feedbackError(err).(*HTTPError).Msg)
			continue
		}
		if state == traceUnknown && s.parker() != nil && s.mayBeStoring(id) {
			state = traceWriting // by another replica, it may be: parked if so
		}
		if state == traceUnknown {
			reject("%s: %s", clipHeader(id), feedbackError(learn.ErrUnknownTrace).(*HTTPError).Msg)
			continue
		}
		switch err := s.feedbackQ.put(feedbackJob{fb: fb, requestID: RequestID(r.Context())}, 0, nil); {
		case errors.Is(err, errQueueFull):
			reject("%s: too much feedback at once; send it again shortly", clipHeader(id))
			continue
		case err != nil:
			reject("%s: dso is shutting down", clipHeader(id))
			continue
		}
		accepted++
		if state == traceWriting {
			queued = append(queued, clipHeader(id)+"=queued")
		}
	}
	w.Header().Set(HeaderFeedbackAccepted, strconv.Itoa(accepted))
}

// traceState is what header feedback knows of the trace it names.
type traceState int

const (
	traceUnknown traceState = iota // neither being stored nor stored here
	traceStored                    // in the store
	traceWriting                   // created here and on its way to the store
)

// traceState tells a trace this node is storing or has stored from an
// unknown one, with a read at most. Pending is checked first: a trace
// leaves the pending set only after its batch committed (or it was given
// up), so one not pending is in the store or nowhere.
func (s *Server) traceState(ctx context.Context, id string) (traceState, error) {
	if s.tracePending(id) {
		return traceWriting, nil
	}
	lib := s.opts.Retrieval.Library
	if lib == nil {
		return traceUnknown, nil // this node stores no traces
	}
	_, err := storeOf(lib).GetTrace(ctx, id)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return traceUnknown, nil
	case err != nil:
		return traceUnknown, err
	}
	return traceStored, nil
}

// feedbackQueueLen bounds the header feedback waiting to be recorded: a
// grade that finds the queue full is rejected, so that the client can send
// it again, rather than wait.
const feedbackQueueLen = 1024

// feedbackWriteTimeout bounds recording one grade.
const feedbackWriteTimeout = 10 * time.Second

// feedbackJob is one accepted header grade waiting to be recorded.
type feedbackJob struct {
	fb        store.Feedback
	requestID string // of the request that carried it, for the log
}

// recordFeedback records queued header grades, in the order they came,
// until the queue is closed and drained. A grade whose trace is still
// being stored waits for it first (as POST /v1/feedback does, bounded by
// maxTraceWait); traces are stored in about the order their grades come,
// so the grades queued behind it seldom wait longer than it does.
func (s *Server) recordFeedback(ch <-chan feedbackJob) {
	for j := range ch {
		s.awaitTrace(context.Background(), j.fb.TraceID)
		ctx, cancel := context.WithTimeout(context.Background(), feedbackWriteTimeout)
		if parked, err := s.grade(ctx, j.fb); err != nil {
			s.feedbackFails.add(ctx, 1, fmt.Errorf("request %s, trace %s: %w", j.requestID, clipHeader(j.fb.TraceID), err))
		} else if !parked {
			s.stats.feedback()
		}
		cancel()
	}
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
