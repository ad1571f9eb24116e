package proxy_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dso-proxy/dso/config"
	"github.com/dso-proxy/dso/proxy"
)

// cachingBackend is a chat server with a prompt cache: it renders each
// request's messages as a chat template would and, like a real server,
// reports as cached the longest prefix of that prompt it has seen before
// (OpenAI: usage.prompt_tokens_details.cached_tokens; Ollama:
// prompt_eval_count counts only what it evaluated). One byte is one
// token here.
type cachingBackend struct {
	*backend
	mu      sync.Mutex
	prompts []string // rendered, in arrival order
	turn    int
	cached  int // the cached tokens reported, summed
}

func newCachingBackend(t *testing.T, typ string) *cachingBackend {
	cb := &cachingBackend{backend: newBackend(t, typ)}
	cb.setOverride(func(w http.ResponseWriter, r *http.Request, body []byte) bool {
		p := renderPrompt(t, body)
		cb.mu.Lock()
		cached := 0
		for _, q := range cb.prompts {
			cached = max(cached, commonPrefix(p, q))
		}
		cb.prompts = append(cb.prompts, p)
		cb.turn++
		cb.cached += cached
		reply := fmt.Sprintf("Reply %d.", cb.turn)
		cb.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		if typ == "anthropic" {
			fmt.Fprintf(w, `{"id":"msg_1","type":"message","role":"assistant","model":"m","content":[{"type":"text","text":%q}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":%d,"cache_read_input_tokens":%d,"output_tokens":3}}`, reply, len(p)-cached, cached)
			return true
		}
		if typ == "ollama" {
			fmt.Fprintf(w, `{"model":"m","created_at":"2026-01-01T00:00:00Z","message":{"role":"assistant","content":%q},"done":true,"done_reason":"stop","prompt_eval_count":%d,"eval_count":3}`, reply, len(p)-cached)
			return true
		}
		fmt.Fprintf(w, `{"id":"c","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":%q},"finish_reason":"stop"}],"usage":{"prompt_tokens":%d,"completion_tokens":3,"total_tokens":%d,"prompt_tokens_details":{"cached_tokens":%d}}}`, reply, len(p), len(p)+3, cached)
		return true
	})
	return cb
}

