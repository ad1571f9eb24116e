package main

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/dso-proxy/dso/config"
	"github.com/dso-proxy/dso/proxy"
)

func TestLibraryOpen(t *testing.T) {
	for _, tt := range []struct {
		addr string
		open bool // config.Config.OpenLibrary
		want bool
	}{
		{"127.0.0.1:8080", false, true},
		{"[::1]:8080", false, true},
		{"localhost:8080", false, true},
		{"0.0.0.0:8080", false, false},
		{"[::]:8080", false, false},
		{":8080", false, false},
		{"10.1.2.3:80", false, false},
		{"example.com:80", false, false},
		{"0.0.0.0:8080", true, true},
		{"10.1.2.3:80", true, true},
	} {
		cfg := config.Default()
		cfg.OpenLibrary = tt.open
		if got := libraryOpen(tt.addr, cfg); got != tt.want {
			t.Errorf("libraryOpen(%q, open_library=%v) = %v; want %v", tt.addr, tt.open, got, tt.want)
		}
	}
}

// open_library comes from the file, DSO_OPEN_LIBRARY over it.
func TestServeConfigOpenLibrary(t *testing.T) {
	file := writeFile(t, "dso.yaml", "listen: 0.0.0.0:8080\nopen_library: true\n")
	for _, tt := range []struct {
		name    string
		args    []string
		env     map[string]string
		want    bool
		wantErr string
	}{
		{name: "default", want: false},
		{name: "file", args: []string{"--config", file}, want: true},
		{name: "env", env: map[string]string{config.EnvOpenLibrary: "1"}, want: true},
		{name: "env over file", args: []string{"--config", file}, env: map[string]string{config.EnvOpenLibrary: "0"}, want: false},
		{name: "bad env", env: map[string]string{config.EnvOpenLibrary: "sure"}, wantErr: config.EnvOpenLibrary},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := loadServeConfig(tt.args, io.Discard, io.Discard, func(k string) string { return tt.env[k] })
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v; want one mentioning %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cfg.OpenLibrary != tt.want {
				t.Errorf("OpenLibrary = %v; want %v", cfg.OpenLibrary, tt.want)
			}
		})
	}
}

// syncBuffer is a log destination safe to read while serveOn writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String is what was logged so far.
func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// warnings returns the messages of the WARN lines logged so far.
func (s *syncBuffer) warnings(t *testing.T) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, l := range strings.Split(strings.TrimSpace(s.b.String()), "\n") {
		var rec struct{ Level, Msg string }
		if l == "" {
			continue
		}
		if err := json.Unmarshal([]byte(l), &rec); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		if rec.Level == "WARN" {
			out = append(out, rec.Msg)
		}
	}
	return out
}

