package proxy_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/dso-proxy/dso/config"
	"github.com/dso-proxy/dso/proxy"
)

// waitLimit bounds every wait in these tests; reaching it is a failure,
// never a way to synchronise.
const waitLimit = 10 * time.Second

// closedURL is the URL of a server that has stopped: connections fail.
func closedURL(t *testing.T) string {
	s := httptest.NewServer(http.NotFoundHandler())
	u := s.URL
	s.Close()
	return u
}

// A client that goes away cancels the backend request.
func TestClientDisconnectCancelsBackend(t *testing.T) {
	for _, tc := range []struct{ typ, path, body, first string }{
		{"openai", "/v1/chat/completions", `{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}`, "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"x\"}}]}\n\n"},
		{"ollama", "/api/chat", `{"model":"m","messages":[{"role":"user","content":"hi"}]}`, `{"model":"m","message":{"role":"assistant","content":"x"},"done":false}` + "\n"},
		{"ollama", "/v1/chat/completions", `{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}`, `{"model":"m","message":{"role":"assistant","content":"x"},"done":false}` + "\n"},
	} {
		t.Run(tc.typ+tc.path, func(t *testing.T) {
			be := newBackend(t, tc.typ)
			canceled := make(chan struct{})
			be.setOverride(func(w http.ResponseWriter, r *http.Request, _ []byte) bool {
				w.WriteHeader(http.StatusOK)
				io.WriteString(w, tc.first)
				w.(http.Flusher).Flush()
				select {
				case <-r.Context().Done():
					close(canceled)
				case <-time.After(waitLimit):
				}
				return true
			})
			cfg := openaiCfg(be)
			if tc.typ == "ollama" {
				cfg = ollamaCfg(be)
			}
			fe := newFrontend(t, []config.Backend{cfg})
			ctx, cancel := context.WithCancel(context.Background())
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, fe.URL+tc.path, strings.NewReader(tc.body))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := bufio.NewReader(resp.Body).ReadString('\n'); err != nil {
				t.Fatal(err)
			}
			cancel()
			resp.Body.Close()
			select {
			case <-canceled:
			case <-time.After(waitLimit):
				t.Fatal("backend request was not canceled")
			}
		})
	}
}

// A backend failing before the first byte is retried, then its fallback
// answers.
func TestRetryThenFallback(t *testing.T) {
	flaky, good := newBackend(t, "openai"), newBackend(t, "ollama")
	flaky.setOverride(func(w http.ResponseWriter, r *http.Request, _ []byte) bool {
		http.Error(w, `{"error":{"message":"overloaded"}}`, http.StatusServiceUnavailable)
		return true
	})
	primary := openaiCfg(flaky)
	primary.Name, primary.Retries, primary.Fallbacks = "primary", 2, []string{"backup"}
	backup := ollamaCfg(good)
	backup.Name, backup.Models = "backup", []string{"never-routed-directly"}
	fe := newFrontend(t, []config.Backend{primary, backup})
	code, hdr, body := post(t, fe.URL+"/v1/chat/completions", `{"model":"m","messages":[{"role":"user","content":"hi"}]}`)
	if code != 200 || !strings.Contains(string(body), "Paris") {
		t.Fatalf("status %d: %s", code, body)
	}
	if n := len(flaky.requests()); n != 3 {
		t.Errorf("primary got %d requests; want 1 + 2 retries", n)
	}
	if n := len(good.requests()); n != 1 {
		t.Errorf("backup got %d requests; want 1", n)
	}
	_ = hdr

	// A redirecting primary is not retried, nor followed: the backup answers.
	redirecting := newBackend(t, "openai")
	redirecting.setOverride(func(w http.ResponseWriter, r *http.Request, _ []byte) bool {
		http.Redirect(w, r, "/elsewhere", http.StatusPermanentRedirect)
		return true
	})
	moved := openaiCfg(redirecting)
	moved.Name, moved.Retries, moved.Fallbacks = "primary", 2, []string{"backup"}
	fe = newFrontend(t, []config.Backend{moved, backup})
	code, _, body = post(t, fe.URL+"/v1/chat/completions", `{"model":"m","messages":[{"role":"user","content":"hi"}]}`)
	if code != 200 || !strings.Contains(string(body), "Paris") {
		t.Fatalf("redirecting primary: status %d: %s", code, body)
	}
	if n := len(redirecting.requests()); n != 1 {
		t.Errorf("the redirecting primary got %d requests; want 1 (no retry, no redirect followed)", n)
	}

	// An unreachable primary falls back the same way.
	primary.URL = closedURL(t) + "/v1"
	fe = newFrontend(t, []config.Backend{primary, backup})
	code, _, body = post(t, fe.URL+"/api/chat", `{"model":"m","stream":false,"messages":[{"role":"user","content":"hi"}]}`)
	if code != 200 || !strings.Contains(string(body), "Paris") {
		t.Fatalf("unreachable primary: status %d: %s", code, body)
	}
}

