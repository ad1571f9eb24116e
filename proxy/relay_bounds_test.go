package proxy_test

import (
	"bufio"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/dso-proxy/dso/config"
)

// A whole answer that the backend breaks off (Content-Length 600, 100
// bytes, then the connection drops) is a 502 in the route's shape, counted
// as 502, not a response cut short.
func TestBodyCutShortIs502(t *testing.T) {
	for _, tc := range []struct{ typ, path, body string }{
		{"openai", "/v1/chat/completions", `{"model":"m","messages":[{"role":"user","content":"hi"}]}`},
		{"ollama", "/api/chat", `{"model":"m","stream":false,"messages":[{"role":"user","content":"hi"}]}`},
	} {
		t.Run(tc.typ, func(t *testing.T) {
			be := newBackend(t, tc.typ)
			be.setOverride(func(w http.ResponseWriter, r *http.Request, body []byte) bool {
				w.Header().Set("Content-Type", "application/json")
				w.Header().Set("Content-Length", "600")
				w.WriteHeader(200)
				io.WriteString(w, `{"id":"x","choices":[`+strings.Repeat(" ", 80))
				w.(http.Flusher).Flush()
				conn, _, err := http.NewResponseController(w).Hijack()
				if err == nil {
					conn.Close()
				}
				return true
			})
			cfg := openaiCfg(be)
			if tc.typ == "ollama" {
				cfg = ollamaCfg(be)
			}
			cfg.Retries = -1
			fe := newFrontend(t, []config.Backend{cfg})
			code, _, body := post(t, fe.URL+tc.path, tc.body)
			if code != http.StatusBadGateway || !strings.Contains(string(body), "broke off") {
				t.Errorf("%d %s; want 502 saying the backend broke off", code, body)
			}
			_, _, mb := send(t, http.MethodGet, fe.URL+"/metrics", "")
			if !strings.Contains(string(mb), `code="502"`) {
				t.Errorf("the request was not counted as 502:\n%s", grep(string(mb), "dso_proxy_requests_total"))
			}
		})
	}
}

// A stream with no event boundary is relayed in bounded pieces as it
// arrives, never held whole until the backend closes.
func TestStreamWithoutBoundariesFlows(t *testing.T) {
	be := newBackend(t, "openai")
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	be.setOverride(func(w http.ResponseWriter, r *http.Request, body []byte) bool {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(200)
		chunk := "data: " + strings.Repeat("x", 64<<10) // never a blank line
		for range 160 {                                 // 10 MiB, more than dso holds for an event
			if _, err := io.WriteString(w, chunk); err != nil {
				return true
			}
			w.(http.Flusher).Flush()
		}
		select { // the stream stays open until the client has read
		case <-release:
		case <-r.Context().Done():
		}
		return true
	})
	fe := newFrontend(t, []config.Backend{openaiCfg(be)})
	resp, err := http.Post(fe.URL+"/v1/chat/completions", "application/json",
		strings.NewReader(`{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	// The backend has not closed: these bytes came while it streams.
	n, err := io.CopyN(io.Discard, bufio.NewReader(resp.Body), 9<<20)
	if err != nil || n != 9<<20 {
		t.Fatalf("read %d bytes of an open stream: %v", n, err)
	}
}
