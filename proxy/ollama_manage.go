package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"sync/atomic"

	"github.com/dso-proxy/dso/providers"
	"github.com/go-chi/chi/v5"
	"github.com/ollama/ollama/api"
)

// Ollama routes that manage models (copy, delete, create, push, blobs), the
// legacy embeddings route, and generate's load and unload. The first are
// relayed to an Ollama backend and refused for OpenAI-compatible ones,
// which have no model store.

// DefaultMaxBlobBytes bounds one blob upload (POST /api/blobs/{digest})
// when Options.MaxBlobBytes is zero: blobs are model files, streamed
// through and never held, so the bound is only a ceiling above the largest
// model file published.
const DefaultMaxBlobBytes = 1 << 40

// notOllama refuses a model-management route for a backend with no model
// store.
func notOllama(b providers.Backend, what string) *HTTPError {
	return &HTTPError{Status: http.StatusNotImplemented, Type: "invalid_request_error", Code: "unsupported",
		Msg: fmt.Sprintf("dso relays %s only to Ollama backends; backend %s is %s, which has no Ollama model store", what, b.Name(), b.Type())}
}

// ollamaManage serves a model-management route that names its model under
// keys (POST /api/copy: "source"; DELETE /api/delete, POST /api/create and
// /api/push: "model" or "name"): relayed to the Ollama backend the router
// picks for that model.
func (s *Server) ollamaManage(path string, keys ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		body, _, _, chain, ok := s.modelRequest(w, r, keys...)
		if !ok {
			return
		}
		b := chain[0]
		o, ok := b.(ollamaAPI)
		if !ok {
			s.fail(w, r, surfaceOllama, notOllama(b, "/"+path))
			return
		}
		s.relayNative(w, r, o, path, body)
	}
}

// blobDigest is what Ollama accepts as a blob's name.
var blobDigest = regexp.MustCompile(`^sha256[:-][0-9a-fA-F]{64}$`)

// ollamaBlob serves HEAD and POST /api/blobs/{digest}. A blob names no
// model, so it goes to the first Ollama backend: the one `ollama create`
// through dso then finds it on, for a model routed there.
//
// Uploads are streamed upstream as they arrive, bounded by
// Options.MaxBlobBytes, not read whole within MaxBodyBytes as other bodies
// are: blobs are model files, gigabytes. The reason dso reads bodies first
// (DESIGN.md: Go's server may close a request body once the response
// headers go out) does not arise: Ollama answers an upload once it has
// read all of it, and dso writes no header before that answer.
func (s *Server) ollamaBlob(w http.ResponseWriter, r *http.Request) {
	const sf = surfaceOllama
	digest := chi.URLParam(r, "digest")
	if !blobDigest.MatchString(digest) {
		s.fail(w, r, sf, badRequest("invalid digest format: want sha256:<64 hex digits>"))
		return
	}
	var o ollamaAPI
	for _, b := range s.router.Backends() {
		if nat, ok := b.(ollamaAPI); ok {
			o = nat
			break
		}
	}
	if o == nil {
		s.fail(w, r, sf, &HTTPError{Status: http.StatusNotImplemented, Type: "invalid_request_error", Code: "unsupported",
			Msg: "dso has no Ollama backend to keep blobs: OpenAI-compatible servers have no model store"})
		return
	}
	info(r.Context()).backend = o.Name()
	path := "api/blobs/" + digest
	if r.Method == http.MethodHead {
		s.relayNative(w, r, o, path, nil)
		return
	}
	limit := s.opts.MaxBlobBytes
	if r.ContentLength > limit {
		w.Header().Set("Connection", "close") // do not wait for its body
		s.fail(w, r, sf, blobTooLarge(limit, nil))
		return
	}
	body := &blobBody{r: http.MaxBytesReader(w, r.Body, limit)}
	resp, err := o.Upload(r.Context(), path, body, r.ContentLength, s.upstreamHeader(r, o.Config().APIKey != ""))
	if body.tooLarge.Load() {
		if err == nil {
			resp.Body.Close()
		}
		s.fail(w, r, sf, blobTooLarge(limit, err))
		return
	}
	if err != nil {
		s.failFrom(w, r, sf, o, "ollama", err)
		return
	}
	s.relay(w, resp, sf, nil)
}

