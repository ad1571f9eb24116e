package main

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"time"

	"github.com/dso-proxy/dso/network"
	"github.com/dso-proxy/dso/store"
)

// publishInterval is how often serve reads the store's change log for
// experiences to publish: one indexed read when nothing changed.
const publishInterval = 2 * time.Second

// publishBatch bounds the experiences published in one append.
const publishBatch = 256

// sharedStore is what the publisher reads from the store.
type sharedStore interface {
	EachExperience(ctx context.Context, fn func(store.Experience) error) error
	LastChange(ctx context.Context) (int64, error)
	Changes(ctx context.Context, after int64, limit int) ([]string, int64, error)
	GetExperiences(ctx context.Context, ids []string) ([]store.Experience, error)
}

// publisher appends the store's experiences in shared domains to the
// node's log: all of them at start, then what the change log names.
type publisher struct {
	st     sharedStore
	log    *network.Log
	netID  string
	shares []string // normalised domain prefixes
	logger *slog.Logger
	// admitted reports experiences admitted from other nodes' logs: they
	// are not this node's to sign (it would count twice in the median).
	// Nil: none.
	admitted func(ctx context.Context, id string) (bool, error)
}

func newPublisher(st sharedStore, l *network.Log, netID string, shares []string, logger *slog.Logger) *publisher {
	p := &publisher{st: st, log: l, netID: netID, logger: logger}
	for _, s := range shares {
		p.shares = append(p.shares, store.NormalizeDomain(s))
	}
	return p
}

// shared reports whether domain d is one of the shared prefixes or below
// one ("code" shares "code", "code.go" and "code/go", not "codex").
func (p *publisher) shared(d string) bool {
	d = store.NormalizeDomain(d)
	for _, s := range p.shares {
		if d == s || strings.HasPrefix(d, s+".") || strings.HasPrefix(d, s+"/") {
			return true
		}
	}
	return false
}

// record maps a stored experience to what the network carries; ok is
// false for what is not shared or cannot be.
func (p *publisher) record(ctx context.Context, e store.Experience) (network.Experience, bool) {
	if e.Status == store.StatusRetired || !p.shared(e.Domain) {
		return network.Experience{}, false
	}
	if p.admitted != nil {
		if theirs, err := p.admitted(ctx, e.ID); theirs || err != nil {
			if err != nil {
				p.warn(ctx, err)
			}
			return network.Experience{}, false
		}
	}
	ne := network.Experience{Network: p.netID, Domain: store.NormalizeDomain(e.Domain), Text: e.Text,
		Confidence: e.Confidence, Time: e.CreatedAt}
	// A code of the keyed text (question and lesson) is not a code of the
	// text the record carries: a receiver would take it for a poisoned one.
	if len(e.Code) > 0 && e.Space != "" && e.Key == "" {
		ne.Space, ne.Code = e.Space, e.Code
	}
	return ne, true
}

// run publishes until ctx is done.
func (p *publisher) run(ctx context.Context) {
	cursor, err := p.all(ctx)
	if err != nil {
		p.warn(ctx, err)
	}
	t := time.NewTicker(publishInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		next, err := p.changes(ctx, cursor)
		if errors.Is(err, store.ErrChangesPruned) {
			// Changes were dropped before they were read: start over;
			// what is published already is skipped.
			next, err = p.all(ctx)
		}
		if err != nil {
			p.warn(ctx, err)
			continue
		}
		cursor = next
	}
}

func (p *publisher) warn(ctx context.Context, err error) {
	if ctx.Err() == nil {
		p.logger.WarnContext(ctx, "publishing shared experiences", "err", err.Error())
	}
}

// all publishes every shared experience and returns the change-log cursor
// it covers.
func (p *publisher) all(ctx context.Context) (int64, error) {
	cursor, err := p.st.LastChange(ctx)
	if err != nil {
		return 0, err
	}
	var batch []network.Experience
	err = p.st.EachExperience(ctx, func(e store.Experience) error {
		if ne, ok := p.record(ctx, e); ok {
			batch = append(batch, ne)
		}
		if len(batch) < publishBatch {
			return nil
		}
		err := p.publish(ctx, batch)
		batch = batch[:0]
		return err
	})
	if err == nil {
		err = p.publish(ctx, batch)
	}
	return cursor, err
}

// changes publishes the shared experiences changed after cursor.
func (p *publisher) changes(ctx context.Context, cursor int64) (int64, error) {
	for {
		ids, last, err := p.st.Changes(ctx, cursor, publishBatch)
		if err != nil || len(ids) == 0 {
			return cursor, err
		}
		es, err := p.st.GetExperiences(ctx, ids)
		if err != nil {
			return cursor, err
		}
		var batch []network.Experience
		for _, e := range es {
			if ne, ok := p.record(ctx, e); ok {
				batch = append(batch, ne)
			}
		}
		if err := p.publish(ctx, batch); err != nil {
			return cursor, err
		}
		cursor = last
	}
}

// publish appends batch, skipping records the network format refuses
// (logged) rather than stopping the node's whole log.
func (p *publisher) publish(ctx context.Context, batch []network.Experience) error {
	n, err := p.log.Publish(ctx, batch)
	if errors.Is(err, network.ErrMalformed) || errors.Is(err, network.ErrTooLarge) || errors.Is(err, network.ErrNonCanonical) {
		// One bad experience must not hold back the rest: one at a time.
		n = 0
		for _, e := range batch {
			k, err := p.log.Publish(ctx, []network.Experience{e})
			if err != nil {
				p.logger.WarnContext(ctx, "experience not publishable", "domain", e.Domain, "err", err.Error())
				continue
			}
			n += k
		}
		err = nil
	}
	if n > 0 {
		p.logger.InfoContext(ctx, "published experiences", "network", p.netID, "added", n, "size", p.log.Size())
	}
	return err
}
