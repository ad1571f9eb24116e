package learn

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/dso-proxy/dso/providers"
)

// Message is one chat turn.
type Message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

// ChatRequest is what learn asks of a model.
type ChatRequest struct {
	Model       string
	Messages    []Message
	Temperature *float64
	MaxTokens   int // 0: the backend's default
}

// Usage counts tokens, as the backend reported them.
type Usage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
}

// Chatter answers chat requests. Backend implements it over providers.
type Chatter interface {
	Chat(ctx context.Context, req ChatRequest) (string, Usage, error)
}

// router is what Backend needs of providers.Router.
type router interface {
	Route(model string) ([]providers.Backend, error)
}

// Backend sends learn's chats to the configured backends, in the OpenAI
// format (translated for Ollama backends), without retrieval: learn's own
// prompts are never injected into.
type Backend struct {
	Router router
}

// maxAnswerBytes caps a backend answer read by learn.
const maxAnswerBytes = 8 << 20

type chatBackend interface {
	Chat(ctx context.Context, body []byte, hdr http.Header) (*http.Response, error)
}

// Chat implements Chatter.
func (b Backend) Chat(ctx context.Context, req ChatRequest) (string, Usage, error) {
	chain, err := b.Router.Route(req.Model)
	if err != nil {
		return "", Usage{}, err
	}
	body := map[string]any{"model": req.Model, "messages": req.Messages, "stream": false}
	if req.Temperature != nil {
		body["temperature"] = *req.Temperature
	}
	if req.MaxTokens > 0 {
		body["max_tokens"] = req.MaxTokens
	}
	raw, err := json.Marshal(body)
	if err != nil {
		return "", Usage{}, err
	}
	var lastErr error
	for _, be := range chain {
		text, u, err := chatOnce(ctx, be, raw)
		if err == nil {
			return text, u, nil
		}
		lastErr = err
		if ctx.Err() != nil {
			break
		}
	}
	return "", Usage{}, lastErr
}

func chatOnce(ctx context.Context, be providers.Backend, raw []byte) (string, Usage, error) {
	cb, ok := be.(chatBackend)
	if !ok {
		return "", Usage{}, fmt.Errorf("backend %s: %w", be.Name(), providers.ErrUnsupported)
	}
	var info providers.ChatRequestInfo
	body := raw
	if be.Type() == "ollama" {
		var err error
		if body, info, err = providers.OpenAIChatToOllama(raw); err != nil {
			return "", Usage{}, err
		}
	}
	resp, err := cb.Chat(ctx, body, nil)
	if err != nil {
		return "", Usage{}, err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswerBytes))
	if err != nil {
		return "", Usage{}, fmt.Errorf("backend %s: reading answer: %w", be.Name(), err)
	}
	if be.Type() == "ollama" {
		if out, err = providers.OllamaChatResponseToOpenAI(out, info); err != nil {
			return "", Usage{}, err
		}
	}
	var r struct {
		Choices []struct {
			Message struct {
				Content string `json:"content"`
			} `json:"message"`
		} `json:"choices"`
		Usage Usage `json:"usage"`
	}
	if err := json.Unmarshal(bytes.TrimSpace(out), &r); err != nil {
		return "", Usage{}, fmt.Errorf("backend %s: decoding answer: %w", be.Name(), err)
	}
	if len(r.Choices) == 0 {
		return "", r.Usage, errors.New("backend " + be.Name() + ": answer has no choices")
	}
	return r.Choices[0].Message.Content, r.Usage, nil
}