func blobTooLarge(limit int64, err error) *HTTPError {
	return &HTTPError{Status: http.StatusRequestEntityTooLarge, Type: "invalid_request_error", Code: "request_too_large",
		Msg: fmt.Sprintf("blob is larger than %d bytes", limit), Err: err}
}

// blobBody notes whether the upload ran past its bound. The transport
// reads it on a goroutine of its own, hence the atomic.
type blobBody struct {
	r        io.Reader
	tooLarge atomic.Bool
}

func (b *blobBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		b.tooLarge.Store(true)
	}
	return n, err
}

// ollamaEmbeddings serves POST /api/embeddings, Ollama's legacy embeddings
// ({"model","prompt"} → {"embedding":[...]}): relayed to an Ollama backend,
// translated for an OpenAI-compatible one.
func (s *Server) ollamaEmbeddings(w http.ResponseWriter, r *http.Request) {
	const sf = surfaceOllama
	body, top, _, chain, ok := s.modelRequest(w, r, "model")
	if !ok {
		return
	}
	var prompt string
	if raw, ok := top["prompt"]; ok && json.Unmarshal(raw, &prompt) != nil && string(raw) != "null" {
		s.fail(w, r, sf, badRequest("prompt must be a string"))
		return
	}
	if _, nat := chain[0].(ollamaAPI); !nat && prompt == "" {
		// Ollama's "load the model": nothing to load on such a server.
		writeRawJSON(w, http.StatusOK, providers.OllamaLegacyEmbedLoad)
		return
	}
	var translated []byte
	resp, last, err := s.dispatch(r.Context(), chain, func(ctx context.Context, b providers.Backend) (*http.Response, error) {
		hdr := s.upstreamHeader(r, b.Config().APIKey != "")
		if o, ok := b.(ollamaAPI); ok {
			return o.Do(ctx, http.MethodPost, "api/embeddings", body, hdr)
		}
		if translated == nil {
			var terr error
			if translated, _, terr = providers.OllamaLegacyEmbedToOpenAI(body); terr != nil {
				return nil, terr
			}
		}
		return b.Embeddings(ctx, translated, hdr)
	})
	if err != nil {
		s.failFrom(w, r, sf, last, "ollama", err)
		return
	}
	if _, ok := last.(ollamaAPI); ok {
		s.relay(w, resp, sf, nil)
		return
	}
	defer resp.Body.Close()
	s.translateWhole(w, r, sf, resp, nil, providers.OpenAIEmbedResponseToOllamaLegacy)
}

// generateLoad answers an /api/generate request without a prompt, or an
// /api/chat one without messages (chat), for a backend that has no models
// to load (OpenAI-compatible): as Ollama answers it, done_reason "load",
// or "unload" with keep_alive 0, without calling the backend, retrieving
// or keeping a trace. It reports whether it answered; a request with a
// prompt it leaves alone.
func (s *Server) generateLoad(w http.ResponseWriter, r *http.Request, top map[string]json.RawMessage, model string, chat bool) bool {
	if raw, ok := top["prompt"]; ok && string(raw) != "null" && !chat {
		var p string
		if json.Unmarshal(raw, &p) != nil || p != "" {
			return false
		}
	}
	reason := "load"
	if raw, ok := top["keep_alive"]; ok && string(raw) != "null" {
		var d api.Duration // Ollama's own reading: seconds, or "0", "0s", "5m"
		if err := json.Unmarshal(raw, &d); err != nil {
			s.fail(w, r, surfaceOllama, badRequest(`keep_alive must be a duration such as "5m" or a number of seconds`))
			return true
		}
		if d.Duration == 0 {
			reason = "unload"
		}
	}
	var v any = api.GenerateResponse{Model: model, CreatedAt: s.opts.now().UTC(), Done: true, DoneReason: reason}
	if chat {
		v = api.ChatResponse{Model: model, CreatedAt: s.opts.now().UTC(), Message: api.Message{Role: "assistant"}, Done: true, DoneReason: reason}
	}
	out, err := json.Marshal(v)
	if err != nil {
		s.fail(w, r, surfaceOllama, err)
		return true
	}
	writeRawJSON(w, http.StatusOK, out)
	return true
}
