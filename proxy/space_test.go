package proxy_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/dso-proxy/dso/config"
	"github.com/dso-proxy/dso/library"
	"github.com/dso-proxy/dso/providers"
	"github.com/dso-proxy/dso/proxy"
	"github.com/ollama/ollama/api"
)

// hashEmbeddings makes a fake backend's embedding endpoints serve a hashed
// lexical embedder of its own (dim, seed): a model whose space shares
// neither dimension nor coordinates with testEmbedder.
func hashEmbeddings(t testing.TB, be *backend, dim int, seed uint64) {
	h := providers.NewHashEmbedder(dim, seed)
	be.setOverride(func(w http.ResponseWriter, r *http.Request, body []byte) bool {
		if r.URL.Path != "/api/embed" && r.URL.Path != "/v1/embeddings" {
			return false
		}
		var req struct {
			Input []string `json:"input"`
		}
		json.Unmarshal(body, &req)
		vs, _ := h.Embed(r.Context(), req.Input)
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(api.EmbedResponse{Model: "hashy", Embeddings: vs})
		return true
	})
}

func embedCalls(be *backend) int {
	n := 0
	for _, r := range be.requests() {
		if r.Path == "/v1/embeddings" || r.Path == "/api/embed" {
			n++
		}
	}
	return n
}

// Experiences live in one space (backend A's embedding model); questions to
// backend B, whose own embedding model lives in another space (other
// dimensions, other coordinates), are embedded in the library's space and
// find their paraphrases. B's model is never asked, and codes of the two
// spaces are never compared. Unrelated questions get nothing.
func TestQuestionsEmbeddedInTheLibrarySpace(t *testing.T) {
	a := newBackend(t, "openai")
	textEmbeddings(t, a, nil)
	b := newBackend(t, "ollama")
	hashEmbeddings(t, b, 300, 42)
	acfg := openaiCfg(a)
	acfg.Name, acfg.Models, acfg.EmbeddingModel = "a", []string{"gpt-*"}, "embed-1"
	bcfg := ollamaCfg(b)
	bcfg.Name, bcfg.Models, bcfg.EmbeddingModel = "b", []string{"llama*"}, "hashy"
	lib := newLibrary(t, t.TempDir(), acfg)
	fe := newFrontend(t, []config.Backend{acfg, bcfg}, withRetrieval(lib, 2*time.Second))
	pairs, ids := seed(t, fe)
	bEmbeds := embedCalls(b)

	found := 0
	for i, p := range pairs {
		body := `{"model":"llama3","stream":false,"messages":[{"role":"user","content":` + jsonString(p.b) + `}]}`
		code, hdr, resp := post(t, fe.URL+"/api/chat", body)
		if code != 200 {
			t.Fatalf("chat: %d %s", code, resp)
		}
		if d := hdr.Get(proxy.HeaderDegraded); d != "" {
			t.Fatalf("degraded: %s", d)
		}
		if contains(strings.Split(hdr.Get(proxy.HeaderExperiences), ","), ids[i]) {
			found++
			if !strings.Contains(noteText(t, b.last(t).Body), p.a) {
				t.Errorf("%q: named but not in the system message backend b received", p.b)
			}
		}
	}
	if found < len(pairs)-1 {
		t.Errorf("the paraphrase was injected for %d of %d questions to the other backend", found, len(pairs))
	}
	if n := embedCalls(b) - bEmbeds; n != 0 {
		t.Errorf("backend b's embedding model was asked %d times; the library's space is a's", n)
	}

	for _, q := range []string{"How do I bake sourdough bread?", "What is the best way to learn the cello as an adult?", "Which bank account has the lowest fees?"} {
		body := `{"model":"llama3","stream":false,"messages":[{"role":"user","content":` + jsonString(q) + `}]}`
		_, hdr, _ := post(t, fe.URL+"/api/chat", body)
		if got := hdr.Get(proxy.HeaderExperiences); got != "" {
			t.Errorf("%q: injected %s (scores %s, gate %s); want nothing", q, got, hdr.Get(proxy.HeaderScores), hdr.Get(proxy.HeaderGate))
		}
		if hdr.Get(proxy.HeaderGate) == "" || hdr.Get(proxy.HeaderDegraded) != "" {
			t.Errorf("%q: gate %q, degraded %q", q, hdr.Get(proxy.HeaderGate), hdr.Get(proxy.HeaderDegraded))
		}
		if got := string(b.last(t).Body); got != body {
			t.Errorf("%q: the body changed with nothing injected: %s", q, got)
		}
	}
	// A per-request min score lets weaker matches through.
	body := `{"model":"llama3","stream":false,"messages":[{"role":"user","content":"How do I bake sourdough bread?"}]}`
	if _, hdr, _ := post(t, fe.URL+"/api/chat", body, proxy.HeaderMinScore, "-1"); hdr.Get(proxy.HeaderExperiences) == "" || hdr.Get(proxy.HeaderGate) != "-1.000" {
		t.Errorf("min score -1: experiences %q, gate %q", hdr.Get(proxy.HeaderExperiences), hdr.Get(proxy.HeaderGate))
	}
	for _, bad := range []string{"high", "2", "-3"} {
		if code, _, _ := post(t, fe.URL+"/api/chat", body, proxy.HeaderMinScore, bad); code != http.StatusBadRequest {
			t.Errorf("%s: %s answered %d; want 400", proxy.HeaderMinScore, bad, code)
		}
	}
}