// A backend that fails mid-stream ends the client's stream with an error
// event in the client's format, after the events already sent.
func TestMidStreamFailure(t *testing.T) {
	for _, tc := range []struct {
		typ, path, body, events string
		check                   func(t *testing.T, body string)
	}{
		{"openai", "/v1/chat/completions", `{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}`,
			"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"}}]}\n\ndata: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo\"}}]}\n\ndata: {\"choices\":[{\"ind",
			func(t *testing.T, body string) {
				events := strings.Split(strings.TrimSuffix(body, "\n\n"), "\n\n")
				if len(events) != 3 || !strings.Contains(events[1], `"lo"`) {
					t.Fatalf("events %q", events)
				}
				var e struct {
					Error struct{ Message, Type string }
				}
				if err := json.Unmarshal([]byte(strings.TrimPrefix(events[2], "data: ")), &e); err != nil || e.Error.Message == "" {
					t.Errorf("last event %q is not an OpenAI error", events[2])
				}
			}},
		{"ollama", "/api/chat", `{"model":"m","messages":[{"role":"user","content":"hi"}]}`,
			`{"message":{"role":"assistant","content":"Hel"},"done":false}` + "\n" + `{"message":{"role":"assistant","content":"lo"},"done":false}` + "\n" + `{"mess`,
			func(t *testing.T, body string) {
				lines := strings.Split(strings.TrimSuffix(body, "\n"), "\n")
				if len(lines) != 3 {
					t.Fatalf("lines %q", lines)
				}
				var e struct{ Error string }
				if err := json.Unmarshal([]byte(lines[2]), &e); err != nil || e.Error == "" {
					t.Errorf("last line %q is not an Ollama error", lines[2])
				}
			}},
		{"ollama", "/v1/chat/completions", `{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}`,
			`{"message":{"role":"assistant","content":"Hel"},"done":false}` + "\n",
			func(t *testing.T, body string) {
				events := strings.Split(strings.TrimSuffix(body, "\n\n"), "\n\n")
				if len(events) != 2 || !strings.Contains(events[1], `"error"`) {
					t.Errorf("events %q", events)
				}
			}},
		{"openai", "/api/chat", `{"model":"m","messages":[{"role":"user","content":"hi"}]}`,
			"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"}}]}\n\n",
			func(t *testing.T, body string) {
				lines := strings.Split(strings.TrimSuffix(body, "\n"), "\n")
				if len(lines) != 2 || !strings.HasPrefix(lines[1], `{"error":`) {
					t.Errorf("lines %q", lines)
				}
			}},
	} {
		t.Run(tc.typ+tc.path, func(t *testing.T) {
			be := newBackend(t, tc.typ)
			be.setOverride(func(w http.ResponseWriter, r *http.Request, _ []byte) bool {
				if tc.typ == "openai" {
					w.Header().Set("Content-Type", "text/event-stream")
				} else {
					w.Header().Set("Content-Type", "application/x-ndjson")
				}
				w.WriteHeader(http.StatusOK)
				io.WriteString(w, tc.events)
				w.(http.Flusher).Flush()
				conn, _, err := http.NewResponseController(w).Hijack()
				if err == nil {
					conn.Close() // the backend dies mid-stream
				}
				return true
			})
			cfg := openaiCfg(be)
			if tc.typ == "ollama" {
				cfg = ollamaCfg(be)
			}
			fe := newFrontend(t, []config.Backend{cfg})
			code, _, body := post(t, fe.URL+tc.path, tc.body)
			if code != 200 {
				t.Fatalf("status %d", code)
			}
			tc.check(t, string(body))
		})
	}
}

type errCase struct {
	name   string
	path   string
	body   string
	status int
}

