package config

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"path"
	"strings"
)

// Problem is one thing wrong with a configuration.
type Problem struct {
	Path string // field path, e.g. backends[1].url
	Line int    // line in the file, 0 when unknown
	Msg  string
}

func (p Problem) Error() string {
	s := p.Msg
	if p.Path != "" {
		s = p.Path + ": " + s
	}
	if p.Line > 0 {
		s = fmt.Sprintf("line %d: %s", p.Line, s)
	}
	return s
}

// Validate reports every problem in c, joined with errors.Join; each is a
// Problem.
func (c *Config) Validate() error {
	var errs []error
	add := func(path, format string, args ...any) {
		errs = append(errs, Problem{Path: path, Msg: fmt.Sprintf(format, args...)})
	}
	if c.Listen == "" {
		add("listen", "must not be empty")
	} else if msg := listenProblem(c.Listen); msg != "" {
		add("listen", "%s", msg)
	}
	if c.BodyTimeout < 0 {
		add("body_timeout", "must not be negative")
	}
	if c.MaxInFlight < 0 {
		add("max_in_flight", "must not be negative")
	}
	if c.MaxBytesInFlight < 0 {
		add("max_bytes_in_flight", "must not be negative")
	}
	if c.MaxBodyBytes < 0 {
		add("max_body_bytes", "must not be negative")
	}
	switch m := c.MemoryLimit; {
	case m < 0 && m != Off:
		add("memory_limit", "must not be negative (off sets no limit)")
	case m > 0 && m < MinMemoryLimit:
		add("memory_limit", "%v is below %v, too little for dso to run in", m, ByteSize(MinMemoryLimit))
	}
	if c.ShutdownTimeout < 0 {
		add("shutdown_timeout", "must not be negative")
	}
	if _, err := ParsePrefixes(c.TrustedProxies); err != nil {
		add("trusted_proxies", "%v", err)
	}
	if c.Redis != "" {
		// The message never repeats the URL: it may hold a password.
		if u, err := url.Parse(string(c.Redis)); err != nil || (u.Scheme != "redis" && u.Scheme != "rediss") || u.Host == "" {
			add("redis", "must be a redis://host:port/db or rediss:// URL")
		}
	}
	switch c.LogLevel {
	case "", "debug", "info", "warn", "error":
	default:
		add("log_level", "%q is not one of debug, info, warn, error", c.LogLevel)
	}
	rt := c.Retrieval
	switch e := rt.Embedder; {
	case e == "", e == "hash", strings.HasPrefix(e, "hash:"), strings.HasPrefix(e, "wordvec:") && len(e) > 8, strings.HasPrefix(e, "model:") && len(e) > 6:
	case e == "backend":
		// fill takes EmbeddingModel from the first backend that names one.
		if rt.EmbeddingModel == "" {
			add("retrieval.embedder", "backend needs retrieval.embedding_model (or a backend's embedding_model)")
		}
	default:
		add("retrieval.embedder", "%q is not hash[:DIM], wordvec:FILE, model:NAME or backend", e)
	}
	checkScore := func(field string, v *float64) {
		if v != nil && (*v < -1 || *v > 1) {
			add(field, "must be between -1 and 1")
		}
	}
	checkScore("retrieval.min_score", rt.MinScore)
	for i, m := range rt.Models {
		checkScore(fmt.Sprintf("retrieval.models[%d].min_score", i), m.MinScore)
	}
	for i, b := range c.Backends {
		checkScore(fmt.Sprintf("backends[%d].injection.min_score", i), b.Injection.MinScore)
	}
	switch rt.Index {
	case "", "cpu", "gpu", "auto":
	default:
		add("retrieval.index", "%q is not cpu, gpu or auto", rt.Index)
	}
	if rt.Budget < 0 {
		add("retrieval.budget", "must not be negative")
	}
	if rt.TopK < 0 || rt.TopK > 100 {
		add("retrieval.top_k", "must be between 0 and 100")
	}
	if rt.MinConfidence > 1 {
		add("retrieval.min_confidence", "must be at most 1 (negative: no floor)")
	}
	if rt.InjectWhole < 0 || rt.InjectWhole > 1000 {
		add("retrieval.inject_whole", "must be between 0 and 1000")
	}
	if rt.MaxTokens < 0 {
		add("retrieval.max_tokens", "must not be negative")
	}
	checkPosition := func(field, p string) {
		if p != "" && p != PositionUser && p != PositionSystem {
			add(field, "%q is not user or system", p)
		}
	}
	checkPosition("retrieval.inject_position", rt.InjectPosition)
	for i, m := range rt.Models {
		checkPosition(fmt.Sprintf("retrieval.models[%d].position", i), m.Position)
	}
	for i, b := range c.Backends {
		checkPosition(fmt.Sprintf("backends[%d].injection.position", i), b.Injection.Position)
	}
	for i, m := range rt.Models {
		if _, err := path.Match(m.Pattern, ""); err != nil || m.Pattern == "" {
			add(fmt.Sprintf("retrieval.models[%d].pattern", i), "%q is not a valid glob pattern", m.Pattern)
		}
	}
	for i, k := range c.AdminKeys {
		if strings.TrimSpace(string(k)) == "" {
			add(fmt.Sprintf("admin_keys[%d]", i), "must not be empty")
		}
	}
	names := map[string]int{}
	for i, b := range c.Backends {
		p := fmt.Sprintf("backends[%d]", i)
		if err := b.validate(); err != nil {
			var ps problems
			if errors.As(err, &ps) {
				for _, q := range ps {
					add(p+"."+q.Path, "%s", q.Msg)
				}
			}
		}
		if b.Name != "" {
			if j, dup := names[b.Name]; dup {
				add(p+".name", "%q is also the name of backends[%d]", b.Name, j)
			}
			names[b.Name] = i
		}
		if b.Timeout < 0 {
			add(p+".timeout", "must not be negative")
		}
		if b.RetryBackoff < 0 {
			add(p+".retry_backoff", "must not be negative")
		}
		if b.ContextTokens < 0 {
			add(p+".context_tokens", "must not be negative")
		}
	}
	for i, b := range c.Backends {
		for j, f := range b.Fallbacks {
			if _, ok := names[f]; !ok {
				add(fmt.Sprintf("backends[%d].fallbacks[%d]", i, j), "no backend is named %q", f)
			} else if f == b.Name {
				add(fmt.Sprintf("backends[%d].fallbacks[%d]", i, j), "a backend cannot fall back to itself")
			}
		}
	}
	for i, k := range c.APIKeys {
		if strings.TrimSpace(string(k)) == "" {
			add(fmt.Sprintf("api_keys[%d]", i), "must not be empty")
		}
	}
	c.validateNetworks(add)
	return errors.Join(errs...)
}

