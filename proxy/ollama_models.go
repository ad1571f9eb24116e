package proxy

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/dso-proxy/dso/providers"
	"github.com/ollama/ollama/api"
)

// Ollama's model routes (show, ps, pull), which `ollama run`, `ollama ps`
// and Open WebUI call before and beside chat. An Ollama backend answers
// them itself, relayed byte for byte. For an OpenAI-compatible backend dso
// answers what its model list can truthfully say, and nothing more.

// ollamaAPI is what these routes need of a backend: raw calls to Ollama's
// native API. *providers.Ollama has them; an OpenAI-compatible server has
// no such API.
type ollamaAPI interface {
	providers.Backend
	Do(ctx context.Context, method, path string, body []byte, hdr http.Header) (*http.Response, error)
	Upload(ctx context.Context, path string, body io.Reader, size int64, hdr http.Header) (*http.Response, error)
}

var _ ollamaAPI = (*providers.Ollama)(nil)

// modelNotFound is Ollama's answer for a model it does not have.
func modelNotFound(model string, err error) *HTTPError {
	return &HTTPError{Status: http.StatusNotFound, Type: "invalid_request_error", Code: "model_not_found", Msg: fmt.Sprintf("model %q not found", model), Err: err}
}

// modelRequest reads an Ollama model request: the body, the model it names
// (the first of keys holding a non-empty string: Ollama's clients still
// send the deprecated "name" beside an empty "model") and the backends the
// router picks for it, first the one that serves it. On failure it has
// answered the client.
func (s *Server) modelRequest(w http.ResponseWriter, r *http.Request, keys ...string) (body []byte, top map[string]json.RawMessage, model string, chain []providers.Backend, ok bool) {
	const sf = surfaceOllama
	body, err := s.readBody(w, r)
	if err == nil {
		top, err = jsonFields(body)
	}
	if err == nil {
		model, err = requestModel(top, keys...)
	}
	if err != nil {
		s.fail(w, r, sf, err)
		return nil, nil, "", nil, false
	}
	info(r.Context()).model = model
	chain, err = s.router.Route(model)
	if err != nil {
		s.fail(w, r, sf, modelNotFound(model, err))
		return nil, nil, "", nil, false
	}
	info(r.Context()).backend = chain[0].Name()
	return body, top, model, chain, true
}

// requestModel returns the first of keys that holds a non-empty string.
func requestModel(top map[string]json.RawMessage, keys ...string) (string, error) {
	for _, k := range keys {
		raw, ok := top[k]
		if !ok || string(raw) == "null" {
			continue
		}
		var v string
		if json.Unmarshal(raw, &v) != nil {
			return "", badRequest("%s must be a string", k)
		}
		if v != "" {
			return v, nil
		}
	}
	return "", badRequest("%s is required", keys[0])
}

// relayNative sends the request to an Ollama backend's native API and
// relays the answer unchanged, NDJSON progress flushed event by event.
func (s *Server) relayNative(w http.ResponseWriter, r *http.Request, o ollamaAPI, path string, body []byte) {
	resp, _, err := s.dispatch(r.Context(), []providers.Backend{o}, func(ctx context.Context, _ providers.Backend) (*http.Response, error) {
		return o.Do(ctx, r.Method, path, body, s.upstreamHeader(r, o.Config().APIKey != ""))
	})
	if err != nil {
		s.failFrom(w, r, surfaceOllama, o, "ollama", err)
		return
	}
	if r.Method == http.MethodHead {
		// No body, though its Content-Length may say how long one is.
		resp.Body.Close()
		copyHeaders(w.Header(), resp.Header, nil)
		w.WriteHeader(resp.StatusCode)
		return
	}
	s.relay(w, resp, surfaceOllama, nil)
}

