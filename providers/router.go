package providers

import (
	"context"
	"fmt"
	"net/http"
	"path"
	"sync"
	"time"

	"github.com/dso-proxy/dso/config"
	"github.com/ollama/ollama/api"
)

// Backend is what the Router holds: *OpenAI, *Ollama or *Anthropic.
type Backend interface {
	Name() string
	Type() string
	Config() config.Backend
	Embeddings(ctx context.Context, body []byte, hdr http.Header) (*http.Response, error)
	Embed(ctx context.Context, model string, texts []string) ([][]float32, error)
	Models(ctx context.Context) ([]Model, error)
	Ping(ctx context.Context) error
}

var (
	_ Backend = (*OpenAI)(nil)
	_ Backend = (*Ollama)(nil)
	_ Backend = (*Anthropic)(nil)
)

// Model is one model a backend serves.
type Model struct {
	ID      string
	OwnedBy string
	Created time.Time
	Size    int64            // Ollama only
	Digest  string           // Ollama only
	Details api.ModelDetails // Ollama only
	Backend string           // set by Router.Models
}

// New returns the backend for cfg.
func New(cfg config.Backend, hc *http.Client) (Backend, error) {
	switch cfg.Type {
	case config.TypeOpenAI:
		return NewOpenAI(cfg, hc)
	case config.TypeOllama:
		return NewOllama(cfg, hc)
	case config.TypeAnthropic:
		return NewAnthropic(cfg, hc)
	}
	return nil, fmt.Errorf("backend %s: unknown type %q", cfg.Name, cfg.Type)
}

// Router picks backends by model name.
type Router struct {
	backends []Backend
	byName   map[string]Backend
}

// NewRouter builds a backend for every configured one, in order.
func NewRouter(cfgs []config.Backend, hc *http.Client) (*Router, error) {
	r := &Router{byName: map[string]Backend{}}
	for _, c := range cfgs {
		b, err := New(c, hc)
		if err != nil {
			return nil, err
		}
		r.backends = append(r.backends, b)
		r.byName[c.Name] = b
	}
	return r, nil
}

// Backends returns every backend in configured order.
func (r *Router) Backends() []Backend { return r.backends }

// Serves reports whether b's model patterns match model.
func Serves(b Backend, model string) bool {
	pats := b.Config().Models
	if len(pats) == 0 {
		return true
	}
	for _, p := range pats {
		if ok, _ := path.Match(p, model); ok {
			return true
		}
	}
	return false
}

// Route returns the backend for model followed by its fallbacks, in the
// order to try them. It wraps ErrNoBackend when none serves the model.
func (r *Router) Route(model string) ([]Backend, error) {
	for _, b := range r.backends {
		if !Serves(b, model) {
			continue
		}
		chain := []Backend{b}
		seen := map[string]bool{b.Name(): true}
		for _, f := range b.Config().Fallbacks {
			if fb, ok := r.byName[f]; ok && !seen[f] {
				seen[f] = true
				chain = append(chain, fb)
			}
		}
		return chain, nil
	}
	return nil, fmt.Errorf("model %q: %w", model, ErrNoBackend)
}

// Models lists models over all backends, each tagged with its backend and
// kept only where the router would send that model to that backend. A
// backend that fails to list is reported in errs and skipped.
func (r *Router) Models(ctx context.Context) (models []Model, errs []error) {
	// Every backend is asked at once: one slow backend costs the caller
	// its own wait, not the sum of all.
	type listing struct {
		ms  []Model
		err error
	}
	lists := make([]listing, len(r.backends))
	var wg sync.WaitGroup
	for i, b := range r.backends {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lists[i].ms, lists[i].err = b.Models(ctx)
		}()
	}
	wg.Wait()
	seen := map[string]bool{}
	for i, b := range r.backends {
		ms, err := lists[i].ms, lists[i].err
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, m := range ms {
			if seen[m.ID] {
				continue
			}
			if chain, err := r.Route(m.ID); err != nil || chain[0] != b {
				continue
			}
			seen[m.ID] = true
			m.Backend = b.Name()
			models = append(models, m)
		}
	}
	return models, errs
}