// Errors come in the route's own shape, with the right status.
func TestErrorStatuses(t *testing.T) {
	be := newBackend(t, "openai")
	be.setOverride(func(w http.ResponseWriter, r *http.Request, body []byte) bool {
		var req struct{ Model string }
		json.Unmarshal(body, &req)
		switch req.Model {
		case "gpt-ratelimited":
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusTooManyRequests)
			io.WriteString(w, `{"error":{"message":"Rate limit reached for gpt-4o","type":"requests","code":"rate_limit_exceeded"}}`)
			return true
		case "gpt-broken":
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusInternalServerError)
			io.WriteString(w, `{"error":{"message":"The server had an error while processing your request","type":"server_error"}}`)
			return true
		case "gpt-redirect":
			// Somewhere that would answer: dso must not follow it.
			http.Redirect(w, r, "/v1/chat/completions?followed=1", http.StatusTemporaryRedirect)
			return true
		case "slow-1":
			select {
			case <-r.Context().Done():
			case <-time.After(waitLimit):
			}
			return true
		}
		return false
	})
	good := openaiCfg(be)
	good.Models, good.Retries = []string{"gpt-*"}, -1
	slow := openaiCfg(be)
	slow.Name, slow.Models, slow.Timeout, slow.Retries = "slow", []string{"slow-*"}, 50*time.Millisecond, -1
	down := config.Backend{Name: "down", Type: config.TypeOllama, URL: closedURL(t), Models: []string{"down-*"}, Retries: -1}
	fe := newFrontend(t, []config.Backend{good, slow, down}, func(o *proxy.Options, _ []config.Backend) { o.MaxBodyBytes = 4096 })

	// slow-* models go to the backend with the short timeout.
	big := `{"model":"gpt-4o","messages":[{"role":"user","content":"` + strings.Repeat("x", 5000) + `"}]}`
	msgs := `"messages":[{"role":"user","content":"hi"}]`
	for _, sf := range []struct{ name, path string }{{"openai", "/v1/chat/completions"}, {"ollama", "/api/chat"}} {
		cases := []errCase{
			{"malformed JSON", sf.path, `{"model":"gpt-4o",`, 400},
			{"not an object", sf.path, `[1,2]`, 400},
			{"messages missing", sf.path, `{"model":"gpt-4o"}`, 400},
			{"messages not a list", sf.path, `{"model":"gpt-4o","messages":"hi"}`, 400},
			{"message not an object", sf.path, `{"model":"gpt-4o","messages":[1]}`, 400},
			{"message without role", sf.path, `{"model":"gpt-4o","messages":[{"content":"x"}]}`, 400},
			{"model missing", sf.path, `{` + msgs + `}`, 400},
			{"unknown model", sf.path, `{"model":"nobody-serves-this",` + msgs + `}`, 404},
			{"body too large", sf.path, big, 413},
			{"backend unreachable", sf.path, `{"model":"down-1",` + msgs + `}`, 502},
			{"backend timeout", sf.path, `{"model":"slow-1",` + msgs + `}`, 504},
			{"backend redirect", sf.path, `{"model":"gpt-redirect",` + msgs + `}`, 502},
			{"backend 429 relayed", sf.path, `{"model":"gpt-ratelimited",` + msgs + `}`, 429},
			{"backend 500 relayed", sf.path, `{"model":"gpt-broken",` + msgs + `}`, 500},
		}
		for _, c := range cases {
			t.Run(sf.name+"/"+c.name, func(t *testing.T) {
				code, hdr, body := post(t, fe.URL+c.path, c.body)
				if code != c.status {
					t.Fatalf("status %d; want %d (%s)", code, c.status, body)
				}
				if ct := hdr.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
					t.Errorf("content type %q", ct)
				}
				msg := errorMessage(t, sf.name, body)
				if msg == "" {
					t.Errorf("no error message in %s", body)
				}
				if c.name == "backend redirect" && !strings.Contains(msg, "redirect") {
					t.Errorf("a redirect reads %q; want it named", msg)
				}
				if strings.Contains(c.name, "relayed") && !strings.Contains(msg, "Rate limit reached") && !strings.Contains(msg, "server had an error") {
					t.Errorf("backend message not relayed: %q", msg)
				}
			})
		}
	}
	// Same-format backend errors are relayed byte for byte.
	_, _, body := post(t, fe.URL+"/v1/chat/completions", `{"model":"gpt-ratelimited",`+msgs+`}`)
	if want := `{"error":{"message":"Rate limit reached for gpt-4o","type":"requests","code":"rate_limit_exceeded"}}`; string(body) != want {
		t.Errorf("relayed %q; want %q", body, want)
	}
}

