package providers

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// Ollama's legacy embeddings route, POST /api/embeddings ({"model","prompt"}
// → {"embedding":[...]}), which Open WebUI still calls, translated to and
// from OpenAI embeddings for OpenAI-compatible backends.

// ollamaLegacyEmbedRequest is the part of an /api/embeddings body that has
// an OpenAI counterpart; keep_alive and options have none.
type ollamaLegacyEmbedRequest struct {
	Model  string `json:"model"`
	Prompt string `json:"prompt"`
}

// OllamaLegacyEmbedToOpenAI translates an /api/embeddings body into an
// OpenAI embeddings body with the prompt as its one input. An empty prompt
// is Ollama's "load the model", which has no OpenAI form: the caller
// answers it (OllamaLegacyEmbedLoad) and does not call this.
func OllamaLegacyEmbedToOpenAI(body []byte) ([]byte, EmbedInfo, error) {
	var in ollamaLegacyEmbedRequest
	if err := json.Unmarshal(body, &in); err != nil {
		return nil, EmbedInfo{}, badRequest("invalid embeddings request: %v", err)
	}
	if in.Model == "" {
		return nil, EmbedInfo{}, badRequest("model is required")
	}
	if in.Prompt == "" {
		return nil, EmbedInfo{}, badRequest("prompt is required")
	}
	input, err := json.Marshal(in.Prompt)
	if err != nil {
		return nil, EmbedInfo{}, badRequest("prompt: %v", err)
	}
	b, err := json.Marshal(oaEmbedRequest{Model: in.Model, Input: input})
	return b, EmbedInfo{Model: in.Model}, err
}

// OllamaLegacyEmbedLoad is Ollama's answer to an /api/embeddings request
// with an empty prompt: no vector.
var OllamaLegacyEmbedLoad = []byte(`{"embedding":[]}`)

// OpenAIEmbedResponseToOllamaLegacy translates an OpenAI embeddings
// response for one input into {"embedding":[...]}. The vector's numbers
// are copied as the backend wrote them, not re-encoded.
func OpenAIEmbedResponseToOllamaLegacy(body []byte) ([]byte, error) {
	var r struct {
		Data []struct {
			Index     int             `json:"index"`
			Embedding json.RawMessage `json:"embedding"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, fmt.Errorf("decoding OpenAI embeddings response: %w", err)
	}
	for _, d := range r.Data {
		if d.Index != 0 {
			continue
		}
		// Checked to be a list of numbers: a base64 string or anything
		// else would reach the client as a vector it cannot read.
		var v []float64
		if err := json.Unmarshal(d.Embedding, &v); err != nil || v == nil {
			return nil, fmt.Errorf("OpenAI embeddings response: embedding is not a list of numbers")
		}
		var out bytes.Buffer
		out.Grow(len(d.Embedding) + 14)
		out.WriteString(`{"embedding":`)
		if err := json.Compact(&out, d.Embedding); err != nil {
			return nil, fmt.Errorf("OpenAI embeddings response: %w", err)
		}
		out.WriteByte('}')
		return out.Bytes(), nil
	}
	return nil, fmt.Errorf("OpenAI embeddings response has no embedding for input 0")
}
