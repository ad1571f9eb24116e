package proxy_test

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dso-proxy/dso/config"
	"github.com/dso-proxy/dso/inject"
	"github.com/dso-proxy/dso/library"
	"github.com/dso-proxy/dso/providers"
	"github.com/dso-proxy/dso/proxy"
	"github.com/dso-proxy/dso/store"
	"github.com/ollama/ollama/api"
)

// testEmbedder is the embedding model the fake backends serve: the hashed
// lexical embedder, which needs no data and ranks a close paraphrase above
// unrelated text. Tests of what real embeddings retrieve read GloVe and
// STS-B from the shared data (cmd/dso's eval tests), and skip without it.
var testEmbedder = providers.NewHashEmbedder(512, 3)

type textPair struct {
	a, b  string
	score float64
}

// paraphrasePairs reads testdata/paraphrases.csv: close paraphrases
// (score 4.75 to 5) and unrelated sentences (score below 2), in STS-B's
// columns (sentence, sentence, similarity 0 to 5).
func paraphrasePairs(t testing.TB) []textPair {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", "paraphrases.csv"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	var out []textPair
	for _, row := range rows {
		s, err := strconv.ParseFloat(row[2], 64)
		if err != nil {
			t.Fatalf("paraphrases.csv: %q: %v", row, err)
		}
		out = append(out, textPair{row[0], row[1], s})
	}
	return out
}

// textEmbeddings makes a fake backend serve testEmbedder's vectors as the
// embedding model "embed-1" on its embeddings endpoints; fail, when set,
// replaces it.
func textEmbeddings(t testing.TB, be *backend, fail func(w http.ResponseWriter, r *http.Request) bool) {
	be.setOverride(func(w http.ResponseWriter, r *http.Request, body []byte) bool {
		if r.URL.Path != "/v1/embeddings" && r.URL.Path != "/api/embed" {
			return false
		}
		if fail != nil && fail(w, r) {
			return true
		}
		var req struct {
			Input json.RawMessage `json:"input"`
		}
		json.Unmarshal(body, &req)
		var texts []string
		var one string
		if json.Unmarshal(req.Input, &one) == nil {
			texts = []string{one}
		} else if err := json.Unmarshal(req.Input, &texts); err != nil {
			http.Error(w, `{"error":"bad input"}`, 400)
			return true
		}
		vs, _ := testEmbedder.Embed(r.Context(), texts)
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Path == "/api/embed" {
			json.NewEncoder(w).Encode(api.EmbedResponse{Model: "embed-1", Embeddings: vs})
			return true
		}
		type item struct {
			Object    string    `json:"object"`
			Index     int       `json:"index"`
			Embedding []float32 `json:"embedding"`
		}
		data := make([]item, len(vs))
		for i, v := range vs {
			data[i] = item{"embedding", i, v}
		}
		json.NewEncoder(w).Encode(map[string]any{"object": "list", "data": data, "model": "embed-1"})
		return true
	})
}

// newLibrary opens a store in dir and a library over it whose space is
// the embedding model "embed-1" of the fake backend be speaks for.
func newLibrary(t testing.TB, dir string, be config.Backend) *library.Library {
	t.Helper()
	emb, err := providers.New(be, nil)
	if err != nil {
		t.Fatal(err)
	}
	return newSpaceLibrary(t, dir, library.Space{Name: "model:embed-1", Embedder: emb, Model: "embed-1"})
}

// openStore opens the store in dir, closed when the test ends.
func openStore(t testing.TB, dir string) *store.SQLite {
	t.Helper()
	st, err := store.OpenDir(context.Background(), dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// newHashLibrary is a library in a fresh directory whose space is the
// 256-dimension hash embedder: cheap embeddings for tests that are not
// about meaning.
func newHashLibrary(tb testing.TB) *library.Library {
	tb.Helper()
	hash := providers.NewHashEmbedder(256, 1)
	return newSpaceLibrary(tb, tb.TempDir(), library.Space{Name: "hash:256", Embedder: library.EmbedFunc(hash.Embed)})
}

// newSpaceLibrary opens a store in dir and a library in space sp.
func newSpaceLibrary(t testing.TB, dir string, sp library.Space) *library.Library {
	t.Helper()
	st := openStore(t, dir)
	lib, err := library.New(context.Background(), library.Config{Store: st, Space: sp})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lib.Close() })
	if err := lib.Prepare(context.Background()); err != nil {
		t.Fatal(err)
	}
	return lib
}

