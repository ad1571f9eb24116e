package providers

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/dso-proxy/dso/config"
	openai "github.com/sashabaranov/go-openai"
)

// OpenAI is an OpenAI-compatible backend (OpenAI, vLLM, llama.cpp server,
// LM Studio, OpenRouter, ...). Chat and embedding bodies are forwarded as
// bytes; go-openai serves dso's own embedding and model-listing calls.
type OpenAI struct {
	conn
	client *openai.Client
}

// NewOpenAI returns a backend for cfg. hc nil means DefaultHTTPClient.
func NewOpenAI(cfg config.Backend, hc *http.Client) (*OpenAI, error) {
	c, err := newConn(cfg, hc)
	if err != nil {
		return nil, err
	}
	if c.base.Path == "" || c.base.Path == "/" {
		c.base.Path = "/v1"
	}
	oc := openai.DefaultConfig(cfg.APIKey.Reveal())
	oc.BaseURL = c.base.String()
	oc.HTTPClient = withKey(c.http, cfg.APIKey)
	return &OpenAI{conn: c, client: openai.NewClientWithConfig(oc)}, nil
}

// Type returns config.TypeOpenAI.
func (o *OpenAI) Type() string { return config.TypeOpenAI }

// Chat POSTs an OpenAI chat-completions body as is.
func (o *OpenAI) Chat(ctx context.Context, body []byte, hdr http.Header) (*http.Response, error) {
	return o.send(ctx, http.MethodPost, "chat/completions", body, hdr)
}

// Completions POSTs a legacy completions body as is.
func (o *OpenAI) Completions(ctx context.Context, body []byte, hdr http.Header) (*http.Response, error) {
	return o.send(ctx, http.MethodPost, "completions", body, hdr)
}

// Responses sends a Responses API call to the backend's own /responses:
// sub is the path below it ("" to create one, "/ID", "/ID/input_items"),
// query the URL's query, body nil for GET and DELETE.
func (o *OpenAI) Responses(ctx context.Context, method, sub, query string, body []byte, hdr http.Header) (*http.Response, error) {
	if sub == "" && query == "" {
		return o.send(ctx, method, "responses", body, hdr)
	}
	return o.sendUncached(ctx, method, "responses"+sub, query, body, hdr)
}

// Embeddings POSTs an OpenAI embeddings body as is.
func (o *OpenAI) Embeddings(ctx context.Context, body []byte, hdr http.Header) (*http.Response, error) {
	return o.send(ctx, http.MethodPost, "embeddings", body, hdr)
}

// Embed embeds texts with model.
func (o *OpenAI) Embed(ctx context.Context, model string, texts []string) ([][]float32, error) {
	ctx, cancel := context.WithTimeout(ctx, o.cfg.Timeout)
	defer cancel()
	res, err := o.client.CreateEmbeddings(ctx, openai.EmbeddingRequest{Input: texts, Model: openai.EmbeddingModel(model)})
	if err != nil {
		return nil, fmt.Errorf("backend %s: embed: %w", o.cfg.Name, o.libError(ctx, err))
	}
	if len(res.Data) != len(texts) {
		return nil, fmt.Errorf("backend %s: embed: got %d vectors for %d texts", o.cfg.Name, len(res.Data), len(texts))
	}
	out := make([][]float32, len(texts))
	for _, d := range res.Data {
		if d.Index < 0 || d.Index >= len(out) {
			return nil, fmt.Errorf("backend %s: embed: index %d out of range", o.cfg.Name, d.Index)
		}
		out[d.Index] = d.Embedding
	}
	return out, nil
}

// Models lists the backend's models.
func (o *OpenAI) Models(ctx context.Context) ([]Model, error) {
	ctx, cancel := context.WithTimeout(ctx, o.cfg.Timeout)
	defer cancel()
	list, err := o.client.ListModels(ctx)
	if err != nil {
		return nil, fmt.Errorf("backend %s: list models: %w", o.cfg.Name, o.libError(ctx, err))
	}
	ms := make([]Model, 0, len(list.Models))
	for _, m := range list.Models {
		ms = append(ms, Model{ID: m.ID, OwnedBy: m.OwnedBy, Created: time.Unix(m.CreatedAt, 0)})
	}
	return ms, nil
}

// Ping checks that the backend answers.
func (o *OpenAI) Ping(ctx context.Context) error {
	_, err := o.Models(ctx)
	return err
}

// libError maps a go-openai error onto the package's error vocabulary.
func (o *OpenAI) libError(ctx context.Context, err error) error {
	if ctx.Err() == context.DeadlineExceeded {
		return ErrTimeout
	}
	if e, ok := err.(*openai.APIError); ok {
		return &StatusError{Backend: o.cfg.Name, StatusCode: e.HTTPStatusCode, Body: []byte(fmt.Sprintf(`{"error":{"message":%q}}`, e.Message))}
	}
	if e, ok := err.(*openai.RequestError); ok {
		return &StatusError{Backend: o.cfg.Name, StatusCode: e.HTTPStatusCode, Body: e.Body}
	}
	return fmt.Errorf("%w: %v", ErrUnreachable, err)
}