// errorMessage checks the surface's error shape and returns its message.
func errorMessage(t *testing.T, surface string, body []byte) string {
	t.Helper()
	if surface == "ollama" {
		var e struct {
			Error *string `json:"error"`
		}
		if err := json.Unmarshal(body, &e); err != nil || e.Error == nil {
			t.Fatalf("not an Ollama error: %s", body)
		}
		return *e.Error
	}
	var e struct {
		Error *struct {
			Message string `json:"message"`
			Type    string `json:"type"`
		} `json:"error"`
	}
	if err := json.Unmarshal(body, &e); err != nil || e.Error == nil || e.Error.Type == "" {
		t.Fatalf("not an OpenAI error: %s", body)
	}
	return e.Error.Message
}

func TestAuth(t *testing.T) {
	be := newBackend(t, "openai")
	withKeys := func(o *proxy.Options, _ []config.Backend) { o.APIKeys = []config.Secret{"k1", "client-secret"} }
	fe := newFrontend(t, []config.Backend{openaiCfg(be)}, withKeys)
	body := `{"model":"m","messages":[{"role":"user","content":"hi"}]}`
	for _, tc := range []struct {
		path, key string
		want      int
	}{
		{"/v1/chat/completions", "", 401},
		{"/v1/chat/completions", "Bearer wrong", 401},
		{"/api/chat", "Bearer wrong", 401},
		{"/v1/chat/completions", "Bearer client-secret", 200},
	} {
		code, _, b := post(t, fe.URL+tc.path, body, "Authorization", tc.key)
		if code != tc.want {
			t.Errorf("%s with %q: %d; want %d", tc.path, tc.key, code, tc.want)
		}
		if code == 401 {
			errorMessage(t, map[bool]string{true: "ollama", false: "openai"}[strings.HasPrefix(tc.path, "/api/")], b)
		}
	}
	if got := be.last(t).Header.Get("Authorization"); got != "" {
		t.Errorf("dso's client key reached the backend: %q", got)
	}
	if resp, err := http.Get(fe.URL + "/healthz"); err != nil || resp.StatusCode != 200 {
		t.Errorf("healthz needs no key: %v %v", resp, err)
	}

	// A backend key replaces the client's Authorization; with neither, the
	// client's passes through.
	keyed := openaiCfg(be)
	keyed.APIKey = "backend-key"
	fe = newFrontend(t, []config.Backend{keyed})
	post(t, fe.URL+"/v1/chat/completions", body, "Authorization", "Bearer client-token")
	if got := be.last(t).Header.Get("Authorization"); got != "Bearer backend-key" {
		t.Errorf("backend got Authorization %q", got)
	}
	fe = newFrontend(t, []config.Backend{openaiCfg(be)})
	post(t, fe.URL+"/v1/chat/completions", body, "Authorization", "Bearer client-token")
	if got := be.last(t).Header.Get("Authorization"); got != "Bearer client-token" {
		t.Errorf("backend got Authorization %q", got)
	}
}

func TestOperationalEndpoints(t *testing.T) {
	be := newBackend(t, "ollama")
	fe := newFrontend(t, []config.Backend{ollamaCfg(be)})
	get := func(path string) (int, string) {
		resp, err := http.Get(fe.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := get("/healthz"); code != 200 {
		t.Errorf("healthz %d", code)
	}
	if code, body := get("/readyz"); code != 200 || !strings.Contains(body, `"ollamaa":"ok"`) {
		t.Errorf("readyz %d %s", code, body)
	}
	post(t, fe.URL+"/api/chat", `{"model":"m","messages":[{"role":"user","content":"hi"}]}`)
	code, body := get("/metrics")
	if code != 200 {
		t.Fatalf("metrics %d", code)
	}
	for _, want := range []string{
		`dso_proxy_requests_total{backend="ollamaa",code="200",route="/api/chat"} 1`,
		`dso_proxy_first_byte_seconds_count{backend="ollamaa",route="/api/chat"} 1`,
		`dso_upstream_first_byte_seconds_count{backend="ollamaa"} 1`,
		`dso_proxy_request_duration_seconds_bucket`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %s", want)
		}
	}

	down := newFrontend(t, []config.Backend{{Type: config.TypeOllama, URL: closedURL(t)}})
	resp, err := http.Get(down.URL + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("readyz with a dead backend: %d", resp.StatusCode)
	}
}
