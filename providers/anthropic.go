package providers

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/dso-proxy/dso/anthropic"
	"github.com/dso-proxy/dso/config"
	"github.com/tidwall/gjson"
)

// AnthropicVersion is the anthropic-version header dso sends when the
// client sent none.
const AnthropicVersion = "2023-06-01"

// maxAnswerBody caps a non-streamed Messages answer that Chat translates.
const maxAnswerBody = 64 << 20

// Anthropic is a backend speaking Anthropic's Messages API. Messages
// bodies (from Anthropic clients) are forwarded as bytes; Chat takes an
// OpenAI chat body and answers in OpenAI's format, translating both ways
// inside, so that every chat surface can use it as an OpenAI backend.
type Anthropic struct {
	conn
}

// NewAnthropic returns a backend for cfg. hc nil means DefaultHTTPClient.
// The URL is the API's base, with or without /v1; empty means
// config.DefaultAnthropicURL.
func NewAnthropic(cfg config.Backend, hc *http.Client) (*Anthropic, error) {
	if cfg.URL == "" {
		cfg.URL = config.DefaultAnthropicURL
	}
	c, err := newConn(cfg, hc)
	if err != nil {
		return nil, err
	}
	c.base.Path = strings.TrimSuffix(c.base.Path, "/v1")
	key := cfg.APIKey
	c.header = func(h http.Header) {
		if key != "" {
			h.Del("Authorization")
			h.Set("X-Api-Key", key.Reveal())
		}
		if h.Get("Anthropic-Version") == "" {
			h.Set("Anthropic-Version", AnthropicVersion)
		}
	}
	return &Anthropic{conn: c}, nil
}

// Type returns config.TypeAnthropic.
func (a *Anthropic) Type() string { return config.TypeAnthropic }

// Messages POSTs a Messages body as is.
func (a *Anthropic) Messages(ctx context.Context, body []byte, hdr http.Header) (*http.Response, error) {
	return a.send(ctx, http.MethodPost, "v1/messages", body, hdr)
}

// CountTokens POSTs a count_tokens body as is.
func (a *Anthropic) CountTokens(ctx context.Context, body []byte, hdr http.Header) (*http.Response, error) {
	return a.send(ctx, http.MethodPost, "v1/messages/count_tokens", body, hdr)
}

// Chat sends an OpenAI chat-completions body as a Messages request and
// returns the answer in OpenAI's format, with the backend's status and
// headers: one chat.completion body, or an OpenAI SSE stream produced as
// the Anthropic events arrive (closing it stops the upstream read). A
// body that cannot be translated is ErrBadRequest; an error status comes
// back as a *StatusError whose body is in OpenAI's error shape.
func (a *Anthropic) Chat(ctx context.Context, body []byte, hdr http.Header) (*http.Response, error) {
	mb, info, err := anthropic.RequestFromChat(body, 0)
	if err != nil {
		if errors.Is(err, anthropic.ErrInvalid) {
			return nil, badRequest("%s", err.Error())
		}
		return nil, err
	}
	// The client's Accept names the format it reads (NDJSON for an Ollama
	// client), not the one Anthropic answers in.
	if _, ok := hdr["Accept"]; ok {
		h := make(http.Header, len(hdr))
		for k, v := range hdr {
			h[k] = v
		}
		delete(h, "Accept")
		hdr = h
	}
	ctx, cancel := context.WithCancel(ctx)
	resp, err := a.send(ctx, http.MethodPost, "v1/messages", mb, hdr)
	if err != nil {
		cancel()
		return nil, openAIStatusError(err)
	}
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt == "text/event-stream" {
		return a.streamChat(resp, info, cancel), nil
	}
	defer cancel()
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswerBody+1))
	if err != nil {
		return nil, fmt.Errorf("backend %s: reading the answer: %w", a.cfg.Name, err)
	}
	if len(raw) > maxAnswerBody {
		return nil, fmt.Errorf("backend %s: the answer is larger than %d bytes", a.cfg.Name, maxAnswerBody)
	}
	out, err := anthropic.ResponseToChat(raw, info)
	if err != nil {
		return nil, fmt.Errorf("backend %s: %w", a.cfg.Name, err)
	}
	resp.Header = resp.Header.Clone()
	resp.Header.Set("Content-Type", "application/json")
	resp.Header.Set("Content-Length", fmt.Sprint(len(out)))
	resp.ContentLength = int64(len(out))
	resp.Body = io.NopCloser(bytes.NewReader(out))
	return resp, nil
}

