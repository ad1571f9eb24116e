package proxy

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"github.com/dso-proxy/dso/completions"
	"github.com/dso-proxy/dso/config"
	"github.com/dso-proxy/dso/providers"
)

// completionsBackend is a backend that may serve the legacy completions
// API itself (OpenAI, vLLM, llama.cpp's server do; many chat-only servers
// answer 404).
type completionsBackend interface {
	Completions(ctx context.Context, body []byte, hdr http.Header) (*http.Response, error)
}

var _ completionsBackend = (*providers.OpenAI)(nil)

// completions serves POST /v1/completions, with the notes before the
// prompt (a completion continues its prompt): relayed to an OpenAI-type
// backend; translated to chat for any other backend, and for one that
// answers the relayed call with 404 or 405 (it has no /completions).
func (s *Server) completions(w http.ResponseWriter, r *http.Request) {
	const sf = surfaceOpenAI
	ctx := r.Context()
	body, root, ok := s.readTranslated(w, r, sf)
	if !ok {
		return
	}
	model, err := stringValue(lastField(root, "model"), "model")
	if err != nil {
		s.fail(w, r, sf, err)
		return
	}
	if p := lastField(root, "prompt"); !p.Exists() || p.Type == 0 {
		s.fail(w, r, sf, badRequest("prompt is required"))
		return
	}
	info(ctx).model = *model
	chain, err := s.router.Route(*model)
	if err != nil {
		s.fail(w, r, sf, err)
		return
	}
	fwd, tr, err := s.augment(w, r, body, chain[0], *model, kindCompletion)
	if err != nil {
		s.fail(w, r, sf, err)
		return
	}
	defer s.recordTrace(ctx, tr)
	if chain[0].Type() == config.TypeOpenAI && s.relayCompletions(w, r, fwd, chain[0], tr) {
		return
	}
	s.translateCompletions(w, r, fwd, chain, tr)
}

// relayCompletions relays the body to b; it reports false, having
// written nothing, when b has no /completions.
func (s *Server) relayCompletions(w http.ResponseWriter, r *http.Request, body []byte, b providers.Backend, tr *trace) bool {
	cb, ok := b.(completionsBackend)
	if !ok {
		return false
	}
	resp, _, err := s.dispatch(r.Context(), []providers.Backend{b}, func(ctx context.Context, b providers.Backend) (*http.Response, error) {
		return cb.Completions(ctx, body, s.upstreamHeader(r, b.Config().APIKey != ""))
	})
	var se *providers.StatusError
	if errors.As(err, &se) && (se.StatusCode == http.StatusNotFound || se.StatusCode == http.StatusMethodNotAllowed) &&
		!strings.Contains(strings.ToLower(se.Message()), "model") {
		return false // a chat-only server: translate
	}
	if err != nil {
		s.failFrom(w, r, surfaceOpenAI, b, config.TypeOpenAI, err)
		return true
	}
	s.relay(w, resp, surfaceOpenAI, tr.tee(framingOf(resp) == framingNone && resp.ContentLength >= 0))
	return true
}

// translateCompletions sends the prompt as a chat and writes the answer
// as completions.
func (s *Server) translateCompletions(w http.ResponseWriter, r *http.Request, body []byte, chain []providers.Backend, tr *trace) {
	const sf = surfaceOpenAI
	ctx := r.Context()
	chatBody, ci, err := completions.ToChat(body)
	if err != nil {
		if errors.Is(err, completions.ErrBadRequest) {
			err = badRequest("%s", strings.TrimPrefix(err.Error(), completions.ErrBadRequest.Error()+": "))
		}
		s.fail(w, r, sf, err)
		return
	}
	ans, b, err := s.hubChat(ctx, r, chain, chatBody)
	if err != nil {
		s.failFrom(w, r, sf, b, config.TypeOpenAI, err)
		return
	}
	defer ans.Close()
	if !ans.Stream() {
		whole, err := ans.Whole()
		var out []byte
		if err == nil {
			out, err = completions.FromChat(whole, ci)
		}
		if err != nil {
			s.fail(w, r, sf, &HTTPError{Status: http.StatusBadGateway, Type: "upstream_error", Msg: "the backend's response could not be translated", Err: err})
			return
		}
		if tee := tr.tee(true); tee != nil {
			_, _ = tee.Write(whole)
		}
		writeRawJSON(w, http.StatusOK, out)
		return
	}
	tee := tr.tee(false)
	ew := newEventWriter(w, framingSSE, nil)
	st := completions.NewStream(ci)
	err = ans.Events(func(data []byte) error {
		teeChunk(tee, data)
		ev, err := st.Chunk(data)
		if err != nil || ev == nil {
			return err
		}
		return ew.emit(ev)
	})
	if err == nil {
		for _, ev := range st.Done() {
			if err = ew.emit(ev); err != nil {
				break
			}
		}
	}
	if err != nil {
		s.endStream(w, r, sf, framingSSE, err)
	}
}