// renderPrompt renders a chat body's messages (OpenAI's, Ollama's or
// Anthropic's, whose system is a field) as a template does: role and text
// of each message, in order.
func renderPrompt(t testing.TB, body []byte) string {
	var req struct {
		System   string `json:"system"`
		Messages []struct {
			Role    string          `json:"role"`
			Content json.RawMessage `json:"content"`
		} `json:"messages"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		t.Errorf("backend body %s: %v", body, err)
	}
	var b strings.Builder
	if req.System != "" {
		b.WriteString("<|system|>" + req.System + "<|end|>")
	}
	for _, m := range req.Messages {
		b.WriteString("<|" + m.Role + "|>")
		var s string
		if json.Unmarshal(m.Content, &s) != nil {
			var parts []struct{ Text string }
			_ = json.Unmarshal(m.Content, &parts)
			for _, p := range parts {
				s += p.Text
			}
		}
		b.WriteString(s + "<|end|>")
	}
	return b.String()
}

func commonPrefix(a, b string) int {
	n := 0
	for n < len(a) && n < len(b) && a[n] == b[n] {
		n++
	}
	return n
}

// The ten topics of the conversation: each question's words are its own,
// so each turn retrieves a different lesson.
var prefixTopics = [][2]string{
	{"sourdough starter feeding schedule", "Feed a sourdough starter twice a day at room temperature."},
	{"rust borrow checker lifetimes", "Rust lifetimes name how long a borrow lasts."},
	{"kubernetes pod eviction thresholds", "Kubernetes evicts pods when node memory falls below the threshold."},
	{"watercolor paper weight grams", "Watercolor paper of 300 grams does not buckle when wet."},
	{"marathon taper week mileage", "Cut mileage by half in the marathon taper week."},
	{"espresso grind size extraction", "A finer espresso grind slows the extraction."},
	{"tomato seedling transplant depth", "Plant tomato seedlings deep, up to the first leaves."},
	{"postgres vacuum bloat autovacuum", "Autovacuum keeps postgres tables from bloating."},
	{"guitar string gauge tension", "Heavier guitar string gauges hold more tension."},
	{"bicycle chain wear measurement", "Replace a bicycle chain worn past half a percent."},
}

// prefixRatios drives a ten-turn conversation through dso, each turn
// asked on the surface route and answered by backend typ, and returns for
// each pair of consecutive turns the common prefix of the prompts the
// backend got over that of the client's own (1 when dso changes nothing
// the cache holds), and the cached share of the backend's prompts.
func prefixRatios(t *testing.T, surface, typ, position string, forget bool) (ratios, extended []float64, notes int) {
	t.Helper()
	be := newCachingBackend(t, typ)
	lib := newHashLibrary(t)
	minScore := 0.1
	fe := newFrontend(t, []config.Backend{backendCfg(typ, be.backend)}, func(o *proxy.Options, _ []config.Backend) {
		o.Retrieval = proxy.Retrieval{Library: lib, Budget: 5 * time.Second, TopK: 1, MinScore: &minScore, Position: position, ForgetTurns: forget}
	})
	for _, tp := range prefixTopics {
		addExperience(t, fe, "On "+tp[0]+": "+tp[1], "")
	}
	type msg struct {
		Role    string `json:"role"`
		Content string `json:"content"`
	}
	history := []msg{{"system", "You are a helpful assistant."}}
	var client []string
	seen := map[string]bool{}
	for i, tp := range prefixTopics {
		history = append(history, msg{"user", "Question " + fmt.Sprint(i+1) + ": please tell me, in a few short sentences, what you know about " + tp[0] + "?"})
		b, _ := json.Marshal(map[string]any{"model": "m", "messages": history, "stream": false})
		client = append(client, renderPrompt(t, b))
		switch surface {
		case "/v1/responses":
			b, _ = json.Marshal(map[string]any{"model": "m", "instructions": history[0].Content, "input": history[1:]})
		case "/v1/messages":
			b, _ = json.Marshal(map[string]any{"model": "m", "max_tokens": 256, "system": history[0].Content, "messages": history[1:]})
		}
		code, hdr, body := post(t, fe.URL+surface, string(b))
		if code != http.StatusOK {
			t.Fatalf("turn %d: %d %s", i+1, code, body)
		}
		if ids := hdr.Get(proxy.HeaderExperiences); ids != "" && !seen[ids] {
			seen[ids] = true
			notes++
		}
		var a struct {
			Choices []struct{ Message msg }
			Message msg
			Output  []struct{ Content []struct{ Text string } }
			Content []struct{ Text string }
		}
		_ = json.Unmarshal(body, &a)
		reply := a.Message.Content
		switch {
		case len(a.Choices) > 0:
			reply = a.Choices[0].Message.Content
		case len(a.Output) > 0 && len(a.Output[0].Content) > 0:
			reply = a.Output[0].Content[0].Text
		case len(a.Content) > 0:
			reply = a.Content[0].Text
		}
		history = append(history, msg{"assistant", reply})
	}
	be.mu.Lock()
	forwarded := be.prompts
	be.mu.Unlock()
	for i := 0; i+1 < len(forwarded); i++ {
		lcp := float64(commonPrefix(forwarded[i], forwarded[i+1]))
		ratios = append(ratios, lcp/float64(commonPrefix(client[i], client[i+1])))
		extended = append(extended, lcp/float64(len(forwarded[i])))
	}
	return ratios, extended, notes
}

func worstAndMean(xs []float64) (worst, mean float64) {
	worst = 1
	for _, x := range xs {
		worst = min(worst, x)
		mean += x / float64(len(xs))
	}
	return worst, mean
}

// Issue 23: with a note on every turn, the prompts dso forwards keep at
// least 0.95 of the prefix the client's own prompts share, on every
// surface and through translation both ways. The old placement (in the
// system message) keeps far less, which the same measure shows.
func TestInjectionKeepsThePromptPrefix(t *testing.T) {
	for _, c := range []struct{ name, route, backend string }{
		{"openai-openai", "/v1/chat/completions", "openai"},
		{"ollama-ollama", "/api/chat", "ollama"},
		{"openai-ollama", "/v1/chat/completions", "ollama"},
		{"ollama-openai", "/api/chat", "openai"},
		{"responses-openai", "/v1/responses", "openai"},
		{"responses-ollama", "/v1/responses", "ollama"},
		{"anthropic-anthropic", "/v1/messages", "anthropic"},
		{"anthropic-openai", "/v1/messages", "openai"},
		{"openai-anthropic", "/v1/chat/completions", "anthropic"},
	} {
		t.Run(c.name, func(t *testing.T) {
			ratios, extended, notes := prefixRatios(t, c.route, c.backend, "", false)
			if notes < len(prefixTopics)-1 {
				t.Fatalf("%d turns brought a new note; want a different note on (nearly) every turn", notes)
			}
			plain, _, _ := prefixRatios(t, c.route, c.backend, "", true)
			sys, _, _ := prefixRatios(t, c.route, c.backend, config.PositionSystem, false)
			worst, mean := worstAndMean(ratios)
			extWorst, _ := worstAndMean(extended)
			plainWorst, plainMean := worstAndMean(plain)
			sysWorst, sysMean := worstAndMean(sys)
			t.Logf("client prefix kept: notes put back %.3f (worst %.3f), each prompt extends the last by %.3f; newest turn only %.3f (worst %.3f); system %.3f (worst %.3f)",
				mean, worst, extWorst, plainMean, plainWorst, sysMean, sysWorst)
			if worst < 0.95 || extWorst < 1 {
				t.Errorf("notes put back: worst turn keeps %.3f of the client's prefix and %.3f of the last prompt; want at least 0.95 and all of it", worst, extWorst)
			}
			if plainWorst < 0.95 {
				t.Errorf("newest turn only: worst turn keeps %.3f of the client's prefix; want at least 0.95 (%.3f)", plainWorst, plain)
			}
			if sysWorst >= 0.95 {
				t.Errorf("the system placement keeps %.3f: the measure cannot tell the placements apart", sysWorst)
			}
		})
	}
}

// A note the conversation already holds is not injected again, and one
// deleted from the library since is not put back.
func TestNotesStayPutOnceAndOnlyWhileActive(t *testing.T) {
	be := newCachingBackend(t, "openai")
	lib := newHashLibrary(t)
	minScore := 0.1
	fe := newFrontend(t, []config.Backend{openaiCfg(be.backend)}, func(o *proxy.Options, _ []config.Backend) {
		o.Retrieval = proxy.Retrieval{Library: lib, Budget: 5 * time.Second, TopK: 3, MinScore: &minScore}
	})
	tp := prefixTopics[0]
	lesson := "On " + tp[0] + ": " + tp[1]
	id := addExperience(t, fe, lesson, "")
	q := "Please tell me, in a few short sentences, what you know about " + tp[0] + "?"
	msgs := []map[string]string{{"role": "user", "content": q}}
	turn := func() (http.Header, string) {
		t.Helper()
		b, _ := json.Marshal(map[string]any{"model": "m", "messages": msgs})
		code, hdr, body := post(t, fe.URL+"/v1/chat/completions", string(b))
		if code != http.StatusOK {
			t.Fatalf("%d %s", code, body)
		}
		msgs = append(msgs, map[string]string{"role": "assistant", "content": "ok"}, map[string]string{"role": "user", "content": q + " Again?"})
		return hdr, string(be.last(t).Body)
	}
	if hdr, _ := turn(); hdr.Get(proxy.HeaderExperiences) != id {
		t.Fatalf("first turn injected %q; want %s", hdr.Get(proxy.HeaderExperiences), id)
	}
	hdr, body := turn()
	if hdr.Get(proxy.HeaderExperiences) != "" || strings.Count(body, tp[1]) != 1 {
		t.Errorf("second turn: injected %q, the lesson %d times in %s; want it once, where the first turn had it", hdr.Get(proxy.HeaderExperiences), strings.Count(body, tp[1]), body)
	}
	if code, _, b := send(t, http.MethodDelete, fe.URL+"/v1/experiences/"+id, ""); code/100 != 2 {
		t.Fatalf("delete: %d %s", code, b)
	}
	if _, body := turn(); strings.Contains(body, tp[1]) {
		t.Errorf("a deleted lesson was put back: %s", body)
	}
	// What the backend said it reused is counted (before the handler
	// returns, so before these small answers left dso's buffer).
	be.mu.Lock()
	want := fmt.Sprintf(`dso_backend_cached_prompt_tokens_total{backend="openaia"} %d`, be.cached)
	be.mu.Unlock()
	if _, _, m := send(t, http.MethodGet, fe.URL+"/metrics", ""); !strings.Contains(string(m), want) || strings.Contains(want, "} 0") {
		t.Errorf("metrics lack %s", want)
	}
	// And the dashboard's overview reads the same counts.
	_, _, sb := send(t, http.MethodGet, fe.URL+"/v1/stats", "")
	var st struct {
		Buckets []struct {
			Prompt int `json:"prompt_tokens"`
			Cached int `json:"cached_prompt_tokens"`
		} `json:"buckets"`
	}
	if err := json.Unmarshal(sb, &st); err != nil {
		t.Fatalf("stats: %v: %s", err, sb)
	}
	var cached int
	for _, b := range st.Buckets {
		cached += b.Cached
	}
	be.mu.Lock()
	defer be.mu.Unlock()
	if cached != be.cached {
		t.Errorf("/v1/stats counts %d cached prompt tokens; the backend reported %d", cached, be.cached)
	}
}

// Near the backend's context limit fewer notes go in, or none: the
// client's messages are never what gives way.
func TestNotesFitTheContext(t *testing.T) {
	be := newBackend(t, "ollama")
	lib := newHashLibrary(t)
	minScore := 0.1
	cfg := ollamaCfg(be)
	cfg.ContextTokens = 100000
	fe := newFrontend(t, []config.Backend{cfg}, func(o *proxy.Options, _ []config.Backend) {
		o.Retrieval = proxy.Retrieval{Library: lib, Budget: 5 * time.Second, TopK: 1, MinScore: &minScore}
	})
	tp := prefixTopics[1]
	addExperience(t, fe, "On "+tp[0]+": "+tp[1], "")
	q := "Please tell me, in a few short sentences, what you know about " + tp[0] + "?"
	history := strings.Repeat("An earlier turn of a long conversation. ", 150) // about 1,000 tokens
	ask := func(numCtx int) http.Header {
		t.Helper()
		b, _ := json.Marshal(map[string]any{"model": "m", "stream": false, "options": map[string]any{"num_ctx": numCtx},
			"messages": []map[string]string{{"role": "user", "content": history}, {"role": "assistant", "content": "ok"}, {"role": "user", "content": q}}})
		code, hdr, body := post(t, fe.URL+"/api/chat", string(b))
		if code != http.StatusOK {
			t.Fatalf("%d %s", code, body)
		}
		if sent := string(be.last(t).Body); !strings.Contains(sent, history) || !strings.Contains(sent, q) {
			t.Errorf("a client message did not reach the backend whole")
		}
		return hdr
	}
	if hdr := ask(8192); hdr.Get(proxy.HeaderExperiences) == "" {
		t.Errorf("with room in the context no note was injected (degraded %q)", hdr.Get(proxy.HeaderDegraded))
	}
	if hdr := ask(1200); hdr.Get(proxy.HeaderExperiences) != "" || hdr.Get(proxy.HeaderDegraded) != "context_full" {
		t.Errorf("a full context: injected %q, degraded %q; want nothing and context_full", hdr.Get(proxy.HeaderExperiences), hdr.Get(proxy.HeaderDegraded))
	}
}
