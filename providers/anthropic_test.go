package providers_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dso-proxy/dso/config"
	"github.com/dso-proxy/dso/providers"
)

// fakeAnthropic records what it receives and answers with handle.
type fakeAnthropic struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []*http.Request
	body [][]byte
}

func newFakeAnthropic(t *testing.T, handle func(w http.ResponseWriter, r *http.Request, body []byte)) *fakeAnthropic {
	f := &fakeAnthropic{}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		f.reqs, f.body = append(f.reqs, r), append(f.body, b)
		f.mu.Unlock()
		handle(w, r, b)
	}))
	t.Cleanup(f.Close)
	return f
}

func (f *fakeAnthropic) last(t *testing.T) (*http.Request, []byte) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.reqs) == 0 {
		t.Fatal("no request")
	}
	return f.reqs[len(f.reqs)-1], f.body[len(f.body)-1]
}

func newAnthropic(t *testing.T, url string, key config.Secret) *providers.Anthropic {
	t.Helper()
	a, err := providers.NewAnthropic(config.Backend{Name: "claude", Type: config.TypeAnthropic, URL: url + "/v1", APIKey: key, Timeout: 10 * time.Second}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

const messageJSON = `{"id":"msg_1","type":"message","role":"assistant","model":"claude-sonnet-4-5","content":[{"type":"text","text":"Paris."},{"type":"tool_use","id":"toolu_1","name":"f","input":{"a":1}}],"stop_reason":"tool_use","stop_sequence":null,"usage":{"input_tokens":10,"output_tokens":3}}`

// Chat sends the key as x-api-key with anthropic-version, translates the
// chat body, and answers in OpenAI's format.
func TestAnthropicChat(t *testing.T) {
	f := newFakeAnthropic(t, func(w http.ResponseWriter, r *http.Request, _ []byte) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Request-Id", "req_1")
		_, _ = io.WriteString(w, messageJSON)
	})
	a := newAnthropic(t, f.URL, "sk-ant-secret")
	hdr := http.Header{"Authorization": {"Bearer client"}, "X-Custom": {"kept"}, "Accept": {"application/x-ndjson"}}
	resp, err := a.Chat(context.Background(), []byte(`{"model":"claude-sonnet-4-5","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Capital?"}]}`), hdr)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	req, body := f.last(t)
	if req.URL.Path != "/v1/messages" || req.Header.Get("X-Api-Key") != "sk-ant-secret" || req.Header.Get("Authorization") != "" ||
		req.Header.Get("Anthropic-Version") != providers.AnthropicVersion || req.Header.Get("X-Custom") != "kept" || req.Header.Get("Accept") != "" {
		t.Errorf("request %s %v", req.URL.Path, req.Header)
	}
	if hdr.Get("Authorization") != "Bearer client" || hdr.Get("Accept") == "" {
		t.Error("the caller's header was modified")
	}
	var sent struct {
		System    string `json:"system"`
		MaxTokens int    `json:"max_tokens"`
	}
	if json.Unmarshal(body, &sent) != nil || sent.System != "Be brief." || sent.MaxTokens != 4096 {
		t.Errorf("sent %s", body)
	}
	out, _ := io.ReadAll(resp.Body)
	var c struct {
		Object  string `json:"object"`
		Choices []struct {
			Message struct {
				Content   string `json:"content"`
				ToolCalls []struct {
					Function struct{ Name, Arguments string }
				} `json:"tool_calls"`
			}
			FinishReason string `json:"finish_reason"`
		}
	}
	if err := json.Unmarshal(out, &c); err != nil || c.Object != "chat.completion" || c.Choices[0].Message.Content != "Paris." ||
		c.Choices[0].FinishReason != "tool_calls" || c.Choices[0].Message.ToolCalls[0].Function.Arguments != `{"a":1}` {
		t.Errorf("answer %s", out)
	}
	if resp.Header.Get("Request-Id") != "req_1" || resp.ContentLength != int64(len(out)) {
		t.Errorf("headers %v length %d", resp.Header, resp.ContentLength)
	}
}

const messageStream = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_2\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude\",\"content\":[],\"usage\":{\"input_tokens\":5,\"output_tokens\":1}}}\n\n" +
	"event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n" +
	"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi\"}}\n\n"

const messageStreamEnd = "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n" +
	"event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":2}}\n\n" +
	"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"

