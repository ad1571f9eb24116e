package library

import (
	"context"
	"sync"

	"github.com/dso-proxy/dso/store"
)

// recent keeps the experiences searches returned lately, so that a search
// loads from the store only those it has not seen since they last changed:
// a store read is most of a search's cost at 100,000 experiences. Every
// path that changes an experience in the indexes (the library's own
// writes, the change-log follower, re-embedding) drops it here too, so the
// cache is exactly as fresh as the index it sits beside.
type recent struct {
	mu  sync.Mutex
	max int
	m   map[string]store.Experience
	// gen counts invalidations: a load that began before one may have
	// read what it invalidated, so its records are not kept.
	gen uint64
}

func newRecent(max int) *recent {
	return &recent{max: max, m: make(map[string]store.Experience, min(max, 1024))}
}

// get returns the experiences of ids, from the cache where it has them and
// from load otherwise, in no particular order; missing ones are left out.
func (r *recent) get(ctx context.Context, ids []string, load func(context.Context, []string) ([]store.Experience, error)) ([]store.Experience, error) {
	if r.max <= 0 {
		return load(ctx, ids)
	}
	out := make([]store.Experience, 0, len(ids))
	var miss []string
	r.mu.Lock()
	gen := r.gen
	for _, id := range ids {
		if e, ok := r.m[id]; ok {
			out = append(out, e)
		} else {
			miss = append(miss, id)
		}
	}
	r.mu.Unlock()
	if len(miss) == 0 {
		return out, nil
	}
	got, err := load(ctx, miss)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	if r.gen == gen {
		for _, e := range got {
			if len(r.m) >= r.max {
				for k := range r.m { // any one: the map's order is random enough
					delete(r.m, k)
					break
				}
			}
			r.m[e.ID] = e
		}
	}
	r.mu.Unlock()
	return append(out, got...), nil
}

// drop forgets the experiences of ids.
func (r *recent) drop(ids ...string) {
	r.mu.Lock()
	r.gen++
	for _, id := range ids {
		delete(r.m, id)
	}
	r.mu.Unlock()
}

// clear forgets everything.
func (r *recent) clear() {
	r.mu.Lock()
	r.gen++
	clear(r.m)
	r.mu.Unlock()
}
