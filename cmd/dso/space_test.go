package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dso-proxy/dso/config"
	"github.com/dso-proxy/dso/store"
)

// chatBackend is an OpenAI-compatible backend that answers every chat
// with one fixed completion and keeps the last chat body it received; it
// lists one model, "m".
type chatBackend struct {
	*httptest.Server
	mu   sync.Mutex
	last []byte
}

func newChatBackend(t *testing.T) *chatBackend {
	b := &chatBackend{}
	b.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if r.Method == http.MethodGet && r.URL.Path == "/v1/models" { // /readyz asks
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"object":"list","data":[{"id":"m","object":"model","created":1,"owned_by":"test"}]}`)
			return
		}
		if r.URL.Path != "/v1/chat/completions" {
			http.Error(w, `{"error":{"message":"not found"}}`, http.StatusNotFound)
			return
		}
		b.mu.Lock()
		b.last = body
		b.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"id":"c1","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}]}`)
	}))
	t.Cleanup(b.Close)
	return b
}

func (b *chatBackend) lastBody() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.last)
}

// startServe runs serveOn with cfg on a loopback port until the returned
// stop is called (or the test ends).
func startServe(t *testing.T, cfg config.Config) (base string, stop func()) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Listen = ln.Addr().String()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return "http://" + ln.Addr().String(), serveUntilStopped(t, ln, cfg, slog.New(slog.DiscardHandler))
}

// serveUntilStopped runs serveOn on ln until the returned stop is called
// (or the test ends), and checks that it stops cleanly.
func serveUntilStopped(t *testing.T, ln net.Listener, cfg config.Config, log *slog.Logger) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- serveOn(ctx, ln, cfg, log) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-served:
				if err != nil {
					t.Errorf("serveOn: %v", err)
				}
			case <-time.After(wait):
				t.Error("serve did not stop")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func postJSON(t *testing.T, url, body string) (int, http.Header, []byte) {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b
}

var codeLessons = []struct{ text, paraphrase string }{
	{"Close every file you open and check the error that Close returns.", "Should I check the error returned when I close a file?"},
	{"Pass a context with a deadline to every outgoing HTTP request.", "Do outgoing HTTP requests need a context with a deadline?"},
	{"Cap the size of a request body with http.MaxBytesReader.", "How do I cap the size of a request body?"},
	{"Run the race detector in continuous integration.", "Should continuous integration run the race detector?"},
	{"Compare API keys in constant time to avoid timing attacks.", "how to compare API keys without timing attacks"},
	{"Use table-driven tests to cover many cases in one function.", "What are table-driven tests good for?"},
}

// With no configuration at all, experiences need only text, domain and
// confidence, live in the built-in space, are injected for a paraphrase and
// not for an unrelated question; moving the library to another space
// re-embeds them there, and they are found again.
func TestServeZeroConfigLibrary(t *testing.T) {
	be := newChatBackend(t)
	cfg := config.Default()
	cfg.Data = t.TempDir()
	cfg.SetBackends([]config.Backend{{Type: config.TypeOpenAI, URL: be.URL + "/v1"}})
	base, stop := startServe(t, cfg)

	ids := map[string]string{}
	for _, l := range codeLessons {
		b, _ := json.Marshal(map[string]any{"text": l.text, "domain": "code", "confidence": 0.8})
		code, _, resp := postJSON(t, base+"/v1/experiences", string(b))
		var e struct{ ID, Space string }
		json.Unmarshal(resp, &e)
		if code != http.StatusCreated || e.Space != "hash:2048" {
			t.Fatalf("add %q: %d %s; want 201 in space hash:2048", l.text, code, resp)
		}
		ids[l.paraphrase] = e.ID
	}
	ask := func(base, q string) http.Header {
		t.Helper()
		b, _ := json.Marshal(map[string]any{"model": "m", "messages": []map[string]string{{"role": "user", "content": q}}})
		code, hdr, resp := postJSON(t, base+"/v1/chat/completions", string(b))
		if code != 200 {
			t.Fatalf("chat %q: %d %s", q, code, resp)
		}
		return hdr
	}
	injectedFor := func(base string) int {
		n := 0
		for _, l := range codeLessons {
			hdr := ask(base, l.paraphrase)
			if strings.Contains(hdr.Get("X-DSO-Experiences"), ids[l.paraphrase]) {
				n++
				if !strings.Contains(be.lastBody(), l.text) {
					t.Errorf("%q: named but not sent to the backend", l.paraphrase)
				}
			} else if d := hdr.Get("X-DSO-Degraded"); d != "" {
				t.Errorf("%q: degraded %s", l.paraphrase, d)
			}
		}
		return n
	}
	if n := injectedFor(base); n < len(codeLessons)-1 {
		t.Errorf("default space: the lesson was injected for %d of %d paraphrases", n, len(codeLessons))
	}
	for _, q := range []string{"How do I bake sourdough bread?", "What should I pack for a week of hiking in the Alps?"} {
		if got := ask(base, q).Get("X-DSO-Experiences"); got != "" {
			t.Errorf("%q: injected %s; want nothing", q, got)
		}
	}
	stop()

	// Another space on the same data: the stored texts are re-embedded.
	cfg.Retrieval.Embedder = "hash:512"
	base, _ = startServe(t, cfg)
	deadline := time.Now().Add(wait)
	for {
		resp, err := http.Get(base + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		var st struct {
			Retrieval struct {
				Space       string `json:"space"`
				State       string `json:"state"`
				Experiences int    `json:"experiences"`
				ToReembed   int    `json:"to_reembed"`
			} `json:"retrieval"`
		}
		json.NewDecoder(resp.Body).Decode(&st)
		resp.Body.Close()
		r := st.Retrieval
		if r.Space == "hash:512" && r.State == "ready" && r.ToReembed == 0 && r.Experiences == len(codeLessons) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("re-embedding did not finish: %+v", r)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := injectedFor(base); n < len(codeLessons)-1 {
		t.Errorf("after re-embedding: the lesson was injected for %d of %d paraphrases", n, len(codeLessons))
	}
	st, err := store.OpenDir(context.Background(), cfg.Data, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	err = st.EachExperience(context.Background(), func(e store.Experience) error {
		if e.Space != "hash:512" {
			t.Errorf("%q is still coded in %q", e.Text, e.Space)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// max_connections bounds the connections dso holds: past it, a new
// connection is not served until one closes.
func TestServeMaxConnections(t *testing.T) {
	be := newChatBackend(t)
	cfg := config.Default()
	cfg.Data = t.TempDir()
	cfg.MaxConnections = 1
	cfg.SetBackends([]config.Backend{{Type: config.TypeOpenAI, URL: be.URL + "/v1"}})
	base, _ := startServe(t, cfg)
	addr := strings.TrimPrefix(base, "http://")
	get := "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"

	first, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	io.WriteString(first, get)
	r1 := bufio.NewReader(first)
	if resp, err := http.ReadResponse(r1, nil); err != nil || resp.StatusCode != 200 {
		t.Fatalf("first connection: %v", err)
	}
	// The first connection stays open (keep-alive): the second waits.
	second, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	io.WriteString(second, get)
	second.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	r2 := bufio.NewReader(second)
	if _, err := http.ReadResponse(r2, nil); err == nil {
		t.Fatal("a second connection was served while the limit of 1 was held")
	}
	first.Close()
	second.SetReadDeadline(time.Now().Add(wait))
	if resp, err := http.ReadResponse(r2, nil); err != nil || resp.StatusCode != 200 {
		t.Fatalf("second connection after the first closed: %v", err)
	}
}
