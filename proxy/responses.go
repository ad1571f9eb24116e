package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/dso-proxy/dso/config"
	"github.com/dso-proxy/dso/providers"
	"github.com/dso-proxy/dso/responses"
	"github.com/dso-proxy/dso/store"
	"github.com/go-chi/chi/v5"
)

// The OpenAI Responses API. Over a backend that serves it itself
// (config.Backend.NativeResponses) requests are relayed as chats are, and
// the backend keeps the responses; over any other backend dso translates
// to chat completions (package responses) and keeps the responses itself,
// in ResponseStore, so that previous_response_id and GET work on every
// replica that shares the store, as soon as the answer was sent.

// ResponseStore keeps the Responses API responses that dso answers
// itself. store.SQLite and store.Redis implement it.
type ResponseStore interface {
	PutResponse(ctx context.Context, r store.Response) error
	GetResponse(ctx context.Context, id string) (store.Response, error)
	DeleteResponse(ctx context.Context, id string) error
}

// responsesBackend is a backend that serves the Responses API itself.
type responsesBackend interface {
	Responses(ctx context.Context, method, sub, query string, body []byte, hdr http.Header) (*http.Response, error)
}

var _ responsesBackend = (*providers.OpenAI)(nil)

// nativeResponses is the part of chain that serves the Responses API
// itself, when its first backend does; nil otherwise. A native request
// falls back only to other native backends: the others would need the
// conversation the first one keeps.
func nativeResponses(chain []providers.Backend) []providers.Backend {
	var out []providers.Backend
	for i, b := range chain {
		_, ok := b.(responsesBackend)
		if !ok || !b.Config().NativeResponses() {
			if i == 0 {
				return nil
			}
			continue
		}
		out = append(out, b)
	}
	return out
}

// createResponse serves POST /v1/responses.
func (s *Server) createResponse(w http.ResponseWriter, r *http.Request) {
	const sf = surfaceOpenAI
	ctx := r.Context()
	body, _, ok := s.readTranslated(w, r, sf)
	if !ok {
		return
	}
	req, err := responses.Parse(body)
	if err != nil {
		s.fail(w, r, sf, translateError(err))
		return
	}
	info(ctx).model = req.Model
	chain, err := s.router.Route(req.Model)
	if err != nil {
		s.fail(w, r, sf, err)
		return
	}
	if native := nativeResponses(chain); native != nil {
		s.relayResponses(w, r, body, native, req.Model)
		return
	}
	var history []json.RawMessage
	if id := req.PreviousResponseID; id != "" {
		prev, err := s.responses.GetResponse(ctx, id)
		if err != nil {
			s.fail(w, r, sf, responseLookupError(err, id, "previous_response_id"))
			return
		}
		if err := json.Unmarshal(prev.History, &history); err != nil {
			s.fail(w, r, sf, fmt.Errorf("stored response %s: %w", id, err))
			return
		}
	}
	input, err := responses.InputItems(req)
	if err != nil {
		s.fail(w, r, sf, translateError(err))
		return
	}
	chatBody, err := responses.ToChat(req, history, input)
	if err != nil {
		s.fail(w, r, sf, translateError(err))
		return
	}
	if len(req.Unknown) > 0 {
		s.log.DebugContext(ctx, "responses: fields not translated", logKeyRequestID, RequestID(ctx), "fields", req.Unknown)
	}
	fwd, tr, err := s.augment(w, r, chatBody, chain[0], req.Model, kindChat)
	if err != nil {
		s.fail(w, r, sf, err)
		return
	}
	defer s.recordTrace(ctx, tr)
	ans, b, err := s.hubChat(ctx, r, chain, fwd)
	if err != nil {
		s.failFrom(w, r, sf, b, config.TypeOpenAI, err)
		return
	}
	defer ans.Close()
	resp := responses.New(req, responses.NewID("resp"), time.Now())
	kept := keptResponse{req: req, history: history, input: input}
	if !ans.Stream() {
		whole, err := ans.Whole()
		if err == nil {
			err = responses.FromChat(resp, whole)
		}
		if err != nil {
			s.fail(w, r, sf, &HTTPError{Status: http.StatusBadGateway, Type: "upstream_error", Msg: "the backend's response could not be translated", Err: err})
			return
		}
		if tee := tr.tee(true); tee != nil {
			_, _ = tee.Write(whole)
		}
		s.keepResponse(ctx, kept, resp)
		writeJSON(w, http.StatusOK, resp)
		return
	}
	s.streamResponse(w, r, ans, responses.NewStream(resp, newEventWriter(w, framingSSE, nil).emitNamed), tr, kept)
}