type problems []Problem

func (ps problems) Error() string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.Error()
	}
	return strings.Join(s, "; ")
}

func (b Backend) validate() error {
	var ps problems
	switch b.Type {
	case TypeOpenAI, TypeOllama, TypeAnthropic:
	case "":
		ps = append(ps, Problem{Path: "type", Msg: "must be openai, ollama or anthropic"})
	default:
		ps = append(ps, Problem{Path: "type", Msg: fmt.Sprintf("%q is not openai, ollama or anthropic", b.Type)})
	}
	if b.URL == "" {
		ps = append(ps, Problem{Path: "url", Msg: "must not be empty"})
	} else if u, err := url.Parse(b.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		ps = append(ps, Problem{Path: "url", Msg: fmt.Sprintf("%q is not an http(s) URL with a host", b.URL)})
	}
	for i, m := range b.Models {
		if _, err := path.Match(m, ""); err != nil || m == "" {
			ps = append(ps, Problem{Path: fmt.Sprintf("models[%d]", i), Msg: fmt.Sprintf("%q is not a valid glob pattern", m)})
		}
	}
	switch b.Responses {
	case "", ResponsesNative, ResponsesTranslate:
		if b.Responses == ResponsesNative && b.Type != TypeOpenAI {
			ps = append(ps, Problem{Path: "responses", Msg: "native needs an openai backend that serves /responses"})
		}
	default:
		ps = append(ps, Problem{Path: "responses", Msg: fmt.Sprintf("%q is not native or translate", b.Responses)})
	}
	if len(ps) == 0 {
		return nil
	}
	return ps
}

// ParsePrefixes parses trusted_proxies: IP addresses (a /32 or /128) and
// CIDR prefixes.
func ParsePrefixes(list []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for i, v := range list {
		if p, err := netip.ParsePrefix(v); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(v)
		if err != nil {
			return nil, fmt.Errorf("item %d: %q is neither an IP address nor a CIDR prefix (like 10.0.0.0/8)", i, v)
		}
		a = a.Unmap()
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}
