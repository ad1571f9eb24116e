package providers

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/dso-proxy/dso/config"
	"github.com/ollama/ollama/api"
)

// Ollama is a backend speaking Ollama's native API. Chat, generate and embed
// bodies are forwarded as bytes; ollama/api serves dso's own calls.
type Ollama struct {
	conn
	client *api.Client
}

// NewOllama returns a backend for cfg. hc nil means DefaultHTTPClient.
func NewOllama(cfg config.Backend, hc *http.Client) (*Ollama, error) {
	c, err := newConn(cfg, hc)
	if err != nil {
		return nil, err
	}
	return &Ollama{conn: c, client: api.NewClient(c.base, withKey(c.http, cfg.APIKey))}, nil
}

// Type returns config.TypeOllama.
func (o *Ollama) Type() string { return config.TypeOllama }

// Chat POSTs an Ollama /api/chat body as is.
func (o *Ollama) Chat(ctx context.Context, body []byte, hdr http.Header) (*http.Response, error) {
	return o.send(ctx, http.MethodPost, "api/chat", body, hdr)
}

// Generate POSTs an Ollama /api/generate body as is.
func (o *Ollama) Generate(ctx context.Context, body []byte, hdr http.Header) (*http.Response, error) {
	return o.send(ctx, http.MethodPost, "api/generate", body, hdr)
}

// Embeddings POSTs an Ollama /api/embed body as is.
func (o *Ollama) Embeddings(ctx context.Context, body []byte, hdr http.Header) (*http.Response, error) {
	return o.send(ctx, http.MethodPost, "api/embed", body, hdr)
}

// Do sends one request to the backend's native API: path relative to its
// URL (e.g. "api/show"), body (nil: none) and headers as send forwards
// them. It serves the routes dso relays without reading the answer (show,
// pull, ps, copy, delete, create, push, blobs): one method, not one each.
func (o *Ollama) Do(ctx context.Context, method, path string, body []byte, hdr http.Header) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	// Not through url's cache: blob paths carry a client's digest.
	return o.exchange(ctx, method, o.base.JoinPath(path).String(), rd, int64(len(body)), jsonType, hdr)
}

// Upload POSTs body as it is read, size bytes (-1: unknown), for bodies
// too large to hold (model blobs, gigabytes). The idle timeout applies to
// the upload's reads as to the response's. The body is read once, so a
// failed upload cannot be retried here.
func (o *Ollama) Upload(ctx context.Context, path string, body io.Reader, size int64, hdr http.Header) (*http.Response, error) {
	return o.exchange(ctx, http.MethodPost, o.base.JoinPath(path).String(), body, size, "application/octet-stream", hdr)
}

// Embed embeds texts with model.
func (o *Ollama) Embed(ctx context.Context, model string, texts []string) ([][]float32, error) {
	ctx, cancel := context.WithTimeout(ctx, o.cfg.Timeout)
	defer cancel()
	res, err := o.client.Embed(ctx, &api.EmbedRequest{Model: model, Input: texts})
	if err != nil {
		return nil, fmt.Errorf("backend %s: embed: %w", o.cfg.Name, o.libError(ctx, err))
	}
	if len(res.Embeddings) != len(texts) {
		return nil, fmt.Errorf("backend %s: embed: got %d vectors for %d texts", o.cfg.Name, len(res.Embeddings), len(texts))
	}
	return res.Embeddings, nil
}

// Models lists the backend's local models.
func (o *Ollama) Models(ctx context.Context) ([]Model, error) {
	ctx, cancel := context.WithTimeout(ctx, o.cfg.Timeout)
	defer cancel()
	res, err := o.client.List(ctx)
	if err != nil {
		return nil, fmt.Errorf("backend %s: list models: %w", o.cfg.Name, o.libError(ctx, err))
	}
	ms := make([]Model, 0, len(res.Models))
	for _, m := range res.Models {
		ms = append(ms, Model{ID: m.Name, OwnedBy: "library", Created: m.ModifiedAt, Size: m.Size, Digest: m.Digest, Details: m.Details})
	}
	return ms, nil
}

// Version returns the Ollama server's version.
func (o *Ollama) Version(ctx context.Context) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, o.cfg.Timeout)
	defer cancel()
	v, err := o.client.Version(ctx)
	if err != nil {
		return "", fmt.Errorf("backend %s: version: %w", o.cfg.Name, o.libError(ctx, err))
	}
	return v, nil
}

// Ping checks that the backend answers.
func (o *Ollama) Ping(ctx context.Context) error {
	_, err := o.Version(ctx)
	return err
}

func (o *Ollama) libError(ctx context.Context, err error) error {
	if ctx.Err() == context.DeadlineExceeded {
		return ErrTimeout
	}
	var se api.StatusError
	if errors.As(err, &se) {
		return &StatusError{Backend: o.cfg.Name, StatusCode: se.StatusCode, Body: []byte(fmt.Sprintf(`{"error":%q}`, se.ErrorMessage))}
	}
	return fmt.Errorf("%w: %v", ErrUnreachable, err)
}