// streamResponse translates a streamed chat answer into Responses events.
// The response is kept before its terminal event is sent, so that a
// client that has read it can continue from it at once.
func (s *Server) streamResponse(w http.ResponseWriter, r *http.Request, ans *hubAnswer, st *responses.Stream, tr *trace, kept keptResponse) {
	ctx := r.Context()
	if st.Start() != nil {
		return
	}
	tee := tr.tee(false)
	err := ans.Events(func(data []byte) error {
		teeChunk(tee, data)
		return st.Chunk(data)
	})
	var resp *responses.Response
	if err == nil {
		resp, err = st.Finish()
	}
	if errors.Is(err, errClientGone) {
		return
	}
	if err != nil {
		info(ctx).err = err
		msg := "the backend's stream broke off"
		var se *providers.StreamError
		if errors.As(err, &se) {
			msg = se.Msg
		}
		_ = st.Fail("server_error", msg)
		return
	}
	s.keepResponse(ctx, kept, resp)
	_ = st.End()
}

// keptResponse is what a translated response needs kept beside itself.
type keptResponse struct {
	req     *responses.Request
	history []json.RawMessage
	input   []json.RawMessage
}

// keepResponse stores resp unless the request said store: false. A
// store that fails loses the response for later requests, not this one's
// answer: it is said at warn level and in a metric.
func (s *Server) keepResponse(ctx context.Context, k keptResponse, resp *responses.Response) {
	if !k.req.Stored() {
		return
	}
	rec, err := k.record(resp)
	if err == nil {
		err = s.responses.PutResponse(ctx, rec)
	}
	if err != nil {
		s.metrics.responsesLost.Inc()
		s.responseFails.add(ctx, 1, err)
	}
}

// record is resp as the store keeps it: the object, this request's input
// items, and the conversation to continue (history, input, output).
func (k keptResponse) record(resp *responses.Response) (store.Response, error) {
	out, err := resp.OutputItems()
	if err != nil {
		return store.Response{}, err
	}
	obj, err := json.Marshal(resp)
	if err != nil {
		return store.Response{}, err
	}
	in, err := json.Marshal(k.input)
	if err != nil {
		return store.Response{}, err
	}
	conv := make([]json.RawMessage, 0, len(k.history)+len(k.input)+len(out))
	hist, err := json.Marshal(append(append(append(conv, k.history...), k.input...), out...))
	if err != nil {
		return store.Response{}, err
	}
	return store.Response{ID: resp.ID, Model: k.req.Model, Object: obj, Input: in, History: hist}, nil
}

// translateError is a translation error as the client sees it.
func translateError(err error) error {
	if errors.Is(err, responses.ErrBadRequest) {
		return badRequest("%s", strings.TrimPrefix(err.Error(), responses.ErrBadRequest.Error()+": "))
	}
	return err
}

// responseLookupError is the error for a response id that could not be
// read: 404 in OpenAI's words when it is not kept (or expired), 503 when
// the store did not answer.
func responseLookupError(err error, id, param string) error {
	if errors.Is(err, store.ErrNotFound) {
		what := "Response"
		if param == "previous_response_id" {
			what = "Previous response"
		}
		return &HTTPError{Status: http.StatusNotFound, Type: "invalid_request_error", Code: "response_not_found",
			Msg: fmt.Sprintf("%s with id '%s' not found.", what, id), Err: err}
	}
	if errors.Is(err, store.ErrUnavailable) {
		return unavailableError(err)
	}
	return err
}

// getResponse serves GET /v1/responses/{id}.
func (s *Server) getResponse(w http.ResponseWriter, r *http.Request) {
	id := chi.URLParam(r, "id")
	rec, err := s.responses.GetResponse(r.Context(), id)
	if errors.Is(err, store.ErrNotFound) && s.relayResponseCall(w, r, http.MethodGet, "/"+id) {
		return
	}
	if err != nil {
		s.fail(w, r, surfaceOpenAI, responseLookupError(err, id, "id"))
		return
	}
	if r.URL.Query().Get("stream") == "true" {
		s.fail(w, r, surfaceOpenAI, badRequest("streaming a stored response again is not supported for responses dso translated"))
		return
	}
	writeRawJSON(w, http.StatusOK, rec.Object)
}

// deleteResponse serves DELETE /v1/responses/{id}.
func (s *Server) deleteResponse(w http.ResponseWriter, r *http.Request) {
	id := chi.URLParam(r, "id")
	err := s.responses.DeleteResponse(r.Context(), id)
	if errors.Is(err, store.ErrNotFound) && s.relayResponseCall(w, r, http.MethodDelete, "/"+id) {
		return
	}
	if err != nil {
		s.fail(w, r, surfaceOpenAI, responseLookupError(err, id, "id"))
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"id": id, "object": "response", "deleted": true})
}
