package proxy_test

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dso-proxy/dso/config"
	"github.com/dso-proxy/dso/providers"
	"github.com/dso-proxy/dso/proxy"
)

// recorded is one request a fake backend received.
type recorded struct {
	Method string
	Path   string
	Header http.Header
	Body   []byte
}

// backend is a fake LLM server that replays recorded payloads from
// testdata/ in the exact wire format, flushing between events, and records
// what it receives. Tests may install override to change its behaviour.
type backend struct {
	*httptest.Server
	typ string

	mu       sync.Mutex
	reqs     []recorded
	override func(w http.ResponseWriter, r *http.Request, body []byte) bool
	pulled   map[string]bool // models /api/pull fetched: /api/show knows them
	blobs    map[string]bool // digests /api/blobs received
}

func golden(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func newBackend(t testing.TB, typ string) *backend {
	b := &backend{typ: typ}
	b.Server = httptest.NewServer(http.HandlerFunc(b.serve(t)))
	t.Cleanup(b.Close)
	return b
}

func (b *backend) requests() []recorded {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]recorded(nil), b.reqs...)
}

func (b *backend) last(t testing.TB) recorded {
	t.Helper()
	rs := b.requests()
	if len(rs) == 0 {
		t.Fatal("backend received no request")
	}
	return rs[len(rs)-1]
}

func (b *backend) setOverride(f func(w http.ResponseWriter, r *http.Request, body []byte) bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.override = f
}

func (b *backend) serve(t testing.TB) func(w http.ResponseWriter, r *http.Request) {
	return func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		b.mu.Lock()
		b.reqs = append(b.reqs, recorded{Method: r.Method, Path: r.URL.Path, Header: r.Header.Clone(), Body: body})
		override := b.override
		b.mu.Unlock()
		if override != nil && override(w, r, body) {
			return
		}
		var req struct {
			Stream *bool           `json:"stream"`
			Tools  json.RawMessage `json:"tools"`
		}
		_ = json.Unmarshal(body, &req)
		tools := len(req.Tools) > 0
		if b.typ == "ollama" && b.serveOllamaModels(t, w, r, body) {
			return
		}
		switch b.typ + " " + r.Method + " " + r.URL.Path {
		case "openai POST /v1/chat/completions":
			stream := req.Stream != nil && *req.Stream
			switch {
			case stream && tools:
				replay(w, "text/event-stream", golden(t, "openai/chat_tools_stream.sse"), "\n\n")
			case stream:
				replay(w, "text/event-stream", golden(t, "openai/chat_stream.sse"), "\n\n")
			case tools:
				writeBody(w, golden(t, "openai/chat_tools.json"))
			default:
				writeBody(w, golden(t, "openai/chat.json"))
			}
		case "openai GET /v1/models":
			writeBody(w, golden(t, "openai/models.json"))
		case "openai POST /v1/embeddings":
			writeBody(w, golden(t, "openai/embeddings.json"))
		case "openai POST /v1/responses":
			writeBody(w, golden(t, "openai/responses.json"))
		case "openai GET /v1/responses/resp_67ccd2bed1ec8190b14f964abc0542670bb6a6b452d3795b":
			writeBody(w, golden(t, "openai/responses.json"))
		case "openai POST /v1/completions":
			writeBody(w, golden(t, "openai/completions.json"))
		case "anthropic POST /v1/messages":
			stream := req.Stream != nil && *req.Stream
			switch {
			case stream && tools:
				replay(w, "text/event-stream; charset=utf-8", golden(t, "anthropic/message_tools_stream.sse"), "\n\n")
			case stream:
				replay(w, "text/event-stream; charset=utf-8", golden(t, "anthropic/message_stream.sse"), "\n\n")
			case tools:
				writeBody(w, golden(t, "anthropic/message_tools.json"))
			default:
				writeBody(w, golden(t, "anthropic/message.json"))
			}
		case "anthropic POST /v1/messages/count_tokens":
			writeBody(w, []byte(`{"input_tokens":21}`))
		case "anthropic GET /v1/models":
			writeBody(w, []byte(`{"data":[{"type":"model","id":"claude-sonnet-4-5-20250929","display_name":"Claude Sonnet 4.5","created_at":"2025-09-29T00:00:00Z"}],"has_more":false}`))
		case "ollama POST /api/chat":
			stream := req.Stream == nil || *req.Stream
			switch {
			case tools:
				writeBody(w, golden(t, "ollama/chat_tools.json"))
			case stream:
				replay(w, "application/x-ndjson", golden(t, "ollama/chat_stream.ndjson"), "\n")
			default:
				writeBody(w, golden(t, "ollama/chat.json"))
			}
		case "ollama POST /api/generate":
			var gen struct {
				Prompt    string          `json:"prompt"`
				KeepAlive json.RawMessage `json:"keep_alive"`
			}
			_ = json.Unmarshal(body, &gen)
			switch {
			case gen.Prompt == "" && slices.Contains([]string{"0", `"0"`, `"0s"`, `"0m"`}, string(gen.KeepAlive)):
				writeBody(w, golden(t, "ollama/generate_unload.json"))
			case gen.Prompt == "":
				writeBody(w, golden(t, "ollama/generate_load.json"))
			default:
				replay(w, "application/x-ndjson", golden(t, "ollama/generate_stream.ndjson"), "\n")
			}
		case "ollama POST /api/embed":
			writeBody(w, golden(t, "ollama/embed.json"))
		case "ollama GET /api/tags":
			writeBody(w, golden(t, "ollama/tags.json"))
		case "ollama GET /api/version":
			writeBody(w, []byte(`{"version":"0.17.4"}`))
		default:
			http.Error(w, "fake backend: no route "+r.Method+" "+r.URL.Path, http.StatusNotFound)
		}
	}
}