// ollamaShow serves POST /api/show.
func (s *Server) ollamaShow(w http.ResponseWriter, r *http.Request) {
	body, _, model, chain, ok := s.modelRequest(w, r, "model", "name")
	if !ok {
		return
	}
	b := chain[0]
	if o, ok := b.(ollamaAPI); ok {
		s.relayNative(w, r, o, "api/show", body)
		return
	}
	m, err := s.listedModel(r.Context(), b, model)
	if err != nil {
		s.fail(w, r, surfaceOllama, err)
		return
	}
	d := modelDetails(m)
	caps := []string{"completion", "tools"} // dso translates tools both ways
	if strings.Contains(strings.ToLower(m.ID), "embed") {
		caps = []string{"embedding"} // `ollama run` then embeds instead of chatting
	}
	// What Ollama's ShowResponse holds that a model list can say: no
	// modelfile, template, tensors or projector (projector_info would make
	// `ollama show` read fields dso does not have). model_info has no
	// context length: OpenAI model lists do not give one.
	out := struct {
		Details      api.ModelDetails `json:"details"`
		ModelInfo    map[string]any   `json:"model_info"`
		Capabilities []string         `json:"capabilities"`
		ModifiedAt   time.Time        `json:"modified_at"`
	}{d, map[string]any{"general.architecture": d.Family}, caps, m.Created}
	writeJSON(w, http.StatusOK, out)
}

// listedModel finds model in the list of b, an OpenAI-compatible backend:
// a model it does not list is one dso cannot show, pull or vouch for.
func (s *Server) listedModel(ctx context.Context, b providers.Backend, model string) (providers.Model, error) {
	ctx, cancel := context.WithTimeout(ctx, s.opts.ModelsTimeout)
	defer cancel()
	ms, err := b.Models(ctx)
	if err != nil {
		return providers.Model{}, err
	}
	for _, m := range ms {
		if m.ID == model {
			m.Backend = b.Name()
			return m, nil
		}
	}
	return providers.Model{}, modelNotFound(model, fmt.Errorf("backend %s does not list it", b.Name()))
}

// ollamaPull serves POST /api/pull.
func (s *Server) ollamaPull(w http.ResponseWriter, r *http.Request) {
	body, top, model, chain, ok := s.modelRequest(w, r, "model", "name")
	if !ok {
		return
	}
	b := chain[0]
	if o, ok := b.(ollamaAPI); ok {
		s.relayNative(w, r, o, "api/pull", body)
		return
	}
	if _, err := s.listedModel(r.Context(), b, model); err != nil {
		var he *HTTPError
		if errors.As(err, &he) && he.Status == http.StatusNotFound {
			err = &HTTPError{Status: http.StatusNotFound, Type: "invalid_request_error", Code: "model_not_found", Err: err,
				Msg: fmt.Sprintf("model %q is not served by backend %s (%s); dso cannot pull models onto an OpenAI-compatible server", model, b.Name(), b.Type())}
		}
		s.fail(w, r, surfaceOllama, err)
		return
	}
	// The model is there already: a pull that has nothing to fetch, as
	// Ollama streams it for a model it has.
	if string(top["stream"]) == "false" {
		writeRawJSON(w, http.StatusOK, []byte(`{"status":"success"}`))
		return
	}
	ew := newEventWriter(w, framingNDJSON, nil)
	for _, ev := range []string{`{"status":"pulling manifest"}`, `{"status":"success"}`} {
		if ew.emit([]byte(ev)) != nil {
			return
		}
	}
}

