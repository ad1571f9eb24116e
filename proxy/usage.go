package proxy

import (
	"bytes"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/tidwall/gjson"
)

// What a backend says it reused of the prompt: the measure of whether
// dso's notes left its prompt cache intact (see inject's positions).

// maxUsageTail is how much of an answer's end is kept to read its usage
// from: a stream's usage comes in its last events.
const maxUsageTail = 8 << 10

// promptUsage is a backend answer's prompt token counts.
type promptUsage struct {
	prompt, cached int
	ok             bool
}

// usageOf reads the prompt tokens and cached prompt tokens from the end
// of an answer in any format dso relays or writes: OpenAI chat
// (usage.prompt_tokens, prompt_tokens_details.cached_tokens), Responses
// (usage.input_tokens, input_tokens_details.cached_tokens; in a stream,
// inside response.completed), Anthropic (usage.input_tokens, which
// excludes cache_read_input_tokens and cache_creation_input_tokens).
// Ollama counts only what it evaluated (prompt_eval_count), not what it
// reused, so it gives nothing.
func usageOf(tail []byte) promptUsage {
	if t := bytes.TrimSpace(tail); len(t) > 0 && t[0] == '{' && gjson.ValidBytes(t) {
		return usageIn(gjson.ParseBytes(t)) // one body, however laid out
	}
	for len(tail) > 0 {
		line := tail
		if i := bytes.LastIndexByte(bytes.TrimRight(tail, "\r\n"), '\n'); i >= 0 {
			line, tail = tail[i+1:], tail[:i]
		} else {
			tail = nil
		}
		line = bytes.TrimSpace(line)
		if d, ok := bytes.CutPrefix(line, []byte("data:")); ok {
			line = bytes.TrimSpace(d)
		}
		if len(line) == 0 || line[0] != '{' || !bytes.Contains(line, []byte(`"usage"`)) || !gjson.ValidBytes(line) {
			continue
		}
		if u := usageIn(gjson.ParseBytes(line)); u.ok {
			return u
		}
	}
	return promptUsage{}
}

// usageIn reads one body's or event's usage, as usageOf describes.
func usageIn(ev gjson.Result) promptUsage {
	u := ev.Get("usage")
	if !u.IsObject() {
		u = ev.Get("response.usage") // a Responses stream's terminal event
	}
	if !u.IsObject() {
		u = ev.Get("message.usage") // Anthropic's message_start
	}
	switch {
	case u.Get("prompt_tokens").Exists():
		return promptUsage{int(u.Get("prompt_tokens").Int()), int(u.Get("prompt_tokens_details.cached_tokens").Int()), true}
	case u.Get("cache_read_input_tokens").Exists():
		read := int(u.Get("cache_read_input_tokens").Int())
		return promptUsage{int(u.Get("input_tokens").Int()+u.Get("cache_creation_input_tokens").Int()) + read, read, true}
	case u.Get("input_tokens").Exists():
		return promptUsage{int(u.Get("input_tokens").Int()), int(u.Get("input_tokens_details.cached_tokens").Int()), true}
	}
	return promptUsage{}
}

// usageMetrics count prompt tokens by backend.
type usageMetrics struct {
	prompt, cached *prometheus.CounterVec
}

func newUsageMetrics(reg prometheus.Registerer) usageMetrics {
	m := usageMetrics{
		prompt: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dso_backend_prompt_tokens_total", Help: "Prompt tokens the backends reported, for answers that say how many were cached.",
		}, []string{"backend"}),
		cached: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dso_backend_cached_prompt_tokens_total", Help: "Prompt tokens the backends reported reusing from their prompt cache.",
		}, []string{"backend"}),
	}
	reg.MustRegister(m.prompt, m.cached)
	return m
}

func (m usageMetrics) observe(backend string, u promptUsage) {
	if !u.ok || backend == "" {
		return
	}
	m.prompt.WithLabelValues(backend).Add(float64(u.prompt))
	m.cached.WithLabelValues(backend).Add(float64(u.cached))
}