// serveOllamaModels is the fake Ollama's model API: show (for llama3.2 and
// whatever was pulled), ps, pull, copy, delete, create, push, blobs and the
// legacy embeddings, replaying recorded payloads.
func (b *backend) serveOllamaModels(t testing.TB, w http.ResponseWriter, r *http.Request, body []byte) bool {
	var req struct{ Model, Name string }
	_ = json.Unmarshal(body, &req)
	model := cmp.Or(req.Model, req.Name)
	if digest, ok := strings.CutPrefix(r.URL.Path, "/api/blobs/"); ok {
		b.mu.Lock()
		defer b.mu.Unlock()
		sum := sha256.Sum256(body)
		switch {
		case r.Method == http.MethodHead && b.blobs[digest]:
			w.WriteHeader(http.StatusOK)
		case r.Method == http.MethodHead:
			writeStatus(w, http.StatusNotFound, fmt.Sprintf(`{"error":"blob %q not found"}`, digest))
		case digest != "sha256:"+hex.EncodeToString(sum[:]):
			writeStatus(w, http.StatusBadRequest, `{"error":"digest mismatch"}`)
		default:
			if b.blobs == nil {
				b.blobs = map[string]bool{}
			}
			b.blobs[digest] = true
			w.WriteHeader(http.StatusCreated)
		}
		return true
	}
	switch r.Method + " " + r.URL.Path {
	case "POST /api/show":
		b.mu.Lock()
		known := model == "llama3.2" || model == "llama3.2:latest" || b.pulled[model]
		b.mu.Unlock()
		if !known {
			writeStatus(w, http.StatusNotFound, fmt.Sprintf(`{"error":"model '%s' not found"}`, model))
			return true
		}
		writeBody(w, golden(t, "ollama/show.json"))
	case "GET /api/ps":
		writeBody(w, golden(t, "ollama/ps.json"))
	case "POST /api/pull":
		b.mu.Lock()
		if b.pulled == nil {
			b.pulled = map[string]bool{}
		}
		b.pulled[model] = true
		b.mu.Unlock()
		replay(w, "application/x-ndjson", golden(t, "ollama/pull_stream.ndjson"), "\n")
	case "POST /api/create":
		replay(w, "application/x-ndjson", golden(t, "ollama/create_stream.ndjson"), "\n")
	case "POST /api/push":
		replay(w, "application/x-ndjson", golden(t, "ollama/push_stream.ndjson"), "\n")
	case "POST /api/copy", "DELETE /api/delete":
		w.WriteHeader(http.StatusOK) // Ollama answers both with no body
	case "POST /api/embeddings":
		writeBody(w, golden(t, "ollama/embeddings.json"))
	default:
		return false
	}
	return true
}