// ollamaPS serves GET /api/ps, merged over the Ollama backends, asked all
// at once within Options.ModelsTimeout. OpenAI-compatible backends
// contribute nothing: their API has no notion of a loaded model. A
// backend that fails is left out; only when all fail is it an error.
func (s *Server) ollamaPS(w http.ResponseWriter, r *http.Request) {
	var nat []ollamaAPI
	for _, b := range s.router.Backends() {
		if o, ok := b.(ollamaAPI); ok {
			nat = append(nat, o)
		}
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.opts.ModelsTimeout)
	defer cancel()
	lists := make([][]json.RawMessage, len(nat))
	errs := make([]error, len(nat))
	var wg sync.WaitGroup
	for i, o := range nat {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lists[i], errs[i] = s.running(ctx, r, o)
		}()
	}
	wg.Wait()
	var out bytes.Buffer
	out.WriteString(`{"models":[`)
	failed := 0
	seen := map[string]bool{}
	for i, o := range nat {
		if errs[i] != nil {
			failed++
			s.log.WarnContext(ctx, "listing running models failed", logKeyRequestID, RequestID(ctx), logKeyBackend, o.Name(), logKeyErr, errs[i].Error())
			continue
		}
		for _, raw := range lists[i] {
			var id struct{ Name, Model string }
			_ = json.Unmarshal(raw, &id)
			name := cmp.Or(id.Name, id.Model)
			// As in /api/tags: a model is listed where the router would
			// send it, once.
			if chain, err := s.router.Route(name); seen[name] || err != nil || chain[0] != providers.Backend(o) {
				continue
			}
			seen[name] = true
			if len(seen) > 1 {
				out.WriteByte(',')
			}
			out.Write(raw) // entries as the backend wrote them
		}
	}
	if len(nat) > 0 && failed == len(nat) {
		s.fail(w, r, surfaceOllama, errs[0])
		return
	}
	out.WriteString(`]}`)
	writeRawJSON(w, http.StatusOK, out.Bytes())
}

// maxPSBody bounds one backend's /api/ps answer; a real one is a few
// hundred bytes per loaded model.
const maxPSBody = 1 << 20

// running reads an Ollama backend's /api/ps entries, each kept as sent.
func (s *Server) running(ctx context.Context, r *http.Request, o ollamaAPI) ([]json.RawMessage, error) {
	resp, err := o.Do(ctx, http.MethodGet, "api/ps", nil, s.upstreamHeader(r, o.Config().APIKey != ""))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxPSBody+1))
	if err != nil {
		return nil, fmt.Errorf("backend %s: list running models: %w: %v", o.Name(), providers.ErrUnreachable, err)
	}
	if len(raw) > maxPSBody {
		return nil, fmt.Errorf("backend %s: list running models: answer larger than %d bytes", o.Name(), maxPSBody)
	}
	var ps struct {
		Models []json.RawMessage `json:"models"`
	}
	if err := json.Unmarshal(raw, &ps); err != nil {
		return nil, fmt.Errorf("backend %s: list running models: %w", o.Name(), err)
	}
	return ps.Models, nil
}

// modelDigest is the digest dso gives a model that has none (those of
// OpenAI-compatible backends): sha256 of backend and id, in hex, stable
// and distinct per model. Ollama's CLI prints Digest[:12] and panics on
// anything shorter.
func modelDigest(backend, id string) string {
	h := sha256.Sum256([]byte(backend + "\x00" + id))
	return hex.EncodeToString(h[:])
}

// modelDetails is m's details: an Ollama backend's as given, else what the
// id tells (guessDetails).
func modelDetails(m providers.Model) api.ModelDetails {
	if d := m.Details; d.Format != "" || d.Family != "" || d.ParameterSize != "" {
		return d
	}
	return guessDetails(m.ID)
}

// paramSize matches a name part that gives a parameter count: 8b, 0.5B,
// 8x7b, 137m.
var paramSize = regexp.MustCompile(`^[0-9]+(\.[0-9]+)?(x[0-9]+(\.[0-9]+)?)?[bBmM]$`)

// guessDetails says what a model's id tells of it, for models listed with
// nothing more (OpenAI-compatible backends): the family from the leading
// letters of its last path part ("gpt-4o": gpt, "meta-llama/Llama-3.1-8B":
// llama), the parameter size from a part like "8B". The format is unknown;
// unknowns stay empty.
func guessDetails(id string) api.ModelDetails {
	base := id[strings.LastIndexByte(id, '/')+1:]
	n := 0
	for n < len(base) && ('a' <= base[n]|0x20 && base[n]|0x20 <= 'z') {
		n++
	}
	var d api.ModelDetails
	if n >= 2 {
		d.Family = strings.ToLower(base[:n])
		d.Families = []string{d.Family}
	}
	for _, part := range strings.FieldsFunc(base, func(r rune) bool { return r == '-' || r == '_' || r == ':' }) {
		if paramSize.MatchString(part) {
			d.ParameterSize = strings.ToUpper(part)
			break
		}
	}
	return d
}
