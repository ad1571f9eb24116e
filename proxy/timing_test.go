package proxy_test

import (
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dso-proxy/dso/config"
	"github.com/dso-proxy/dso/proxy"
)

var serverTimingRE = regexp.MustCompile(`^([a-z]+);dur=([0-9]+\.[0-9]{3})$`)

// parseServerTiming reads dso's Server-Timing value into name → ms.
func parseServerTiming(t *testing.T, v string) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	for _, m := range strings.Split(v, ", ") {
		g := serverTimingRE.FindStringSubmatch(m)
		if g == nil {
			t.Fatalf("Server-Timing metric %q in %q is not name;dur=ms", m, v)
		}
		out[g[1]], _ = strconv.ParseFloat(g[2], 64)
	}
	return out
}

// Every chat response, on both surfaces, streamed or not, same-format or
// translated, carries Server-Timing with dso's stages, the backend's time
// to headers and dso's own time; a backend's own Server-Timing is relayed
// beside it; dso's time is a histogram too.
func TestServerTiming(t *testing.T) {
	const delay = 40 * time.Millisecond // the backends' time to headers
	slow := func(be *backend) {
		be.setOverride(func(w http.ResponseWriter, r *http.Request, body []byte) bool {
			if r.URL.Path == "/v1/embeddings" || r.URL.Path == "/api/embed" {
				return false
			}
			time.Sleep(delay) // the backend's latency, measured, not waited on
			w.Header().Set("Server-Timing", "gpu;dur=12.5")
			return false
		})
	}
	oa, ol := newBackend(t, "openai"), newBackend(t, "ollama")
	slow(oa)
	slow(ol)
	lib := newHashLibrary(t)
	ocfg, lcfg := openaiCfg(oa), ollamaCfg(ol)
	ocfg.Name, ocfg.Models = "oa", []string{"gpt-*"}
	lcfg.Name, lcfg.Models = "ol", []string{"llama*"}
	fe := newFrontend(t, []config.Backend{ocfg, lcfg}, withRetrieval(lib, time.Second))
	addExperience(t, fe, "Cache answers to repeated questions for a minute.", "")

	for _, tc := range []struct {
		name, path, body string
		relayed          bool // same format: the backend's headers are relayed
	}{
		{"openai over openai", "/v1/chat/completions", `{"model":"gpt-4o","messages":[{"role":"user","content":"How long should answers be cached?"}]}`, true},
		{"openai over openai, streamed", "/v1/chat/completions", `{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"How long should answers be cached?"}]}`, true},
		{"openai over ollama", "/v1/chat/completions", `{"model":"llama3","messages":[{"role":"user","content":"How long should answers be cached?"}]}`, false},
		{"ollama over ollama, streamed", "/api/chat", `{"model":"llama3","messages":[{"role":"user","content":"How long should answers be cached?"}]}`, true},
		{"ollama over openai", "/api/chat", `{"model":"gpt-4o","stream":false,"messages":[{"role":"user","content":"How long should answers be cached?"}]}`, false},
		{"generate", "/api/generate", `{"model":"llama3","prompt":"How long should answers be cached?"}`, true},
		{"bad request", "/v1/chat/completions", `{"model":"gpt-4o"}`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t0 := time.Now()
			resp, err := http.Post(fe.URL+tc.path, "application/json", strings.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			total := float64(time.Since(t0).Microseconds()) / 1000
			var dso string
			for _, v := range resp.Header.Values("Server-Timing") {
				if strings.HasPrefix(v, "embed;") {
					dso = v
				} else if !tc.relayed || v != "gpu;dur=12.5" {
					t.Errorf("unexpected Server-Timing %q", v)
				}
			}
			if dso == "" {
				t.Fatalf("no dso Server-Timing in %q", resp.Header.Values("Server-Timing"))
			}
			m := parseServerTiming(t, dso)
			for _, name := range []string{"embed", "align", "search", "inject", "upstream", "dso"} {
				if _, ok := m[name]; !ok {
					t.Errorf("%s missing from %q", name, dso)
				}
			}
			if tc.name == "bad request" {
				if resp.StatusCode != 400 || m["upstream"] != 0 {
					t.Errorf("bad request: %d, upstream %v", resp.StatusCode, m["upstream"])
				}
				return
			}
			if resp.StatusCode != 200 || resp.Header.Get(proxy.HeaderDegraded) != "" {
				t.Fatalf("status %d, degraded %q", resp.StatusCode, resp.Header.Get(proxy.HeaderDegraded))
			}
			if m["upstream"] < float64(delay.Milliseconds()) {
				t.Errorf("upstream %.3f ms; the backend took at least %v to answer", m["upstream"], delay)
			}
			if m["embed"] <= 0 || m["search"] <= 0 {
				t.Errorf("retrieval stages not timed: %q", dso)
			}
			if sum := m["upstream"] + m["dso"]; sum > total+1 {
				t.Errorf("upstream + dso = %.3f ms, more than the %.3f ms the client waited", sum, total)
			}
			if m["embed"]+m["align"]+m["search"]+m["inject"] > m["dso"]+0.01 {
				t.Errorf("retrieval stages exceed dso's own time: %q", dso)
			}
		})
	}
	_, _, mb := send(t, http.MethodGet, fe.URL+"/metrics", "")
	if !strings.Contains(string(mb), `dso_proxy_overhead_seconds_count{route="/v1/chat/completions"} 4`) {
		t.Errorf("metrics lack the overhead histogram for 4 OpenAI-surface chats:\n%s", grep(string(mb), "dso_proxy_overhead"))
	}
}

