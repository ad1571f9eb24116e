package providers

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"

	"github.com/ollama/ollama/api"
)

// Embedding requests and responses translated between the two formats.

// EmbedInfo is what embedding translation needs to shape the response.
type EmbedInfo struct {
	Model  string
	Base64 bool
}

// OpenAIEmbedToOllama translates an OpenAI embeddings body into /api/embed.
func OpenAIEmbedToOllama(body []byte) ([]byte, EmbedInfo, error) {
	var in oaEmbedRequest
	if err := json.Unmarshal(body, &in); err != nil {
		return nil, EmbedInfo{}, badRequest("invalid embeddings request: %v", err)
	}
	info := EmbedInfo{Model: in.Model, Base64: in.EncodingFormat == "base64"}
	var input any
	var one string
	var many []string
	switch {
	case json.Unmarshal(in.Input, &one) == nil:
		input = one
	case json.Unmarshal(in.Input, &many) == nil:
		input = many
	default:
		return nil, info, badRequest("input must be a string or a list of strings for an Ollama backend")
	}
	b, err := json.Marshal(api.EmbedRequest{Model: in.Model, Input: input, Dimensions: in.Dimensions})
	return b, info, err
}

// OllamaEmbedResponseToOpenAI translates an /api/embed response.
func OllamaEmbedResponseToOpenAI(body []byte, info EmbedInfo) ([]byte, error) {
	var r api.EmbedResponse
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, fmt.Errorf("decoding Ollama embed response: %w", err)
	}
	type item struct {
		Object    string `json:"object"`
		Index     int    `json:"index"`
		Embedding any    `json:"embedding"`
	}
	data := make([]item, len(r.Embeddings))
	for i, e := range r.Embeddings {
		data[i] = item{Object: "embedding", Index: i, Embedding: e}
		if info.Base64 {
			buf := make([]byte, 4*len(e))
			for j, f := range e {
				binary.LittleEndian.PutUint32(buf[4*j:], math.Float32bits(f))
			}
			data[i].Embedding = base64.StdEncoding.EncodeToString(buf)
		}
	}
	model := r.Model
	if model == "" {
		model = info.Model
	}
	return json.Marshal(map[string]any{
		"object": "list", "data": data, "model": model,
		"usage": map[string]int{"prompt_tokens": r.PromptEvalCount, "total_tokens": r.PromptEvalCount},
	})
}

// OllamaEmbedToOpenAI translates an /api/embed body into OpenAI embeddings.
func OllamaEmbedToOpenAI(body []byte) ([]byte, EmbedInfo, error) {
	var in api.EmbedRequest
	if err := json.Unmarshal(body, &in); err != nil {
		return nil, EmbedInfo{}, badRequest("invalid embed request: %v", err)
	}
	out := oaEmbedRequest{Model: in.Model, Dimensions: in.Dimensions}
	var err error
	if out.Input, err = json.Marshal(in.Input); err != nil {
		return nil, EmbedInfo{}, badRequest("input: %v", err)
	}
	b, err := json.Marshal(out)
	return b, EmbedInfo{Model: in.Model}, err
}

// OpenAIEmbedResponseToOllama translates an OpenAI embeddings response.
func OpenAIEmbedResponseToOllama(body []byte, info EmbedInfo) ([]byte, error) {
	var r struct {
		Model string `json:"model"`
		Data  []struct {
			Index     int       `json:"index"`
			Embedding []float32 `json:"embedding"`
		} `json:"data"`
		Usage *oaUsage `json:"usage"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, fmt.Errorf("decoding OpenAI embeddings response: %w", err)
	}
	out := api.EmbedResponse{Model: r.Model, Embeddings: make([][]float32, len(r.Data))}
	if out.Model == "" {
		out.Model = info.Model
	}
	for _, d := range r.Data {
		if d.Index < 0 || d.Index >= len(out.Embeddings) {
			return nil, fmt.Errorf("embedding index %d out of range", d.Index)
		}
		out.Embeddings[d.Index] = d.Embedding
	}
	if r.Usage != nil {
		out.PromptEvalCount = r.Usage.PromptTokens
	}
	return json.Marshal(out)
}
