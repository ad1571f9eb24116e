package proxy

import (
	"context"
	"fmt"
	"io"
	"net/http"

	"github.com/dso-proxy/dso/config"
	"github.com/dso-proxy/dso/providers"
	"github.com/tidwall/gjson"
)

// dso's hub format is OpenAI chat completions. A surface that no backend
// speaks natively (Responses over a chat backend, Anthropic Messages over
// an OpenAI or Ollama one, legacy completions) is translated into a chat
// body, sent through hubChat to whatever backend serves the model, and its
// answer, always read in OpenAI's chat format, is translated back. So each
// surface needs one translator, not one per backend type.

// chatFormat is the chat format a backend takes and answers in: Ollama's
// for Ollama backends, OpenAI's for every other one (OpenAI-compatible
// servers, and backends that translate inside, as the anthropic one does).
func chatFormat(b providers.Backend) string {
	if b.Type() == config.TypeOllama {
		return config.TypeOllama
	}
	return config.TypeOpenAI
}

// hubAnswer is a backend's answer to a hub request, read in OpenAI's chat
// format whatever the backend spoke.
type hubAnswer struct {
	resp   *http.Response
	stream bool
	ollama bool                      // resp is Ollama's: translate it
	info   providers.ChatRequestInfo // what the Ollama translation needs
}

// hubChat sends an OpenAI chat-completions body through chain, with the
// retries and fallbacks of any chat, and returns the answer of the backend
// that answered. The caller must Close it.
func (s *Server) hubChat(ctx context.Context, r *http.Request, chain []providers.Backend, body []byte) (*hubAnswer, providers.Backend, error) {
	var ti providers.ChatRequestInfo
	resp, b, err := s.dispatch(ctx, chain, chatCall(s, r, body, config.TypeOpenAI, providers.OpenAIChatToOllama, &ti))
	if err != nil {
		return nil, b, err
	}
	a := &hubAnswer{resp: resp, ollama: chatFormat(b) == config.TypeOllama, info: ti}
	if a.ollama {
		a.stream = ti.Stream
	} else {
		a.stream = framingOf(resp) == framingSSE
	}
	return a, b, nil
}

// Stream reports whether the answer is a stream of chunks (read with
// Events) rather than one body (read with Whole).
func (a *hubAnswer) Stream() bool { return a.stream }

// Whole reads a non-streamed answer: one chat.completion body.
func (a *hubAnswer) Whole() ([]byte, error) {
	raw, err := io.ReadAll(io.LimitReader(a.resp.Body, maxTranslatedBody+1))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", providers.ErrUnreachable, err)
	}
	if len(raw) > maxTranslatedBody {
		return nil, fmt.Errorf("the backend's answer is larger than %d bytes", maxTranslatedBody)
	}
	if a.ollama {
		return providers.OllamaChatResponseToOpenAI(raw, a.info)
	}
	return raw, nil
}

// Events calls fn with each chat.completion.chunk payload of a streamed
// answer, in order, and returns after the last one ("[DONE]" is not
// passed). A callback error stops the stream and is returned.
func (a *hubAnswer) Events(fn func(data []byte) error) error {
	if !a.ollama {
		return providers.OpenAIStream(a.resp.Body, fn)
	}
	return providers.OllamaToOpenAIStream(a.resp.Body, a.info, func(data []byte) error {
		if string(data) == "[DONE]" {
			return nil
		}
		return fn(data)
	})
}

// readTranslated begins a request of a translated surface as the chat
// handlers begin theirs: timing and header feedback on, then the body,
// read within the limits and checked to be one JSON object. ok is false
// when it has written the error.
func (s *Server) readTranslated(w http.ResponseWriter, r *http.Request, sf surface) (body []byte, root gjson.Result, ok bool) {
	info(r.Context()).timing.on = true
	s.headerFeedback(w, r)
	body, err := s.readBody(w, r)
	if err == nil {
		root, err = jsonObject(body)
	}
	if err != nil {
		s.fail(w, r, sf, err)
		return nil, root, false
	}
	return body, root, true
}

// teeChunk copies one hub chunk to a trace's answer as an SSE data line,
// the form answerText reads.
func teeChunk(tee io.Writer, data []byte) {
	if tee == nil {
		return
	}
	_, _ = tee.Write([]byte("data: "))
	_, _ = tee.Write(data)
	_, _ = tee.Write([]byte("\n"))
}

// Close releases the backend's response.
func (a *hubAnswer) Close() { _ = a.resp.Body.Close() }
