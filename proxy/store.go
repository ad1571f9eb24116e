package proxy

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/dso-proxy/dso/library"
	"github.com/dso-proxy/dso/store"
)

// Store is what the proxy reads and writes in the library's store beside
// what the library does for it: traces, and experiences for the API.
// store.SQLite and store.Redis implement it.
type Store interface {
	PutTraces(ctx context.Context, ts []store.Trace) error
	GetTrace(ctx context.Context, id string) (store.Trace, error)
	GetExperience(ctx context.Context, id string) (store.Experience, error)
	ListExperiences(ctx context.Context, o store.ListOptions) ([]store.Experience, string, error)
	ListTraces(ctx context.Context, o store.TraceListOptions) ([]store.ListedTrace, string, error)
	Tally(ctx context.Context, experienceID string) (store.Tally, error)
}

// storeOf returns the library's store as the proxy uses it. New checks it
// once, so a store without these calls dies at startup, not per request.
func storeOf(lib *library.Library) Store {
	st, ok := lib.Store().(Store)
	if !ok {
		panic(fmt.Sprintf("proxy: the library's store (%T) cannot store traces", lib.Store()))
	}
	return st
}

// storeRetryAfter is the Retry-After, in seconds, of a 503 for a store
// that could not be reached.
const storeRetryAfter = 2

// unavailableError is the 503 for a store that did not answer: nothing
// was acknowledged, so the client may send the same request again.
func unavailableError(err error) *HTTPError {
	return &HTTPError{Status: http.StatusServiceUnavailable, Type: "api_error", Code: "store_unavailable",
		Msg: "the experience store is unavailable; nothing was recorded, retry later", Err: err, RetryAfter: storeRetryAfter}
}

// pinger is a store that can say whether it answers (store.Redis can; an
// embedded SQLite file always does).
type pinger interface {
	Ping(ctx context.Context) error
}

// storeHealth is the store's part of /readyz, for a store that can be
// away: whether it answers, and why not. Like retrieval it does not decide
// readiness: without the store chat goes on, uninjected, and writes are
// refused with 503. Nil for a store that cannot be away.
func storeHealth(ctx context.Context, lib *library.Library, timeout time.Duration) map[string]any {
	p, ok := lib.Store().(pinger)
	if !ok {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := p.Ping(ctx); err != nil {
		return map[string]any{"state": reasonStoreUnavailable, "reason": err.Error(),
			"effect": "chat goes through without injection (X-DSO-Degraded: store_unavailable); experience writes and feedback get 503, traces are kept in memory until it answers"}
	}
	return map[string]any{"state": "ok"}
}