// writeStatus writes an Ollama-shaped answer with status code.
func writeStatus(w http.ResponseWriter, code int, body string) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(code)
	_, _ = io.WriteString(w, body)
}

func writeBody(w http.ResponseWriter, b []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Backend-Header", "kept")
	_, _ = w.Write(b)
}

// replay writes events one at a time, flushing after each, as a real
// streaming server does.
func replay(w http.ResponseWriter, contentType string, payload []byte, sep string) {
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("X-Backend-Header", "kept")
	w.WriteHeader(http.StatusOK)
	for _, ev := range splitKeep(payload, sep) {
		_, _ = w.Write(ev)
		w.(http.Flusher).Flush()
	}
}

// splitKeep splits b after each sep, keeping sep on each piece.
func splitKeep(b []byte, sep string) [][]byte {
	var out [][]byte
	for len(b) > 0 {
		i := bytes.Index(b, []byte(sep))
		if i < 0 {
			out = append(out, b)
			break
		}
		out = append(out, b[:i+len(sep)])
		b = b[i+len(sep):]
	}
	return out
}

// frontend is dso under test, in front of the given backends.
type frontend struct {
	*httptest.Server
	proxy *proxy.Server
}

type frontendOpt func(*proxy.Options, []config.Backend)

func newFrontend(t testing.TB, cfgs []config.Backend, opts ...frontendOpt) *frontend {
	t.Helper()
	return startFrontend(t, cfgs, nil, opts...)
}

// startFrontend is newFrontend whose listener is wrapped by listen, if
// not nil, as dso serve wraps its own (Server.Listener).
func startFrontend(t testing.TB, cfgs []config.Backend, listen func(*proxy.Server, net.Listener) net.Listener, opts ...frontendOpt) *frontend {
	t.Helper()
	for i := range cfgs {
		if cfgs[i].Name == "" {
			cfgs[i].Name = cfgs[i].Type + string(rune('a'+i))
		}
		if cfgs[i].Timeout == 0 {
			cfgs[i].Timeout = 10 * time.Second
		}
		if cfgs[i].RetryBackoff == 0 {
			cfgs[i].RetryBackoff = time.Millisecond
		}
	}
	o := proxy.Options{OpenLibrary: true} // as dso serve on loopback
	for _, f := range opts {
		f(&o, cfgs)
	}
	router, err := providers.NewRouter(cfgs, nil)
	if err != nil {
		t.Fatal(err)
	}
	o.Router = router
	p := proxy.New(o)
	t.Cleanup(func() { p.Close() }) // runs after srv.Close: drains queued traces
	srv := httptest.NewUnstartedServer(p)
	if listen != nil {
		srv.Listener = listen(p, srv.Listener)
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return &frontend{Server: srv, proxy: p}
}

func openaiCfg(b *backend) config.Backend {
	return config.Backend{Type: config.TypeOpenAI, URL: b.URL + "/v1"}
}

func ollamaCfg(b *backend) config.Backend {
	return config.Backend{Type: config.TypeOllama, URL: b.URL}
}

func anthropicCfg(b *backend) config.Backend {
	return config.Backend{Type: config.TypeAnthropic, URL: b.URL}
}

// cfgFor is the config of a fake backend of its type.
func cfgFor(b *backend) config.Backend {
	switch b.typ {
	case "ollama":
		return ollamaCfg(b)
	case "anthropic":
		return anthropicCfg(b)
	}
	return openaiCfg(b)
}

// post sends body to the frontend and returns status, headers and body.
func post(t testing.TB, url string, body string, hdr ...string) (int, http.Header, []byte) {
	t.Helper()
	return send(t, http.MethodPost, url, body, hdr...)
}

// send is post with any method; hdr are name, value pairs.
func send(t testing.TB, method, url string, body string, hdr ...string) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewBufferString(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, b
}

// newTestServer serves h on loopback; the test closes it itself.
func newTestServer(t testing.TB, h http.Handler) *httptest.Server {
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}