func grep(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// A backend that sends its headers at once and its body slowly is the
// backend's time, not dso's: dso reads a whole answer before its own
// header goes out, and the wait on the body counts as upstream, on a
// relayed and on a translated answer.
func TestServerTimingBlamesTheBackendsBody(t *testing.T) {
	const pieces, gap = 4, 30 * time.Millisecond // the body over about 120 ms
	for _, typ := range []string{"openai", "ollama"} {
		t.Run(typ, func(t *testing.T) {
			be := newBackend(t, typ)
			answer := `{"id":"c","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"Paris."},"finish_reason":"stop"}]}`
			if typ == "ollama" {
				answer = `{"model":"m","created_at":"2026-01-01T00:00:00Z","message":{"role":"assistant","content":"Paris."},"done":true,"done_reason":"stop"}`
			}
			be.setOverride(func(w http.ResponseWriter, r *http.Request, body []byte) bool {
				w.Header().Set("Content-Type", "application/json")
				w.Header().Set("Content-Length", strconv.Itoa(len(answer)))
				w.WriteHeader(200)
				w.(http.Flusher).Flush()
				step := len(answer)/pieces + 1
				for i := 0; i < len(answer); i += step {
					time.Sleep(gap) // the backend generating, not a synchronisation
					_, _ = io.WriteString(w, answer[i:min(len(answer), i+step)])
					w.(http.Flusher).Flush()
				}
				return true
			})
			fe := newFrontend(t, []config.Backend{cfgFor(be)})
			code, hdr, b := post(t, fe.URL+"/v1/chat/completions", chatBody("The capital of France?"))
			if code != 200 || !strings.Contains(string(b), "Paris.") {
				t.Fatalf("%d %s", code, b)
			}
			var dso string
			for _, v := range hdr.Values("Server-Timing") {
				if strings.HasPrefix(v, "embed;") {
					dso = v
				}
			}
			m := parseServerTiming(t, dso)
			if want := float64((pieces - 1) * gap.Milliseconds()); m["upstream"] < want {
				t.Errorf("upstream %.3f ms, dso %.3f ms; the backend spent at least %.0f ms on its body", m["upstream"], m["dso"], want)
			}
		})
	}
}