func TestAnthropicChatStream(t *testing.T) {
	tail := map[string]string{
		"whole": messageStreamEnd,
		"error": "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n",
	}
	for name, end := range tail {
		t.Run(name, func(t *testing.T) {
			f := newFakeAnthropic(t, func(w http.ResponseWriter, r *http.Request, _ []byte) {
				w.Header().Set("Content-Type", "text/event-stream; charset=utf-8")
				_, _ = io.WriteString(w, messageStream+end)
			})
			a := newAnthropic(t, f.URL, "")
			resp, err := a.Chat(context.Background(), []byte(`{"model":"claude","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}`),
				http.Header{"Anthropic-Version": {"2024-01-01"}, "X-Api-Key": {"client-key"}})
			if err != nil {
				t.Fatal(err)
			}
			out, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				t.Fatal(err)
			}
			req, _ := f.last(t)
			if req.Header.Get("Anthropic-Version") != "2024-01-01" || req.Header.Get("X-Api-Key") != "client-key" {
				t.Errorf("the client's version and key (no backend key) are forwarded: %v", req.Header)
			}
			if resp.Header.Get("Content-Type") != "text/event-stream" || resp.ContentLength != -1 {
				t.Errorf("headers %v", resp.Header)
			}
			s := string(out)
			if !strings.Contains(s, `"delta":{"content":"Hi"}`) || !strings.HasPrefix(s, "data: {") {
				t.Errorf("stream %s", s)
			}
			switch name {
			case "whole":
				if !strings.HasSuffix(s, `"usage":{"prompt_tokens":5,"completion_tokens":2,"total_tokens":7}}`+"\n\ndata: [DONE]\n\n") {
					t.Errorf("stream end %s", s)
				}
			case "error":
				if !strings.HasSuffix(s, `data: {"error":{"code":null,"message":"Overloaded","param":null,"type":"overloaded_error"}}`+"\n\n") {
					t.Errorf("stream end %s", s)
				}
			}
		})
	}
}

// Closing a translated stream mid-way cancels the upstream request and
// returns only once the translating goroutine has ended.
func TestAnthropicChatStreamClose(t *testing.T) {
	gone := make(chan struct{})
	f := newFakeAnthropic(t, func(w http.ResponseWriter, r *http.Request, _ []byte) {
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = io.WriteString(w, messageStream)
		w.(http.Flusher).Flush()
		<-r.Context().Done() // hold the stream open until dso hangs up
		close(gone)
	})
	a := newAnthropic(t, f.URL, "k")
	resp, err := a.Chat(context.Background(), []byte(`{"model":"claude","stream":true,"messages":[{"role":"user","content":"hi"}]}`), nil)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	var got []byte
	for !bytes.Contains(got, []byte(`"Hi"`)) {
		n, err := resp.Body.Read(buf)
		if err != nil {
			t.Fatalf("read: %v after %q", err, got)
		}
		got = append(got, buf[:n]...)
	}
	resp.Body.Close()
	<-gone
	if _, err := resp.Body.Read(buf); err == nil {
		t.Error("read after close succeeded")
	}
}

// An error status keeps its status and headers; its body is in OpenAI's
// shape with Anthropic's message and type.
func TestAnthropicChatStatusError(t *testing.T) {
	f := newFakeAnthropic(t, func(w http.ResponseWriter, r *http.Request, _ []byte) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Retry-After", "3")
		w.WriteHeader(http.StatusTooManyRequests)
		_, _ = io.WriteString(w, `{"type":"error","error":{"type":"rate_limit_error","message":"Number of request tokens has exceeded your per-minute rate limit"},"request_id":"req_x"}`)
	})
	a := newAnthropic(t, f.URL, "sk-ant-hidden")
	_, err := a.Chat(context.Background(), []byte(`{"model":"claude","messages":[{"role":"user","content":"hi"}]}`), nil)
	var se *providers.StatusError
	if !errors.As(err, &se) || se.StatusCode != 429 || se.Header.Get("Retry-After") != "3" {
		t.Fatalf("err = %v", err)
	}
	want := `{"error":{"code":null,"message":"Number of request tokens has exceeded your per-minute rate limit","param":null,"type":"rate_limit_error"}}`
	if string(se.Body) != want {
		t.Errorf("body %s; want %s", se.Body, want)
	}
	// Messages relays the backend's error as it came.
	_, err = a.Messages(context.Background(), []byte(`{}`), nil)
	if !errors.As(err, &se) || !bytes.HasPrefix(se.Body, []byte(`{"type":"error"`)) || se.Message() != "Number of request tokens has exceeded your per-minute rate limit" {
		t.Errorf("Messages err = %v", err)
	}
	if strings.Contains(err.Error(), "sk-ant-hidden") {
		t.Error("the key is in the error")
	}
}

