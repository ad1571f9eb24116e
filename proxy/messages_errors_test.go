package proxy_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"

	sdk "github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/anthropics/anthropic-sdk-go/v2/option"
	"github.com/dso-proxy/dso/config"
	"github.com/dso-proxy/dso/proxy"
)

// anthropicError reads an error body in Anthropic's shape.
func anthropicError(t *testing.T, body []byte) (typ, msg string) {
	t.Helper()
	var e struct {
		Type  string `json:"type"`
		Error struct {
			Type    string `json:"type"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := json.Unmarshal(body, &e); err != nil || e.Type != "error" {
		t.Fatalf("not an Anthropic error: %s", body)
	}
	return e.Error.Type, e.Error.Message
}

// sdkError is the official client's error for err.
func sdkError(t *testing.T, err error) *sdk.Error {
	t.Helper()
	var ae *sdk.Error
	if !errors.As(err, &ae) {
		t.Fatalf("err = %v; want *anthropic.Error", err)
	}
	return ae
}

func TestAnthropicErrors(t *testing.T) {
	be := newBackend(t, "openai")
	cfg := openaiCfg(be)
	cfg.Models = []string{"claude-*"}
	fe := newFrontend(t, []config.Backend{cfg})
	c := anthropicClient(fe)
	ctx := context.Background()
	msg := []sdk.MessageParam{sdk.NewUserMessage(sdk.NewTextBlock("hi"))}

	_, err := c.Messages.New(ctx, sdk.MessageNewParams{Model: "gpt-nope", MaxTokens: 10, Messages: msg})
	if ae := sdkError(t, err); ae.StatusCode != 404 || ae.Type() != "not_found_error" {
		t.Errorf("unknown model: %d %q", ae.StatusCode, ae.Type())
	}
	_, err = c.Messages.New(ctx, sdk.MessageNewParams{Model: "claude-x", MaxTokens: 0, Messages: msg})
	if ae := sdkError(t, err); ae.StatusCode != 400 || ae.Type() != "invalid_request_error" {
		t.Errorf("max_tokens 0: %d %q", ae.StatusCode, ae.Type())
	}
	st := c.Messages.NewStreaming(ctx, sdk.MessageNewParams{Model: "gpt-nope", MaxTokens: 10, Messages: msg})
	for st.Next() {
	}
	if ae := sdkError(t, st.Err()); ae.StatusCode != 404 || ae.Type() != "not_found_error" {
		t.Errorf("unknown model, streamed: %d %q", ae.StatusCode, ae.Type())
	}

	for _, tc := range []struct {
		name, path, body, method string
		status                   int
		typ, msg                 string
	}{
		{"not json", "/v1/messages", `{"model":`, "POST", 400, "invalid_request_error", "not valid JSON"},
		{"no max_tokens", "/v1/messages", `{"model":"claude-x","messages":[{"role":"user","content":"hi"}]}`, "POST", 400, "invalid_request_error", "max_tokens: Field required"},
		{"no messages", "/v1/messages", `{"model":"claude-x","max_tokens":5}`, "POST", 400, "invalid_request_error", "messages is required"},
		{"server tool over a chat backend", "/v1/messages", `{"model":"claude-x","max_tokens":5,"tools":[{"type":"web_search_20250305","name":"web_search"}],"messages":[{"role":"user","content":"hi"}]}`, "POST", 400, "invalid_request_error", "needs an anthropic backend"},
		{"unknown model", "/v1/messages/count_tokens", `{"model":"gpt-nope","messages":[{"role":"user","content":"hi"}]}`, "POST", 404, "not_found_error", "no backend serves"},
		{"wrong method", "/v1/messages", ``, "GET", 405, "invalid_request_error", "not allowed"},
		{"no such route", "/v1/messages/batches", `{}`, "POST", 404, "not_found_error", "no route"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, hdr, body := send(t, tc.method, fe.URL+tc.path, tc.body)
			typ, m := anthropicError(t, body)
			if code != tc.status || typ != tc.typ || !strings.Contains(m, tc.msg) || hdr.Get("Content-Type") != "application/json" {
				t.Errorf("%d %s; want %d %s containing %q", code, body, tc.status, tc.typ, tc.msg)
			}
		})
	}
}

// A backend's error status reaches an Anthropic client with its status
// and Anthropic's type: relayed as it came from an anthropic backend,
// reshaped from an OpenAI one.
func TestAnthropicBackendErrors(t *testing.T) {
	overloaded := `{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"},"request_id":"req_011CSHoEeqs5C35K2UUqR7Fy"}`
	for _, typ := range []string{"anthropic", "openai"} {
		t.Run(typ, func(t *testing.T) {
			be := newBackend(t, typ)
			be.setOverride(func(w http.ResponseWriter, r *http.Request, _ []byte) bool {
				w.Header().Set("Content-Type", "application/json")
				if typ == "anthropic" {
					w.WriteHeader(529)
					_, _ = w.Write([]byte(overloaded))
				} else {
					w.WriteHeader(http.StatusTooManyRequests)
					_, _ = w.Write([]byte(`{"error":{"message":"Rate limit reached","type":"requests","code":"rate_limit_exceeded"}}`))
				}
				return true
			})
			fe := newFrontend(t, []config.Backend{cfgFor(be)})
			c := anthropicClient(fe)
			_, err := c.Messages.New(context.Background(), sdk.MessageNewParams{Model: "claude-x", MaxTokens: 10, Messages: []sdk.MessageParam{sdk.NewUserMessage(sdk.NewTextBlock("hi"))}})
			ae := sdkError(t, err)
			if typ == "anthropic" {
				if ae.StatusCode != 529 || ae.Type() != "overloaded_error" {
					t.Errorf("%d %q", ae.StatusCode, ae.Type())
				}
				if _, _, body := post(t, fe.URL+"/v1/messages", `{"model":"claude-x","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}`); string(body) != overloaded {
					t.Errorf("relayed %s; want %s", body, overloaded)
				}
				return
			}
			if ae.StatusCode != 429 || ae.Type() != "rate_limit_error" || !strings.Contains(err.Error(), "Rate limit reached") {
				t.Errorf("%d %q: %v", ae.StatusCode, ae.Type(), err)
			}
		})
	}
}

// A chat backend that breaks off its stream ends the client's stream with
// an error event, never with a message_stop.
func TestAnthropicStreamFailsMidway(t *testing.T) {
	be := newBackend(t, "openai")
	be.setOverride(func(w http.ResponseWriter, r *http.Request, _ []byte) bool {
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = w.Write([]byte("data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"The capital\"}}]}\n\n"))
		return true // and the stream ends without a finish or [DONE]
	})
	fe := newFrontend(t, []config.Backend{openaiCfg(be)})
	c := anthropicClient(fe)
	st := c.Messages.NewStreaming(context.Background(), sdk.MessageNewParams{Model: "claude-x", MaxTokens: 10, Messages: []sdk.MessageParam{sdk.NewUserMessage(sdk.NewTextBlock("hi"))}})
	var m sdk.Message
	for st.Next() {
		_ = m.Accumulate(st.Current())
	}
	if ae := sdkError(t, st.Err()); ae.Type() != "api_error" || messageText(&m) != "The capital" {
		t.Errorf("error %q after %q", ae.Type(), messageText(&m))
	}
	code, _, body := post(t, fe.URL+"/v1/messages", `{"model":"claude-x","max_tokens":5,"stream":true,"messages":[{"role":"user","content":"hi"}]}`)
	if s := string(body); code != 200 || !strings.HasSuffix(s, "\n\n") || !strings.Contains(s, "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"api_error\"") || strings.Contains(s, "message_stop") {
		t.Errorf("%d %s", code, body)
	}
}

// Claude Code sends dso's key as x-api-key or as a bearer token; either
// passes dso's auth, and neither reaches the backend, which gets its own.
func TestAnthropicAuth(t *testing.T) {
	for _, typ := range []string{"anthropic", "openai"} {
		t.Run(typ, func(t *testing.T) {
			be := newBackend(t, typ)
			cfg := cfgFor(be)
			cfg.APIKey = "sk-backend"
			fe := newFrontend(t, []config.Backend{cfg}, func(o *proxy.Options, _ []config.Backend) { o.APIKeys = []config.Secret{"dso-key"} })
			p := sdk.MessageNewParams{Model: "claude-x", MaxTokens: 10, Messages: []sdk.MessageParam{sdk.NewUserMessage(sdk.NewTextBlock("hi"))}}
			base := []option.RequestOption{option.WithoutEnvironmentDefaults(), option.WithBaseURL(fe.URL), option.WithMaxRetries(0)}
			for name, cred := range map[string]option.RequestOption{
				"x-api-key": option.WithHeader("x-api-key", "dso-key"),
				"bearer":    option.WithAuthToken("dso-key"),
			} {
				c := sdk.NewClient(append(base, cred)...)
				if _, err := c.Messages.New(context.Background(), p); err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				h := be.last(t).Header
				if strings.Contains(h.Get("Authorization")+h.Get("X-Api-Key"), "dso-key") {
					t.Errorf("%s: dso's key reached the backend: %v", name, h)
				}
				if typ == "anthropic" && (h.Get("X-Api-Key") != "sk-backend" || h.Get("Authorization") != "") {
					t.Errorf("%s: backend auth %v", name, h)
				}
				if typ == "openai" && h.Get("Authorization") != "Bearer sk-backend" {
					t.Errorf("%s: backend auth %v", name, h)
				}
			}
			wrong := sdk.NewClient(append(base, option.WithHeader("x-api-key", "wrong"))...)
			_, err := wrong.Messages.New(context.Background(), p)
			if ae := sdkError(t, err); ae.StatusCode != 401 || ae.Type() != "authentication_error" {
				t.Errorf("wrong key: %d %q", ae.StatusCode, ae.Type())
			}
		})
	}
}

func TestAnthropicCountTokens(t *testing.T) {
	t.Run("anthropic", func(t *testing.T) {
		be := newBackend(t, "anthropic")
		fe := newFrontend(t, []config.Backend{anthropicCfg(be)})
		body := `{"model":"claude-x", "messages":[{"role":"user","content":"hi"}]}`
		code, _, got := post(t, fe.URL+"/v1/messages/count_tokens", body)
		if sent := be.last(t); code != 200 || string(got) != `{"input_tokens":21}` || sent.Path != "/v1/messages/count_tokens" || string(sent.Body) != body {
			t.Errorf("%d %s; backend got %s %s", code, got, sent.Path, sent.Body)
		}
	})
	t.Run("estimated", func(t *testing.T) {
		be := newBackend(t, "openai")
		fe := newFrontend(t, []config.Backend{openaiCfg(be)})
		c := anthropicClient(fe)
		count := func(text string, tools ...sdk.ToolUnionParam) int64 {
			t.Helper()
			res, err := c.Messages.CountTokens(context.Background(), sdk.MessageCountTokensParams{
				Model: "claude-x", System: sdk.MessageCountTokensParamsSystemUnion{OfString: sdk.String("Be brief.")},
				Messages: []sdk.MessageParam{sdk.NewUserMessage(sdk.NewTextBlock(text))}, Tools: toolsForCount(tools),
			})
			if err != nil {
				t.Fatal(err)
			}
			return res.InputTokens
		}
		short, long := count("hi"), count(strings.Repeat("a longer question about units ", 20))
		withTool := count("hi", messagesWeatherTool)
		if short <= 0 || long <= short || withTool <= short {
			t.Errorf("estimates: short %d long %d with a tool %d", short, long, withTool)
		}
		if n := len(be.requests()); n != 0 {
			t.Errorf("the estimate asked the backend %d times", n)
		}
	})
}

func toolsForCount(tools []sdk.ToolUnionParam) []sdk.MessageCountTokensToolUnionParam {
	var out []sdk.MessageCountTokensToolUnionParam
	for _, t := range tools {
		out = append(out, sdk.MessageCountTokensToolUnionParam{OfTool: t.OfTool})
	}
	return out
}

// Header feedback is taken on the Messages route as on chat.
func TestAnthropicHeaderFeedback(t *testing.T) {
	be := newBackend(t, "openai")
	fe := newFrontend(t, []config.Backend{openaiCfg(be)})
	_, hdr, _ := post(t, fe.URL+"/v1/messages", `{"model":"claude-x","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}`, proxy.HeaderFeedback, "tr_1=1")
	if hdr.Get(proxy.HeaderFeedbackRejected) == "" {
		t.Errorf("no feedback outcome on the response: %v", hdr)
	}
}
