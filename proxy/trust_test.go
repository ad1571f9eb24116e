package proxy_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/dso-proxy/dso/config"
	"github.com/dso-proxy/dso/learn"
	"github.com/dso-proxy/dso/proxy"
	"github.com/dso-proxy/dso/store"
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
	}{
		{"openai chat", "openai", "/v1/chat/completions", `{"model":"m","messages":[{"role":"user","content":"hi"}]}`},
		{"openai chat stream", "openai", "/v1/chat/completions", `{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}`},
		{"ollama chat", "ollama", "/api/chat", `{"model":"m","stream":false,"messages":[{"role":"user","content":"hi"}]}`},
		{"ollama chat stream", "ollama", "/api/chat", `{"model":"m","messages":[{"role":"user","content":"hi"}]}`},
		{"ollama generate", "ollama", "/api/generate", `{"model":"m","stream":false,"prompt":"hi"}`},
		{"ollama generate stream", "ollama", "/api/generate", `{"model":"m","prompt":"hi"}`},
		{"openai embeddings", "openai", "/v1/embeddings", `{"model":"m","input":"hi"}`},
		{"ollama embed", "ollama", "/api/embed", `{"model":"m","input":"hi"}`},
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
					// Without a library dso keeps no traces, so it hands out
					// no trace id, and the backend's never passes.
					if trace := hdr.Values(proxy.HeaderTraceID); len(trace) != 0 {
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

// With no keys at all and the library not opened (dso serve beyond
// loopback), the experience API and feedback answer 403 with the fix, and
// header feedback is rejected; chat goes on. Keys, or the opt-out, open
// them as before.
func TestLibraryClosedWithoutKeys(t *testing.T) {
	be := newBackend(t, "openai")
	lib := newHashLibrary(t)
	withLibrary := func(open bool, apiKeys, adminKeys []config.Secret) frontendOpt {
		return func(o *proxy.Options, _ []config.Backend) {
			o.Retrieval = proxy.Retrieval{Library: lib, Budget: 2 * time.Second}
			o.Learner = learn.NewLearner(learn.FeedbackConfig{Library: lib})
			o.OpenLibrary, o.APIKeys, o.AdminKeys = open, apiKeys, adminKeys
		}
	}
	// The lessons each case reads and tries to delete, added where the
	// library is open.
	admin := newFrontend(t, []config.Backend{openaiCfg(be)}, withLibrary(true, nil, nil))

	const (
		chat       = `{"model":"m","messages":[{"role":"user","content":"How should I cache answers?"}]}`
		ollamaChat = `{"model":"m","stream":false,"messages":[{"role":"user","content":"How should I cache answers?"}]}`
		feedback   = `{"trace_id":"tr_unknown","grade":1}`
	)
	type step struct {
		method, path, body string
		key                string // sent as a bearer token when not empty
		want               int
		rejected           string // in X-DSO-Feedback-Rejected, when not empty
	}
	tests := []struct {
		name            string
		open            bool
		apiKeys, admins []config.Secret
		steps           []step
		kept            bool // the lesson survives the case's DELETE
	}{
		{
			name: "no keys, closed",
			steps: []step{
				{method: "POST", path: "/v1/experiences", body: `{"text":"Closed: never stored."}`, want: 403},
				{method: "GET", path: "/v1/experiences", want: 403},
				{method: "GET", path: "/v1/experiences/search?q=caching", want: 403},
				{method: "GET", path: "/v1/experiences/{id}", want: 403},
				{method: "DELETE", path: "/v1/experiences/{id}", want: 403},
				{method: "POST", path: "/v1/feedback", body: feedback, want: 403},
				{method: "POST", path: "/v1/chat/completions", body: chat, want: 200, rejected: config.EnvAdminKeys},
				{method: "POST", path: "/api/chat", body: ollamaChat, want: 200, rejected: config.EnvAdminKeys},
			},
			kept: true,
		},
		{
			name: "no keys, opened",
			open: true,
			steps: []step{
				{method: "POST", path: "/v1/experiences", body: `{"text":"Opened: stored."}`, want: 201},
				{method: "GET", path: "/v1/experiences", want: 200},
				{method: "GET", path: "/v1/experiences/search?q=caching", want: 200},
				{method: "GET", path: "/v1/experiences/{id}", want: 200},
				{method: "POST", path: "/v1/feedback", body: feedback, want: 400}, // reaches the learner
				{method: "POST", path: "/v1/chat/completions", body: chat, want: 200, rejected: "unknown trace"},
				{method: "DELETE", path: "/v1/experiences/{id}", want: 200},
			},
		},
		{
			name:   "admin keys",
			admins: []config.Secret{"admin-secret"},
			steps: []step{
				{method: "POST", path: "/v1/experiences", body: `{"text":"Admin: refused."}`, want: 401},
				{method: "GET", path: "/v1/experiences", key: "wrong", want: 401},
				{method: "POST", path: "/v1/experiences", body: `{"text":"Admin: stored."}`, key: "admin-secret", want: 201},
				{method: "GET", path: "/v1/experiences/search?q=caching", key: "admin-secret", want: 200},
				{method: "POST", path: "/v1/feedback", body: feedback, want: 400},
				{method: "POST", path: "/v1/chat/completions", body: chat, want: 200, rejected: "unknown trace"},
				{method: "DELETE", path: "/v1/experiences/{id}", key: "admin-secret", want: 200},
			},
		},
		{
			name:    "client keys only",
			apiKeys: []config.Secret{"client-secret"},
			steps: []step{
				{method: "POST", path: "/v1/experiences", body: `{"text":"Client: refused."}`, want: 401},
				{method: "POST", path: "/v1/experiences", body: `{"text":"Client: stored."}`, key: "client-secret", want: 201},
				{method: "POST", path: "/v1/feedback", body: feedback, key: "client-secret", want: 400},
				{method: "POST", path: "/v1/chat/completions", body: chat, want: 401},
				{method: "POST", path: "/v1/chat/completions", body: chat, key: "client-secret", want: 200, rejected: "unknown trace"},
				{method: "DELETE", path: "/v1/experiences/{id}", key: "client-secret", want: 200},
			},
		},
		{
			name:    "client and admin keys",
			apiKeys: []config.Secret{"client-secret"},
			admins:  []config.Secret{"admin-secret"},
			steps: []step{
				{method: "POST", path: "/v1/experiences", body: `{"text":"Both: refused."}`, key: "client-secret", want: 401},
				{method: "POST", path: "/v1/feedback", body: feedback, want: 401},
				{method: "POST", path: "/v1/feedback", body: feedback, key: "wrong", want: 401},
				{method: "POST", path: "/v1/feedback", body: feedback, key: "client-secret", want: 400},
				// The dashboard grades with the admin key.
				{method: "POST", path: "/v1/feedback", body: feedback, key: "admin-secret", want: 400},
				// An admin may do what a client may (and widen retrieval).
				{method: "POST", path: "/v1/chat/completions", body: chat, key: "admin-secret", want: 200, rejected: "unknown trace"},
				{method: "DELETE", path: "/v1/experiences/{id}", key: "admin-secret", want: 200},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := addExperience(t, admin, "Lesson for "+tt.name+": cache answers with care.", "")
			fe := newFrontend(t, []config.Backend{openaiCfg(be)}, withLibrary(tt.open, tt.apiKeys, tt.admins))
			for _, st := range tt.steps {
				hdr := []string{proxy.HeaderFeedback, "tr_unknown=1"}
				if st.key != "" {
					hdr = append(hdr, "Authorization", "Bearer "+st.key)
				}
				code, rh, body := send(t, st.method, fe.URL+strings.ReplaceAll(st.path, "{id}", id), st.body, hdr...)
				if code != st.want {
					t.Errorf("%s %s: %d %s; want %d", st.method, st.path, code, body, st.want)
					continue
				}
				if code == http.StatusForbidden {
					msg := errorMessage(t, "openai", body)
					for _, fix := range []string{config.EnvAdminKeys, config.EnvOpenLibrary} {
						if !strings.Contains(msg, fix) {
							t.Errorf("%s %s: 403 message %q does not say to set %s", st.method, st.path, msg, fix)
						}
					}
				}
				if st.rejected != "" {
					if got := rh.Get(proxy.HeaderFeedbackRejected); !strings.Contains(got, st.rejected) {
						t.Errorf("%s %s: %s %q; want it to mention %q", st.method, st.path, proxy.HeaderFeedbackRejected, got, st.rejected)
					}
				}
			}
			code, _, _ := send(t, "GET", admin.URL+"/v1/experiences/"+id, "")
			if kept := code == http.StatusOK; kept != tt.kept {
				t.Errorf("after the case the lesson exists: %v (%d); want %v", kept, code, tt.kept)
			}
		})
	}
}

// With a library, every chat gets dso's own trace id (one that is stored)
// in place of a backend's forged one; without one (above), none.
func TestTraceIDIsDSOsWithALibrary(t *testing.T) {
	for _, rt := range []struct{ typ, path, body string }{
		{"openai", "/v1/chat/completions", `{"model":"m","messages":[{"role":"user","content":"hi"}]}`},
		{"openai", "/v1/chat/completions", `{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}`},
		{"ollama", "/api/chat", `{"model":"m","messages":[{"role":"user","content":"hi"}]}`},
		{"ollama", "/api/generate", `{"model":"m","stream":false,"prompt":"hi"}`},
		{"openai", "/v1/responses", `{"model":"m","input":"hi"}`},
		{"ollama", "/v1/responses", `{"model":"m","input":[{"role":"user","content":"hi"}],"stream":true}`},
		{"openai", "/v1/completions", `{"model":"m","prompt":"hi"}`},
		{"ollama", "/v1/completions", `{"model":"m","prompt":"hi","stream":true}`},
		{"openai", "/v1/messages", `{"model":"m","max_tokens":9,"messages":[{"role":"user","content":"hi"}]}`},
		{"anthropic", "/v1/messages", `{"model":"m","max_tokens":9,"stream":true,"messages":[{"role":"user","content":"hi"}]}`},
	} {
		t.Run(rt.typ+rt.path, func(t *testing.T) {
			be := newBackend(t, rt.typ)
			forgeDSOHeaders(be, 0)
			cfg := backendCfg(rt.typ, be)
			lib := newHashLibrary(t)
			fe := newFrontend(t, []config.Backend{cfg}, withRetrieval(lib, 2*time.Second))
			code, hdr, body := post(t, fe.URL+rt.path, rt.body)
			if code != http.StatusOK {
				t.Fatalf("status %d: %s", code, body)
			}
			trace := hdr.Values(proxy.HeaderTraceID)
			if len(trace) != 1 || !strings.HasPrefix(trace[0], "tr_") {
				t.Fatalf("%s %q; want one of dso's", proxy.HeaderTraceID, trace)
			}
			// Nothing injected (the library is empty): no header, not an
			// empty one, and not the backend's forged one. Issue 26.
			if got := hdr.Values(proxy.HeaderExperiences); len(got) != 0 {
				t.Errorf("%s %q; want none", proxy.HeaderExperiences, got)
			}
			fe.proxy.Close() // stores the trace
			tr, err := lib.Store().(*store.SQLite).GetTrace(context.Background(), trace[0])
			if err != nil {
				t.Fatalf("trace %s: %v", trace[0], err)
			}
			// Every surface keeps the question and the answer's text.
			if tr.Query != "hi" || tr.Answer == "" {
				t.Errorf("trace query %q answer %q; want the question and the answer", tr.Query, tr.Answer)
			}
		})
	}
}