// dso serve on every interface with no keys refuses the experience API and
// feedback, with the fix in the error and in a warning at start; chat
// works. Admin keys or the opt-out open them; loopback is open as before.
func TestServeLibraryClosedBeyondLoopback(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		if r.URL.Path != "/api/chat" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"model":"m","created_at":"2025-03-10T01:31:40Z","message":{"role":"assistant","content":"Paris."},"done_reason":"stop","done":true}`)
	}))
	defer backend.Close()

	type step struct {
		method, path, body, key string
		want                    int
	}
	const (
		experience = `{"text":"Cache answers with care."}`
		feedback   = `{"trace_id":"tr_unknown","grade":1}`
		chat       = `{"model":"m","stream":false,"messages":[{"role":"user","content":"Capital of France?"}]}`
	)
	tests := []struct {
		name   string
		listen string
		admin  []config.Secret
		open   bool
		steps  []step
		warns  []string // each in one warning logged at start
		quiet  bool     // no warning at all
	}{
		{
			name:   "every interface, no keys",
			listen: "0.0.0.0:0",
			steps: []step{
				{method: "POST", path: "/v1/experiences", body: experience, want: 403},
				{method: "GET", path: "/v1/experiences", want: 403},
				{method: "GET", path: "/v1/experiences/search?q=cache", want: 403},
				{method: "POST", path: "/v1/feedback", body: feedback, want: 403},
				{method: "POST", path: "/api/chat", body: chat, want: 200},
			},
			warns: []string{config.EnvAPIKeys, config.EnvAdminKeys},
		},
		{
			name:   "every interface, admin keys",
			listen: "0.0.0.0:0",
			admin:  []config.Secret{"admin-secret"},
			steps: []step{
				{method: "POST", path: "/v1/experiences", body: experience, want: 401},
				{method: "POST", path: "/v1/experiences", body: experience, key: "admin-secret", want: 201},
				{method: "POST", path: "/api/chat", body: chat, want: 200},
			},
			warns: []string{config.EnvAPIKeys},
		},
		{
			name:   "every interface, opened",
			listen: "0.0.0.0:0",
			open:   true,
			steps: []step{
				{method: "POST", path: "/v1/experiences", body: experience, want: 201},
				{method: "POST", path: "/v1/feedback", body: feedback, want: 400}, // reaches the learner: unknown trace
			},
			warns: []string{config.EnvAPIKeys, "open to anyone"},
		},
		{
			name:   "loopback, no keys",
			listen: "127.0.0.1:0",
			steps: []step{
				{method: "POST", path: "/v1/experiences", body: experience, want: 201},
				{method: "POST", path: "/v1/feedback", body: feedback, want: 400},
			},
			quiet: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", tt.listen)
			if err != nil {
				t.Fatalf("cannot listen on %s: %v", tt.listen, err)
			}
			_, port, _ := net.SplitHostPort(ln.Addr().String())
			base := "http://" + net.JoinHostPort("127.0.0.1", port)
			cfg := config.Default()
			cfg.Listen = tt.listen
			cfg.Data = t.TempDir()
			cfg.Retrieval.Embedder = "hash"
			cfg.AdminKeys = tt.admin
			cfg.OpenLibrary = tt.open
			cfg.ShutdownTimeout = wait
			cfg.SetBackends([]config.Backend{{Type: config.TypeOllama, URL: backend.URL}})
			if err := cfg.Validate(); err != nil {
				t.Fatal(err)
			}
			var logs syncBuffer
			stop := serveUntilStopped(t, ln, cfg, slog.New(slog.NewJSONHandler(&logs, nil)))
			client := &http.Client{Transport: &http.Transport{}, Timeout: wait}
			defer func() {
				client.CloseIdleConnections()
				stop()
			}()

			for _, st := range tt.steps {
				req, err := http.NewRequest(st.method, base+st.path, strings.NewReader(st.body))
				if err != nil {
					t.Fatal(err)
				}
				req.Header.Set(proxy.HeaderFeedback, "tr_unknown=1")
				if st.key != "" {
					req.Header.Set("Authorization", "Bearer "+st.key)
				}
				resp, err := client.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != st.want {
					t.Errorf("%s %s: %d %s; want %d", st.method, st.path, resp.StatusCode, body, st.want)
					continue
				}
				switch resp.StatusCode {
				case http.StatusForbidden:
					var e struct {
						Error *struct{ Message, Type string } `json:"error"`
					}
					if json.Unmarshal(body, &e) != nil || e.Error == nil || e.Error.Type == "" {
						t.Errorf("%s %s: 403 body %s is not an OpenAI error", st.method, st.path, body)
					} else if !strings.Contains(e.Error.Message, config.EnvAdminKeys) || !strings.Contains(e.Error.Message, config.EnvOpenLibrary) {
						t.Errorf("%s %s: 403 message %q does not say how to fix it", st.method, st.path, e.Error.Message)
					}
				case http.StatusOK:
					if st.path == "/api/chat" && len(tt.admin) == 0 && !tt.open {
						if got := resp.Header.Get(proxy.HeaderFeedbackRejected); !strings.Contains(got, config.EnvAdminKeys) {
							t.Errorf("header feedback: rejected %q; want the fix", got)
						}
					}
				}
			}

			// The warnings were logged before the first request was served.
			warns := logs.warnings(t)
			if tt.quiet && len(warns) > 0 {
				t.Errorf("warnings on loopback: %q", warns)
			}
			if len(warns) != len(tt.warns) {
				t.Errorf("warnings %q; want %d", warns, len(tt.warns))
			}
			for _, want := range tt.warns {
				found := false
				for _, w := range warns {
					found = found || strings.Contains(w, want)
				}
				if !found {
					t.Errorf("no warning mentions %q: %q", want, warns)
				}
			}
		})
	}
}
