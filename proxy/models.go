package proxy

import (
	"context"
	"net/http"

	"github.com/dso-proxy/dso/providers"
	"github.com/ollama/ollama/api"
)

// ollamaCompatVersion is reported on /api/version when no Ollama backend
// answers: recent enough for clients that check a minimum version.
const ollamaCompatVersion = "0.17.4"

// openAIModels serves GET /v1/models, merged over backends.
func (s *Server) openAIModels(w http.ResponseWriter, r *http.Request) {
	ms, err := s.models(r.Context())
	if err != nil {
		s.fail(w, r, surfaceOpenAI, err)
		return
	}
	type model struct {
		ID      string `json:"id"`
		Object  string `json:"object"`
		Created int64  `json:"created"`
		OwnedBy string `json:"owned_by"`
	}
	data := make([]model, 0, len(ms))
	for _, m := range ms {
		created := int64(0)
		if !m.Created.IsZero() {
			created = m.Created.Unix()
		}
		owner := m.OwnedBy
		if owner == "" {
			owner = m.Backend
		}
		data = append(data, model{ID: m.ID, Object: "model", Created: created, OwnedBy: owner})
	}
	writeJSON(w, http.StatusOK, map[string]any{"object": "list", "data": data})
}

// ollamaTags serves GET /api/tags, merged over backends.
func (s *Server) ollamaTags(w http.ResponseWriter, r *http.Request) {
	ms, err := s.models(r.Context())
	if err != nil {
		s.fail(w, r, surfaceOllama, err)
		return
	}
	out := api.ListResponse{Models: make([]api.ListModelResponse, 0, len(ms))}
	for _, m := range ms {
		digest := m.Digest
		if len(digest) < 12 {
			digest = modelDigest(m.Backend, m.ID) // `ollama list` prints Digest[:12]
		}
		out.Models = append(out.Models, api.ListModelResponse{Name: m.ID, Model: m.ID, ModifiedAt: m.Created, Size: m.Size, Digest: digest, Details: modelDetails(m)})
	}
	writeJSON(w, http.StatusOK, out)
}

// models lists models over every backend; it fails only when every
// backend failed.
func (s *Server) models(ctx context.Context) ([]providers.Model, error) {
	ctx, cancel := context.WithTimeout(ctx, s.opts.ModelsTimeout)
	defer cancel()
	ms, errs := s.router.Models(ctx)
	for _, err := range errs {
		s.log.WarnContext(ctx, "listing models failed", logKeyRequestID, RequestID(ctx), logKeyErr, err.Error())
	}
	if len(errs) > 0 && len(errs) == len(s.router.Backends()) {
		return nil, errs[0]
	}
	return ms, nil
}

// ollamaVersion serves GET /api/version: the first Ollama backend's, or a
// compatible constant.
func (s *Server) ollamaVersion(w http.ResponseWriter, r *http.Request) {
	v := ollamaCompatVersion
	for _, b := range s.router.Backends() {
		if o, ok := b.(*providers.Ollama); ok {
			ctx, cancel := context.WithTimeout(r.Context(), s.opts.ReadyTimeout)
			got, err := o.Version(ctx)
			cancel()
			if err == nil && got != "" {
				v = got
				break
			}
		}
	}
	writeJSON(w, http.StatusOK, map[string]string{"version": v})
}

// ollamaRoot answers GET / as Ollama does; clients probe it.
func (s *Server) ollamaRoot(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write([]byte("Ollama is running"))
	}
}

// openAIEmbeddings serves POST /v1/embeddings.
func (s *Server) openAIEmbeddings(w http.ResponseWriter, r *http.Request) {
	s.embeddings(w, r, surfaceOpenAI, "openai", providers.OpenAIEmbedToOllama, providers.OllamaEmbedResponseToOpenAI)
}

// ollamaEmbed serves POST /api/embed.
func (s *Server) ollamaEmbed(w http.ResponseWriter, r *http.Request) {
	s.embeddings(w, r, surfaceOllama, "ollama", providers.OllamaEmbedToOpenAI, providers.OpenAIEmbedResponseToOllama)
}

func (s *Server) embeddings(w http.ResponseWriter, r *http.Request, sf surface, sameType string,
	translateReq func([]byte) ([]byte, providers.EmbedInfo, error),
	translateResp func([]byte, providers.EmbedInfo) ([]byte, error)) {
	body, err := s.readBody(w, r)
	if err != nil {
		s.fail(w, r, sf, err)
		return
	}
	top, err := jsonFields(body)
	if err != nil {
		s.fail(w, r, sf, err)
		return
	}
	model, err := stringField(top, "model")
	if err != nil {
		s.fail(w, r, sf, err)
		return
	}
	if in := top["input"]; len(in) == 0 || string(in) == "null" {
		s.fail(w, r, sf, badRequest("input is required"))
		return
	}
	info(r.Context()).model = *model
	chain, err := s.router.Route(*model)
	if err != nil {
		s.fail(w, r, sf, err)
		return
	}
	var ei providers.EmbedInfo
	var translated []byte
	resp, b, err := s.dispatch(r.Context(), chain, func(ctx context.Context, b providers.Backend) (*http.Response, error) {
		out := body
		if b.Type() != sameType {
			if translated == nil {
				var terr error
				if translated, ei, terr = translateReq(body); terr != nil {
					return nil, terr
				}
			}
			out = translated
		}
		return b.Embeddings(ctx, out, s.upstreamHeader(r, b.Config().APIKey != ""))
	})
	if err != nil {
		s.failFrom(w, r, sf, b, sameType, err)
		return
	}
	if b.Type() == sameType {
		s.relay(w, resp, sf, nil)
		return
	}
	defer resp.Body.Close()
	s.translateWhole(w, r, sf, resp, nil, func(raw []byte) ([]byte, error) { return translateResp(raw, ei) })
}