// streamChat returns resp with its Messages stream translated, as it
// arrives, into an OpenAI chat stream. A goroutine feeds a pipe; it ends
// when the upstream stream ends or fails, or when the returned body is
// closed, which also cancels the upstream request.
func (a *Anthropic) streamChat(resp *http.Response, info anthropic.Info, cancel context.CancelFunc) *http.Response {
	pr, pw := io.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer resp.Body.Close()
		err := anthropic.StreamToChat(resp.Body, info, func(data []byte) error {
			_, err := pw.Write(sseData(data))
			return err
		})
		var se *anthropic.StreamError
		if errors.As(err, &se) {
			// In band, as an OpenAI-compatible server reports a
			// failure after its header: the relay passes it on and
			// the stream translators recognise it.
			_, err = pw.Write(sseData(openAIError(se.Type, se.Message)))
		}
		pw.CloseWithError(err) // nil: the reader sees io.EOF
	}()
	out := *resp
	out.Header = resp.Header.Clone()
	out.Header.Set("Content-Type", "text/event-stream")
	out.Header.Del("Content-Length")
	out.ContentLength = -1
	out.Body = &pipeBody{pr: pr, cancel: cancel, done: done}
	return &out
}

// pipeBody is a translated stream's body.
type pipeBody struct {
	pr     *io.PipeReader
	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once
}

func (b *pipeBody) Read(p []byte) (int, error) { return b.pr.Read(p) }

// Close stops the upstream read and waits for the translating goroutine:
// the cancel ends a read it is blocked in, the closed pipe a write.
func (b *pipeBody) Close() error {
	b.once.Do(func() {
		b.cancel()
		_ = b.pr.Close()
		<-b.done
	})
	return nil
}

func sseData(payload []byte) []byte {
	out := make([]byte, 0, len(payload)+8)
	return append(append(append(out, "data: "...), payload...), "\n\n"...)
}

// openAIError is an error in OpenAI's shape, with Anthropic's type.
func openAIError(typ, msg string) []byte {
	b, _ := json.Marshal(map[string]any{"error": map[string]any{"message": msg, "type": typ, "param": nil, "code": nil}})
	return b
}

// openAIStatusError gives a backend's error status an OpenAI-shaped body,
// as Chat answers in OpenAI's format: a handler relaying it to an OpenAI
// client then relays a body that client reads.
func openAIStatusError(err error) error {
	var se *StatusError
	if !errors.As(err, &se) {
		return err
	}
	out := *se
	out.Body = openAIError(gjson.GetBytes(se.Body, "error.type").String(), se.Message())
	out.Header = se.Header.Clone()
	if out.Header == nil {
		out.Header = http.Header{}
	}
	out.Header.Set("Content-Type", "application/json")
	out.Header.Del("Content-Length")
	return &out
}

// Embeddings: Anthropic has no embeddings API.
func (a *Anthropic) Embeddings(ctx context.Context, body []byte, hdr http.Header) (*http.Response, error) {
	return nil, fmt.Errorf("backend %s: embeddings: %w", a.cfg.Name, ErrUnsupported)
}

// Embed: Anthropic has no embeddings API.
func (a *Anthropic) Embed(ctx context.Context, model string, texts []string) ([][]float32, error) {
	return nil, fmt.Errorf("backend %s: embed: %w", a.cfg.Name, ErrUnsupported)
}

// maxModelsBody caps the model list read.
const maxModelsBody = 8 << 20

// Models lists the backend's models (the first 1000, Anthropic's page
// limit: far more than it serves).
func (a *Anthropic) Models(ctx context.Context) ([]Model, error) {
	ctx, cancel := context.WithTimeout(ctx, a.cfg.Timeout)
	defer cancel()
	resp, err := a.sendUncached(ctx, http.MethodGet, "v1/models", "limit=1000", nil, nil)
	if err != nil {
		return nil, fmt.Errorf("backend %s: list models: %w", a.cfg.Name, err)
	}
	defer resp.Body.Close()
	var list struct {
		Data []struct {
			ID          string    `json:"id"`
			DisplayName string    `json:"display_name"`
			CreatedAt   time.Time `json:"created_at"`
		} `json:"data"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxModelsBody)).Decode(&list); err != nil {
		return nil, fmt.Errorf("backend %s: list models: %w: %v", a.cfg.Name, ErrUnreachable, err)
	}
	ms := make([]Model, 0, len(list.Data))
	for _, m := range list.Data {
		ms = append(ms, Model{ID: m.ID, OwnedBy: "anthropic", Created: m.CreatedAt})
	}
	return ms, nil
}

// Ping checks that the backend answers.
func (a *Anthropic) Ping(ctx context.Context) error {
	_, err := a.Models(ctx)
	return err
}
