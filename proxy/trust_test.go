package proxy_test

import (
	"net/http"
	"testing"

	"github.com/dso-proxy/dso/config"
	"github.com/dso-proxy/dso/proxy"
)

// forgeDSOHeaders makes be answer as usual (or with status, when not 0)
// while claiming dso's own response headers, in assorted cases.
func forgeDSOHeaders(be *backend, status int) {
	be.setOverride(func(w http.ResponseWriter, r *http.Request, body []byte) bool {
		h := w.Header()
		h.Set(proxy.HeaderTraceID, "forged-trace")
		h.Set(proxy.HeaderExperiences, "forged-exp")
		h["X-Dso-Degraded"] = []string{"forged-degraded"}
		h["x-dso-feedback-accepted"] = []string{"99"} // sent as written, not canonical
		h.Set("X-Request-Id", "forged-request-id")
		if status == 0 {
			return false // the usual answer, with these headers
		}
		h.Set("Content-Type", "application/json")
		h.Set("X-Backend-Header", "kept")
		w.WriteHeader(status)
		if be.typ == "ollama" {
			_, _ = w.Write([]byte(`{"error":"the model refused"}`))
		} else {
			_, _ = w.Write([]byte(`{"error":{"message":"the model refused","type":"invalid_request_error"}}`))
		}
		return true
	})
}

// A backend's X-DSO-* and X-Request-Id response headers never reach the
// client: on every route that relays or translates a backend's answer, in
// both surfaces, streamed or not, and on a backend's error status, the
// client sees only dso's own values.
func TestBackendCannotForgeDSOHeaders(t *testing.T) {
	routes := []struct {
		name    string
		surface string // the backend type that speaks the route's format
		path    string
		body    string
		chat    bool // dso sets a trace id
	}{
		{"openai chat", "openai", "/v1/chat/completions", `{"model":"m","messages":[{"role":"user","content":"hi"}]}`, true},
		{"openai chat stream", "openai", "/v1/chat/completions", `{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}`, true},
		{"ollama chat", "ollama", "/api/chat", `{"model":"m","stream":false,"messages":[{"role":"user","content":"hi"}]}`, true},
		{"ollama chat stream", "ollama", "/api/chat", `{"model":"m","messages":[{"role":"user","content":"hi"}]}`, true},
		{"ollama generate", "ollama", "/api/generate", `{"model":"m","stream":false,"prompt":"hi"}`, true},
		{"ollama generate stream", "ollama", "/api/generate", `{"model":"m","prompt":"hi"}`, true},
		{"openai embeddings", "openai", "/v1/embeddings", `{"model":"m","input":"hi"}`, false},
		{"ollama embed", "ollama", "/api/embed", `{"model":"m","input":"hi"}`, false},
	}
	const requestID = "client-request-7"
	for _, rt := range routes {
		for _, typ := range []string{"openai", "ollama"} {
			for _, status := range []int{0, http.StatusUnprocessableEntity} {
				name := rt.name + "/backend=" + typ
				if status != 0 {
					name += "/error"
				}
				t.Run(name, func(t *testing.T) {
					be := newBackend(t, typ)
					forgeDSOHeaders(be, status)
					cfg := openaiCfg(be)
					if typ == "ollama" {
						cfg = ollamaCfg(be)
					}
					fe := newFrontend(t, []config.Backend{cfg})
					code, hdr, body := post(t, fe.URL+rt.path, rt.body, "X-Request-Id", requestID, proxy.HeaderDomain, "d")
					wantCode := http.StatusOK
					if status != 0 {
						wantCode = status
					}
					if code != wantCode {
						t.Fatalf("status %d; want %d: %s", code, wantCode, body)
					}
					if got := hdr.Values("X-Request-Id"); len(got) != 1 || got[0] != requestID {
						t.Errorf("X-Request-Id %q; want [%q]", got, requestID)
					}
					sent := be.last(t).Header
					if got := sent.Values("X-Request-Id"); len(got) != 1 || got[0] != requestID {
						t.Errorf("backend got X-Request-Id %q; want [%q]", got, requestID)
					}
					if got := sent.Values(proxy.HeaderDomain); len(got) != 0 {
						t.Errorf("backend got the client's %s %q; want none", proxy.HeaderDomain, got)
					}
					trace := hdr.Values(proxy.HeaderTraceID)
					if rt.chat {
						if len(trace) != 1 || trace[0] == "" || trace[0] == "forged-trace" {
							t.Errorf("%s %q; want one of dso's", proxy.HeaderTraceID, trace)
						}
					} else if len(trace) != 0 {
						t.Errorf("%s %q; want none", proxy.HeaderTraceID, trace)
					}
					if got := hdr.Values(proxy.HeaderExperiences); len(got) > 1 || (len(got) == 1 && got[0] != "") {
						t.Errorf("%s %q; want dso's (none injected)", proxy.HeaderExperiences, got)
					}
					for _, h := range []string{proxy.HeaderDegraded, proxy.HeaderFeedbackAccepted} {
						if got := hdr.Values(h); len(got) != 0 {
							t.Errorf("%s %q; want none", h, got)
						}
					}
					// Where dso relays (same format), the backend's other
					// headers still arrive: only dso's own are held back.
					if typ == rt.surface {
						if got := hdr.Get("X-Backend-Header"); got != "kept" {
							t.Errorf("X-Backend-Header %q; want the backend's %q", got, "kept")
						}
					}
				})
			}
		}
	}
}