func TestAnthropicChatBadRequest(t *testing.T) {
	a := newAnthropic(t, "http://127.0.0.1:1", "k")
	_, err := a.Chat(context.Background(), []byte(`{"model":"claude","n":3,"messages":[{"role":"user","content":"hi"}]}`), nil)
	if !errors.Is(err, providers.ErrBadRequest) {
		t.Errorf("err = %v; want ErrBadRequest", err)
	}
}

// Messages and CountTokens send bodies as they are; Models reads
// Anthropic's list; embeddings are unsupported.
func TestAnthropicNative(t *testing.T) {
	f := newFakeAnthropic(t, func(w http.ResponseWriter, r *http.Request, _ []byte) {
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case "/v1/models":
			_, _ = io.WriteString(w, `{"data":[{"type":"model","id":"claude-sonnet-4-5-20250929","display_name":"Claude Sonnet 4.5","created_at":"2025-09-29T00:00:00Z"}],"has_more":false,"first_id":"claude-sonnet-4-5-20250929","last_id":"claude-sonnet-4-5-20250929"}`)
		case "/v1/messages/count_tokens":
			_, _ = io.WriteString(w, `{"input_tokens":7}`)
		default:
			_, _ = io.WriteString(w, messageJSON)
		}
	})
	a := newAnthropic(t, f.URL, "k")
	body := []byte(`{"model":"claude", "max_tokens":5,"messages":[{"role":"user","content":"hi"}],"x":1e400}`)
	resp, err := a.Messages(context.Background(), body, nil)
	if err != nil {
		t.Fatal(err)
	}
	out, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if _, sent := f.last(t); !bytes.Equal(sent, body) || string(out) != messageJSON {
		t.Errorf("sent %s got %s", sent, out)
	}
	resp, err = a.CountTokens(context.Background(), body, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if req, _ := f.last(t); req.URL.Path != "/v1/messages/count_tokens" {
		t.Errorf("path %s", req.URL.Path)
	}
	ms, err := a.Models(context.Background())
	if err != nil || len(ms) != 1 || ms[0].ID != "claude-sonnet-4-5-20250929" || ms[0].Created.Year() != 2025 {
		t.Fatalf("models %+v, %v", ms, err)
	}
	if req, _ := f.last(t); req.URL.RawQuery != "limit=1000" || req.Header.Get("X-Api-Key") != "k" {
		t.Errorf("models request %s %v", req.URL, req.Header)
	}
	if err := a.Ping(context.Background()); err != nil {
		t.Error(err)
	}
	if _, err := a.Embed(context.Background(), "m", []string{"x"}); !errors.Is(err, providers.ErrUnsupported) {
		t.Errorf("Embed err = %v", err)
	}
	if _, err := a.Embeddings(context.Background(), nil, nil); !errors.Is(err, providers.ErrUnsupported) {
		t.Errorf("Embeddings err = %v", err)
	}
	b, err := providers.New(config.Backend{Name: "c", Type: config.TypeAnthropic}, nil)
	if err != nil || b.Type() != config.TypeAnthropic {
		t.Errorf("New: %v, %v", b, err)
	}
}

func TestErrorMessageAnthropic(t *testing.T) {
	body := []byte(`{"type":"error","error":{"type":"not_found_error","message":"model: claude-nope"},"request_id":"req_011"}`)
	if got := providers.ErrorMessage(body, "x"); got != "model: claude-nope" {
		t.Errorf("ErrorMessage = %q", got)
	}
}