func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// An embedding backend with no key of its own gets the client's
// credentials, as the chat does; a backend that needs them makes the space
// ready once a client brings them. dso's own client keys are never sent.
func TestEmbeddingWithTheClientsCredentials(t *testing.T) {
	be := newBackend(t, "openai")
	textEmbeddings(t, be, func(w http.ResponseWriter, r *http.Request) bool {
		if r.Header.Get("Authorization") != "Bearer sk-client" {
			http.Error(w, `{"error":{"message":"invalid api key"}}`, http.StatusUnauthorized)
			return true
		}
		return false
	})
	cfg := openaiCfg(be)
	cfg.Retries = -1
	emb, err := providers.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	lib := newUnpreparedLibrary(t, library.Space{Name: "model:embed-1", Embedder: emb, Model: "embed-1"})
	fe := newFrontend(t, []config.Backend{cfg}, withRetrieval(lib, 2*time.Second))

	// Without credentials the space cannot be prepared: said per request
	// and in /readyz.
	body := chatBody("A man is playing a flute.")
	if _, hdr, _ := post(t, fe.URL+"/v1/chat/completions", body); hdr.Get(proxy.HeaderDegraded) != "space_unavailable" {
		t.Errorf("no credentials: degraded %q; want space_unavailable", hdr.Get(proxy.HeaderDegraded))
	}
	// The first preparation runs in the background: /readyz can give its
	// reason once it has failed (before, it says only "not ready").
	waitUntil(t, "a preparation failed", func() bool {
		err := lib.Ready()
		return err != nil && strings.Contains(err.Error(), "401")
	})
	_, _, rb := send(t, http.MethodGet, fe.URL+"/readyz", "")
	var ready struct {
		Retrieval struct{ State, Reason, Space string } `json:"retrieval"`
	}
	json.Unmarshal(rb, &ready)
	if ready.Retrieval.State != "space_unavailable" || !strings.Contains(ready.Retrieval.Reason, "401") || ready.Retrieval.Space != "model:embed-1" {
		t.Errorf("/readyz retrieval: %+v", ready.Retrieval)
	}

	// A client's request brings its key: the space becomes ready with it.
	post(t, fe.URL+"/v1/chat/completions", body, "Authorization", "Bearer sk-client")
	waitUntil(t, "the space is ready", func() bool { return lib.Ready() == nil })
	code, _, resp := post(t, fe.URL+"/v1/experiences", `{"text":"A man is playing the flute.","domain":"music","confidence":0.9}`, "Authorization", "Bearer sk-client")
	if code != http.StatusCreated {
		t.Fatalf("add with the client's key: %d %s", code, resp)
	}
	_, hdr, _ := post(t, fe.URL+"/v1/chat/completions", body, "Authorization", "Bearer sk-client")
	if hdr.Get(proxy.HeaderExperiences) == "" {
		t.Errorf("nothing injected: degraded %q", hdr.Get(proxy.HeaderDegraded))
	}
	last := be.requests()
	for i := len(last) - 1; i >= 0; i-- {
		if last[i].Path == "/v1/embeddings" {
			if got := last[i].Header.Get("Authorization"); got != "Bearer sk-client" {
				t.Errorf("embedding call carried %q", got)
			}
			break
		}
	}

	// With dso's own client keys, the client's key is dso's: never sent.
	fe2 := newFrontend(t, []config.Backend{cfg}, withRetrieval(lib, 2*time.Second), func(o *proxy.Options, _ []config.Backend) {
		o.APIKeys = []config.Secret{"sk-client"}
	})
	_, hdr, _ = post(t, fe2.URL+"/v1/chat/completions", chatBody("A woman is slicing a tomato."), "Authorization", "Bearer sk-client")
	if hdr.Get(proxy.HeaderDegraded) != "embed_error" {
		t.Errorf("with dso's keys: degraded %q; want embed_error (the key is not forwarded)", hdr.Get(proxy.HeaderDegraded))
	}
}

// newUnpreparedLibrary is newSpaceLibrary without waiting for the space.
func newUnpreparedLibrary(t testing.TB, sp library.Space) *library.Library {
	t.Helper()
	st := openStore(t, t.TempDir())
	lib, err := library.New(t.Context(), library.Config{Store: st, Space: sp})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lib.Close() })
	return lib
}

// waitUntil polls cond every 10ms for up to 30s.
func waitUntil(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