func withRetrieval(lib *library.Library, budget time.Duration) frontendOpt {
	return func(o *proxy.Options, cfgs []config.Backend) {
		o.Retrieval = proxy.Retrieval{Library: lib, Budget: budget}
	}
}

// addExperience stores an experience through the API and returns its id.
func addExperience(t testing.TB, fe *frontend, text, domain string) string {
	t.Helper()
	b, _ := json.Marshal(map[string]any{"text": text, "domain": domain, "confidence": 0.8})
	code, _, body := post(t, fe.URL+"/v1/experiences", string(b))
	if code != http.StatusCreated && code != http.StatusOK {
		t.Fatalf("add experience: %d %s", code, body)
	}
	var e struct{ ID string }
	json.Unmarshal(body, &e)
	return e.ID
}

// noteText returns the injected notes the backend received (from the
// preamble to the closing marker), wherever they were placed: in a
// message's content (a string or text parts), in system or in prompt.
func noteText(t testing.TB, body []byte) string {
	t.Helper()
	var req struct {
		Messages []struct {
			Content json.RawMessage `json:"content"`
		} `json:"messages"`
		System string `json:"system"`
		Prompt string `json:"prompt"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		t.Fatalf("backend body: %v", err)
	}
	texts := []string{req.System, req.Prompt}
	for _, m := range req.Messages {
		var s string
		if json.Unmarshal(m.Content, &s) == nil {
			texts = append(texts, s)
			continue
		}
		var parts []struct{ Text string }
		_ = json.Unmarshal(m.Content, &parts)
		for _, p := range parts {
			texts = append(texts, p.Text)
		}
	}
	for _, s := range texts {
		if i := strings.Index(s, inject.Preamble); i >= 0 {
			s = s[i:]
			if j := strings.Index(s, "</reference_notes>"); j >= 0 {
				return s[:j+len("</reference_notes>")]
			}
		}
	}
	return ""
}

// library seeds: the first sentence of well-matched pairs is stored as an
// experience, and the second, a paraphrase, is asked.
func seed(t *testing.T, fe *frontend) (pairs []textPair, ids []string) {
	all := paraphrasePairs(t)
	var distractors []string
	for _, p := range all {
		if p.score >= 4.6 && len(pairs) < 10 && len(p.a) > 30 {
			pairs = append(pairs, p)
		} else if p.score < 2 && len(distractors) < 30 {
			distractors = append(distractors, p.a)
		}
	}
	for _, p := range pairs {
		ids = append(ids, addExperience(t, fe, p.a, "pairs.dev"))
	}
	for _, d := range distractors {
		addExperience(t, fe, d, "pairs.other")
	}
	return pairs, ids
}

func chatBody(q string) string {
	b, _ := json.Marshal(map[string]any{"model": "m", "messages": []map[string]string{{"role": "user", "content": q}}})
	return string(b)
}

func TestInjectionEndToEnd(t *testing.T) {
	for _, tc := range []struct{ typ, path string }{{"openai", "/v1/chat/completions"}, {"ollama", "/api/chat"}} {
		t.Run(tc.typ, func(t *testing.T) {
			be := newBackend(t, tc.typ)
			var failMode struct {
				sync.Mutex
				mode string
			}
			textEmbeddings(t, be, func(w http.ResponseWriter, r *http.Request) bool {
				failMode.Lock()
				mode := failMode.mode
				failMode.Unlock()
				switch mode {
				case "slow":
					<-r.Context().Done()
					return true
				case "fail":
					http.Error(w, `{"error":"embedding model crashed"}`, http.StatusInternalServerError)
					return true
				}
				return false
			})
			cfg := openaiCfg(be)
			if tc.typ == "ollama" {
				cfg = ollamaCfg(be)
			}
			cfg.Retries = -1
			lib := newLibrary(t, t.TempDir(), cfg)
			fe := newFrontend(t, []config.Backend{cfg}, withRetrieval(lib, 2*time.Second))
			pairs, ids := seed(t, fe)

			found, injected := 0, 0
			for i, p := range pairs {
				code, hdr, body := post(t, fe.URL+tc.path, chatBody(p.b))
				if code != 200 {
					t.Fatalf("chat: %d %s", code, body)
				}
				if hdr.Get(proxy.HeaderTraceID) == "" {
					t.Error("no trace id")
				}
				if d := hdr.Get(proxy.HeaderDegraded); d != "" {
					t.Fatalf("degraded: %s", d)
				}
				got := strings.Split(hdr.Get(proxy.HeaderExperiences), ",")
				sys := noteText(t, be.last(t).Body)
				if contains(got, ids[i]) {
					found++
					if !strings.Contains(sys, p.a) {
						t.Errorf("experience %s named in the header but its text is not in the notes %q", ids[i], sys)
					}
				}
				if got[0] != "" {
					injected++
					if sys == "" {
						t.Errorf("%q: experiences named but no notes", p.b)
					}
					if scores := strings.Split(hdr.Get(proxy.HeaderScores), ","); len(scores) != len(got) {
						t.Errorf("%q: %d experiences but scores %q", p.b, len(got), hdr.Get(proxy.HeaderScores))
					}
				}
				if hdr.Get(proxy.HeaderGate) == "" {
					t.Errorf("%q: no %s header", p.b, proxy.HeaderGate)
				}
			}
			if found < len(pairs)-1 {
				t.Errorf("the matching experience was injected for %d of %d paraphrases", found, len(pairs))
			}

			// Per-stage timings, outcomes and the index size are in /metrics.
			resp, err := http.Get(fe.URL + "/metrics")
			if err != nil {
				t.Fatal(err)
			}
			mb, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			for _, want := range []string{
				`dso_retrieval_stage_seconds_count{stage="embed"} 10`,
				`dso_retrieval_stage_seconds_count{stage="align"} 10`,
				`dso_retrieval_stage_seconds_count{stage="search"} 10`,
				fmt.Sprintf(`dso_retrieval_stage_seconds_count{stage="inject"} %d`, injected),
				fmt.Sprintf(`dso_retrieval_requests_total{outcome="injected"} %d`, injected),
				"dso_library_experiences " + strconv.Itoa(lib.Len()),
			} {
				if !strings.Contains(string(mb), want) {
					t.Errorf("metrics lack %s", want)
				}
			}

			// Inject off: the body reaches the backend unchanged.
			body := chatBody(pairs[0].b)
			_, hdr, _ := post(t, fe.URL+tc.path, body, proxy.HeaderInject, "off")
			if got := string(be.last(t).Body); got != body || hdr.Get(proxy.HeaderExperiences) != "" {
				t.Errorf("inject off: backend got %q, experiences %q", got, hdr.Get(proxy.HeaderExperiences))
			}
			// A domain that matches nothing injects nothing.
			_, hdr, _ = post(t, fe.URL+tc.path, body, proxy.HeaderDomain, "legal")
			if got := string(be.last(t).Body); got != body || hdr.Get(proxy.HeaderExperiences) != "" {
				t.Errorf("other domain: backend got %q, experiences %q", got, hdr.Get(proxy.HeaderExperiences))
			}
			// A matching domain prefix still injects.
			_, hdr, _ = post(t, fe.URL+tc.path, body, proxy.HeaderDomain, "pairs")
			if hdr.Get(proxy.HeaderExperiences) == "" {
				t.Error("domain prefix pairs injected nothing")
			}
			// Bad headers are the client's error.
			if code, _, _ := post(t, fe.URL+tc.path, body, proxy.HeaderTopK, "lots"); code != 400 {
				t.Errorf("bad top-k: %d", code)
			}

			// Slow and failing embeddings: the answer comes, uninjected, degraded.
			fe2 := newFrontend(t, []config.Backend{cfg}, withRetrieval(lib, 100*time.Millisecond))
			for mode, reason := range map[string]string{"slow": "timeout", "fail": "embed_error"} {
				failMode.Lock()
				failMode.mode = mode
				failMode.Unlock()
				q := chatBody("a question never asked before in mode " + mode)
				code, hdr, resp := post(t, fe2.URL+tc.path, q)
				if code != 200 || !strings.Contains(string(resp), "Paris") {
					t.Errorf("%s embeddings: %d %s", mode, code, resp)
				}
				if got := hdr.Get(proxy.HeaderDegraded); got != reason {
					t.Errorf("%s embeddings: degraded %q; want %q", mode, got, reason)
				}
				if got := string(be.last(t).Body); got != q {
					t.Errorf("%s embeddings: backend got %q", mode, got)
				}
			}
			failMode.Lock()
			failMode.mode = ""
			failMode.Unlock()
		})
	}
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// The experience API: create, duplicate, get, list, search, delete, and bad
// input.
func TestExperienceAPI(t *testing.T) {
	be := newBackend(t, "openai")
	textEmbeddings(t, be, nil)
	lib := newLibrary(t, t.TempDir(), openaiCfg(be))
	fe := newFrontend(t, []config.Backend{openaiCfg(be)}, withRetrieval(lib, time.Second))

	code, _, body := post(t, fe.URL+"/v1/experiences", `{"text":"Always check the error returned by Close on files you wrote.","domain":"code.go","confidence":0.9}`)
	if code != http.StatusCreated {
		t.Fatalf("create: %d %s", code, body)
	}
	var e struct {
		ID, Text, Domain, Status, Object string
		Confidence                       float64
	}
	json.Unmarshal(body, &e)
	if e.ID != store.ExperienceID("code.go", "Always check the error returned by Close on files you wrote.") || e.Status != "active" || e.Confidence != 0.9 {
		t.Errorf("created %+v", e)
	}
	code, _, body = post(t, fe.URL+"/v1/experiences", `{"text":"Always check the error returned by Close on files you wrote.","domain":"code.go"}`)
	var dup struct{ ID string }
	json.Unmarshal(body, &dup)
	if code != http.StatusOK || dup.ID != e.ID {
		t.Errorf("duplicate: %d %s", code, body)
	}
	addExperience(t, fe, "Use a context with a deadline for every outgoing HTTP request.", "code.go")
	addExperience(t, fe, "Season the soup at the end of cooking.", "cooking")
	if n := lib.Len(); n != 3 {
		t.Errorf("index holds %d; want 3", n)
	}

	get := func(path string) (int, []byte) {
		resp, err := http.Get(fe.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b json.RawMessage
		json.NewDecoder(resp.Body).Decode(&b)
		return resp.StatusCode, b
	}
	if code, b := get("/v1/experiences/" + e.ID); code != 200 || !strings.Contains(string(b), "Close on files") {
		t.Errorf("get: %d %s", code, b)
	}
	if code, _ := get("/v1/experiences/nope"); code != 404 {
		t.Errorf("get unknown: %d", code)
	}
	code, b := get("/v1/experiences?domain=code&limit=1")
	var page struct {
		Object  string
		Data    []struct{ ID string }
		HasMore bool `json:"has_more"`
		Next    string
	}
	json.Unmarshal(b, &page)
	if code != 200 || page.Object != "list" || len(page.Data) != 1 || !page.HasMore {
		t.Fatalf("list: %d %s", code, b)
	}
	_, b = get("/v1/experiences?domain=code&limit=1&after=" + page.Next)
	json.Unmarshal(b, &page)
	if len(page.Data) != 1 || page.HasMore {
		t.Errorf("second page: %s", b)
	}
	code, b = get("/v1/experiences/search?q=" + "how+should+I+handle+errors+when+closing+a+file")
	var found struct {
		Data []struct {
			ID    string
			Score float64
		}
	}
	json.Unmarshal(b, &found)
	if code != 200 || len(found.Data) == 0 || found.Data[0].ID != e.ID || found.Data[0].Score <= 0 {
		t.Errorf("search: %d %s", code, b)
	}
	for _, bad := range []string{`{"text":""}`, `{"domain":"x"}`, `{"text":"x","confidence":2}`, `not json`} {
		if code, _, b := post(t, fe.URL+"/v1/experiences", bad); code != 400 {
			t.Errorf("create %s: %d %s", bad, code, b)
		}
	}
	if code, _ := get("/v1/experiences/search"); code != 400 {
		t.Errorf("search without q: %d", code)
	}
	req, _ := http.NewRequest(http.MethodDelete, fe.URL+"/v1/experiences/"+e.ID, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || lib.Len() != 2 {
		t.Errorf("delete: %d, index %d", resp.StatusCode, lib.Len())
	}
	if code, _ := get("/v1/experiences/" + e.ID); code != 404 {
		t.Errorf("get after delete: %d", code)
	}
}

// Admin keys guard the experience API when configured.
func TestExperienceAPIAdminKey(t *testing.T) {
	be := newBackend(t, "openai")
	textEmbeddings(t, be, nil)
	lib := newLibrary(t, t.TempDir(), openaiCfg(be))
	fe := newFrontend(t, []config.Backend{openaiCfg(be)}, withRetrieval(lib, time.Second), func(o *proxy.Options, _ []config.Backend) {
		o.AdminKeys = []config.Secret{"admin"}
		o.APIKeys = []config.Secret{"client"}
	})
	body := `{"text":"Prefer small interfaces.","domain":"code"}`
	if code, _, _ := post(t, fe.URL+"/v1/experiences", body, "Authorization", "Bearer client"); code != 401 {
		t.Errorf("client key on the experience API: %d", code)
	}
	if code, _, b := post(t, fe.URL+"/v1/experiences", body, "Authorization", "Bearer admin"); code != 201 {
		t.Errorf("admin key: %d %s", code, b)
	}
}

// Experiences and traces survive a restart and are found again.
func TestRestartKeepsExperiencesAndTraces(t *testing.T) {
	dir := t.TempDir()
	be := newBackend(t, "openai")
	textEmbeddings(t, be, nil)
	pairs := paraphrasePairs(t)

	st, err := store.OpenDir(context.Background(), dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	emb, err := providers.New(openaiCfg(be), nil)
	if err != nil {
		t.Fatal(err)
	}
	lib, err := library.New(context.Background(), library.Config{Store: st, Space: library.Space{Name: "model:embed-1", Embedder: emb, Model: "embed-1"}})
	if err != nil {
		t.Fatal(err)
	}
	o := proxy.Options{OpenLibrary: true}
	cfgs := []config.Backend{openaiCfg(be)}
	cfgs[0].Name, cfgs[0].Timeout = "a", 10*time.Second
	withRetrieval(lib, 2*time.Second)(&o, cfgs)
	router, _ := providers.NewRouter(cfgs, nil)
	o.Router = router
	p := proxy.New(o)
	fe := &frontend{Server: newTestServer(t, p), proxy: p}
	id := addExperience(t, fe, pairs[0].a, "pairs")
	_, hdr, _ := post(t, fe.URL+"/v1/chat/completions", chatBody(pairs[0].b))
	traceID := hdr.Get(proxy.HeaderTraceID)
	fe.Close()
	p.Close() // stores queued traces
	lib.Close()
	st.Close()

	lib2 := newLibrary(t, dir, cfgs[0])
	if lib2.Len() != 1 {
		t.Fatalf("index after restart holds %d", lib2.Len())
	}
	fe2 := newFrontend(t, cfgs, withRetrieval(lib2, 2*time.Second))
	_, hdr, _ = post(t, fe2.URL+"/v1/chat/completions", chatBody(pairs[0].b))
	if got := hdr.Get(proxy.HeaderExperiences); got != id {
		t.Errorf("after restart injected %q; want %q", got, id)
	}
	tr, err := lib2.Store().(*store.SQLite).GetTrace(context.Background(), traceID)
	if err != nil {
		t.Fatalf("trace %s after restart: %v", traceID, err)
	}
	if tr.Query != pairs[0].b || len(tr.ExperienceIDs) != 1 || tr.ExperienceIDs[0] != id || tr.Answer != "The capital of France is Paris." {
		t.Errorf("trace %+v", tr)
	}
}

// Injection settings come from the config per backend and per model
// pattern (first match), under the request headers.
func TestInjectionSettingsPerBackendAndModel(t *testing.T) {
	be := newBackend(t, "openai")
	lib := newHashLibrary(t)
	everything := -1.0 // these are tests of the settings, not of the gate
	fe := newFrontend(t, []config.Backend{openaiCfg(be)}, func(o *proxy.Options, cfgs []config.Backend) {
		cfgs[0].Injection.TopK = 3
		o.Retrieval = proxy.Retrieval{
			Library: lib, Budget: 2 * time.Second, MinScore: &everything,
			Models: []config.ModelInjection{
				{Pattern: "quiet-*", Injection: config.Injection{Off: true}},
				{Pattern: "one-*", Injection: config.Injection{TopK: 1}},
				{Pattern: "*", Injection: config.Injection{TopK: 2}}, // never reached for one-*
			},
		}
	})
	for i := 0; i < 5; i++ {
		addExperience(t, fe, fmt.Sprintf("Lesson %d about caching answers with care.", i), "")
	}
	for _, tc := range []struct {
		model string
		hdr   []string
		want  int
	}{
		{"quiet-1", nil, 0},
		{"one-1", nil, 1},
		{"other", nil, 2},
		{"other", []string{proxy.HeaderTopK, "4"}, 4},
		{"quiet-1", []string{proxy.HeaderInject, "on"}, 0}, // config off is not overridden
	} {
		body := `{"model":"` + tc.model + `","messages":[{"role":"user","content":"How should I cache answers?"}]}`
		_, hdr, _ := post(t, fe.URL+"/v1/chat/completions", body, tc.hdr...)
		got := 0
		if ids := hdr.Get(proxy.HeaderExperiences); ids != "" {
			got = len(strings.Split(ids, ","))
		}
		if got != tc.want {
			t.Errorf("model %s %v: %d injected; want %d", tc.model, tc.hdr, got, tc.want)
		}
	}
}

// X-DSO-Domain narrows retrieval to a domain and below it, by whole
// segments in either spelling in use ("code/go" and "code.go" are below
// "code"; "codex" is not), on the served path: the headers name what was
// injected.
func TestDomainHeaderNarrowsBySegments(t *testing.T) {
	be := newBackend(t, "openai")
	lib := newHashLibrary(t)
	everything := -1.0 // a test of the domain filter, not of the gate
	fe := newFrontend(t, []config.Backend{openaiCfg(be)}, func(o *proxy.Options, cfgs []config.Backend) {
		o.Retrieval = proxy.Retrieval{Library: lib, Budget: 2 * time.Second, MinScore: &everything}
	})
	ids := map[string]string{}
	for _, d := range []string{"code", "code/go", "code.rust", "codex", "cooking"} {
		ids[d] = addExperience(t, fe, "Lesson on caching answers, filed under "+d+".", d)
	}
	for _, tc := range []struct {
		domain string
		want   []string
	}{
		{"code", []string{"code", "code/go", "code.rust"}},
		{"CODE/Go", []string{"code/go"}},
		{"code/g", nil},
		{"codex", []string{"codex"}},
	} {
		_, hdr, _ := post(t, fe.URL+"/v1/chat/completions", chatBody("How should I cache answers?"), proxy.HeaderDomain, tc.domain, proxy.HeaderTopK, "10")
		var got []string
		if s := hdr.Get(proxy.HeaderExperiences); s != "" {
			got = strings.Split(s, ",")
		}
		var want []string
		for _, d := range tc.want {
			want = append(want, ids[d])
		}
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("X-DSO-Domain %q injected %v; want %v (%v)", tc.domain, got, want, tc.want)
		}
	}
}

// A chat client's retrieval headers only narrow what the operator
// configured (fewer notes, a higher gate or confidence, a sub-domain of
// the configured one): past the bound a value is held at it, and a
// domain outside the configured one gets no note. A request that may
// read the library itself (an admin key where there are admin keys, or
// any where the library is open) may widen it, as before.
func TestRetrievalHeadersOnlyNarrow(t *testing.T) {
	be := newBackend(t, "openai")
	lib := newHashLibrary(t)
	floor := -0.5 // below every lesson's relevance: a test of the bounds, not the gate
	for _, tc := range []struct {
		name  string
		opt   func(*proxy.Options)
		key   string // sent as the bearer key
		widen bool
	}{
		{"client key", func(o *proxy.Options) {
			o.APIKeys, o.AdminKeys = []config.Secret{"sk-client"}, []config.Secret{"sk-admin"}
		}, "sk-client", false},
		{"no keys, library closed", func(o *proxy.Options) { o.OpenLibrary = false }, "", false},
		{"admin key", func(o *proxy.Options) {
			o.APIKeys, o.AdminKeys = []config.Secret{"sk-client"}, []config.Secret{"sk-admin"}
		}, "sk-admin", true},
		{"no keys, library open", func(o *proxy.Options) {}, "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fe := newFrontend(t, []config.Backend{openaiCfg(be)}, func(o *proxy.Options, cfgs []config.Backend) {
				cfgs[0].Injection.TopK = 2
				o.Retrieval = proxy.Retrieval{Library: lib, Budget: 2 * time.Second, MinScore: &floor,
					Models: []config.ModelInjection{{Pattern: "code-*", Injection: config.Injection{Domain: "code"}}}}
				tc.opt(o)
			})
			if tc.name == "client key" { // one library for every case
				for i, d := range []string{"code", "code", "code.go", "code.go", "cooking", "cooking"} {
					_, _, err := lib.Add(t.Context(), store.Experience{Text: fmt.Sprintf("Lesson %d on caching answers, filed under %s.", i, d),
						Domain: d, Confidence: 0.8, Status: store.StatusActive})
					if err != nil {
						t.Fatal(err)
					}
				}
			}
			chat := func(model string, hdr ...string) (int, string, []string) {
				t.Helper()
				if tc.key != "" {
					hdr = append(hdr, "Authorization", "Bearer "+tc.key)
				}
				body := `{"model":"` + model + `","messages":[{"role":"user","content":"How should I cache answers?"}]}`
				code, h, b := post(t, fe.URL+"/v1/chat/completions", body, hdr...)
				if code != http.StatusOK {
					t.Fatalf("%s %v: %d %s", model, hdr, code, b)
				}
				var ids []string
				if s := h.Get(proxy.HeaderExperiences); s != "" {
					ids = strings.Split(s, ",")
				}
				return code, h.Get(proxy.HeaderGate), ids
			}
			domains := func(ids []string) map[string]int {
				out := map[string]int{}
				for _, id := range ids {
					e, err := lib.GetExperience(t.Context(), id)
					if err != nil {
						t.Fatal(err)
					}
					out[e.Domain]++
				}
				return out
			}
			pick := func(narrow, wide int) int {
				if tc.widen {
					return wide
				}
				return narrow
			}
			if _, gate, ids := chat("m"); len(ids) != 2 || gate != "-0.500" {
				t.Fatalf("configured: %d notes at gate %s; want 2 at -0.500", len(ids), gate)
			}
			// Narrowing always holds.
			if _, _, ids := chat("m", proxy.HeaderTopK, "1"); len(ids) != 1 {
				t.Errorf("top-k 1: %d notes; want 1", len(ids))
			}
			if _, gate, ids := chat("m", proxy.HeaderMinScore, "0.99"); len(ids) != 0 || gate != "0.990" {
				t.Errorf("min score 0.99: %d notes at gate %s; want none at 0.990", len(ids), gate)
			}
			if _, _, ids := chat("m", proxy.HeaderMinConfidence, "0.9"); len(ids) != 0 {
				t.Errorf("min confidence 0.9: %d notes; want none (every lesson is at 0.8)", len(ids))
			}
			if _, _, ids := chat("code-1", proxy.HeaderDomain, "code.go"); len(ids) != 2 || domains(ids)["code.go"] != 2 {
				t.Errorf("a sub-domain of the configured one: %v; want 2 notes of code.go", domains(ids))
			}
			// Widening only with a key that opens the library.
			if _, _, ids := chat("m", proxy.HeaderTopK, "100"); len(ids) != pick(2, 6) {
				t.Errorf("top-k 100: %d notes; want %d", len(ids), pick(2, 6))
			}
			if _, gate, _ := chat("m", proxy.HeaderMinScore, "-1"); gate != map[bool]string{false: "-0.500", true: "-1.000"}[tc.widen] {
				t.Errorf("min score -1: gate %s; want it lowered only with a key to the library (%v)", gate, tc.widen)
			}
			if _, _, ids := chat("code-1", proxy.HeaderDomain, "cooking"); domains(ids)["cooking"] != pick(0, 2) || len(ids) != pick(0, 2) {
				t.Errorf("a domain outside the configured one: %v; want %d notes of cooking", domains(ids), pick(0, 2))
			}
		})
	}
}

// With admin keys and no client keys, clients' own credentials still go
// to a backend without a key of its own, but an admin key never does.
func TestAdminKeyNotForwarded(t *testing.T) {
	be := newBackend(t, "openai")
	fe := newFrontend(t, []config.Backend{openaiCfg(be)}, func(o *proxy.Options, _ []config.Backend) {
		o.AdminKeys = []config.Secret{"sk-admin"}
	})
	for _, tc := range []struct{ key, want string }{{"sk-theirs", "Bearer sk-theirs"}, {"sk-admin", ""}} {
		if code, _, b := post(t, fe.URL+"/v1/chat/completions", chatBody("hi"), "Authorization", "Bearer "+tc.key); code != http.StatusOK {
			t.Fatalf("%s: %d %s", tc.key, code, b)
		}
		if got := be.last(t).Header.Get("Authorization"); got != tc.want {
			t.Errorf("sent %s: the backend got Authorization %q; want %q", tc.key, got, tc.want)
		}
	}
}
