package main

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"time"

	"github.com/dso-proxy/dso/gpuidx"
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
	Tally(ctx context.Context, experienceID string) (store.Tally, error)
}

// netState is what the publisher keeps beside the log: which experiences
// came from other nodes, and the network's id of each it holds.
type netState interface {
	Admitted(ctx context.Context, storeID string) (bool, error)
	Know(ctx context.Context, xid [32]byte, storeID string) error
	KnownAs(ctx context.Context, storeID string) ([32]byte, bool, error)
}

// publisher appends the store's experiences in shared domains to the
// node's log: all of them at start, then what the change log names; and
// the node's grade of each experience it holds from the network or
// shares, from its users' votes.
type publisher struct {
	st     sharedStore
	log    *network.Log
	netID  string
	shares []string // normalised domain prefixes
	logger *slog.Logger
	// state says which experiences were admitted from other nodes' logs:
	// they are not this node's to sign (it would count twice in the
	// median), only to vote on. Nil: none, and no votes.
	state netState
	votes bool // publish votes
	// selfVote counts the node's own vote in its tally of the network's
	// votes, as the nodes following it do. Nil: not counted.
	selfVote func(context.Context, network.Vote) error
	// admitted reports experiences admitted from other nodes' logs, on
	// any network the node is in (nil: state's, of this network).
	admitted func(ctx context.Context, id string) (bool, error)
	// noCodes publishes text alone: the network lifts with another seed
	// than the library's codes were made with, so they are not its codes.
	noCodes bool
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
		if gpuidx.DomainMatch(s, d) {
			return true
		}
	}
	return false
}

// theirs reports whether the experience id came from another node.
func (p *publisher) theirs(ctx context.Context, id string) (bool, error) {
	switch {
	case p.admitted != nil:
		return p.admitted(ctx, id)
	case p.state != nil:
		return p.state.Admitted(ctx, id)
	}
	return false, nil
}

// record maps a stored experience to what the network carries; ok is
// false for what is not shared or cannot be.
func (p *publisher) record(ctx context.Context, e store.Experience) (network.Experience, bool) {
	if e.Status == store.StatusRetired || !p.shared(e.Domain) {
		return network.Experience{}, false
	}
	if theirs, err := p.theirs(ctx, e.ID); theirs || err != nil {
		if err != nil {
			p.warn(ctx, err)
		}
		return network.Experience{}, false
	}
	ne := network.Experience{Network: p.netID, Domain: store.NormalizeDomain(e.Domain), Text: e.Text,
		Confidence: e.Confidence, Time: e.CreatedAt}
	// A code of the keyed text (question and lesson) is not a code of the
	// text the record carries: a receiver would take it for a poisoned one.
	if len(e.Code) > 0 && e.Space != "" && e.Key == "" && !p.noCodes {
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
	var votes []network.Vote
	err = p.st.EachExperience(ctx, func(e store.Experience) error {
		if ne, ok := p.record(ctx, e); ok {
			batch = append(batch, ne)
		}
		if v, ok := p.vote(ctx, e); ok {
			votes = append(votes, v)
		}
		if len(batch)+len(votes) < publishBatch {
			return nil
		}
		err := p.publish(ctx, batch, votes)
		batch, votes = batch[:0], votes[:0]
		return err
	})
	if err == nil {
		err = p.publish(ctx, batch, votes)
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
		var votes []network.Vote
		for _, e := range es {
			if ne, ok := p.record(ctx, e); ok {
				batch = append(batch, ne)
			}
			if v, ok := p.vote(ctx, e); ok {
				votes = append(votes, v)
			}
		}
		if err := p.publish(ctx, batch, votes); err != nil {
			return cursor, err
		}
		cursor = last
	}
}

// publish appends batch and votes, skipping records the network format
// refuses (logged) rather than stopping the node's whole log.
func (p *publisher) publish(ctx context.Context, batch []network.Experience, votes []network.Vote) error {
	if err := p.know(ctx, batch); err != nil {
		return err
	}
	if len(votes) > 0 {
		k, err := p.log.Vote(ctx, votes)
		if err != nil {
			return err
		}
		if k > 0 {
			p.logger.InfoContext(ctx, "published votes", "network", p.netID, "added", k, "size", p.log.Size())
		}
		for _, v := range votes {
			if p.selfVote == nil {
				break
			}
			if err := p.selfVote(ctx, v); err != nil {
				return err
			}
		}
	}
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

// know notes the network's id of each of the node's own shared
// experiences, which the votes of other nodes name.
func (p *publisher) know(ctx context.Context, batch []network.Experience) error {
	if p.state == nil {
		return nil
	}
	for _, e := range batch {
		xid := network.ExperienceID(e.Network, e.Domain, e.Text)
		if err := p.state.Know(ctx, xid, store.ExperienceID(e.Domain, e.Text)); err != nil {
			return err
		}
	}
	return nil
}

// vote maps the votes of the node's users on e to the node's one vote on
// the network: its approval as a grade in [-100, 100]. ok is false for an
// experience the network does not know from this node or others, or one
// without votes.
func (p *publisher) vote(ctx context.Context, e store.Experience) (network.Vote, bool) {
	if !p.votes || p.state == nil {
		return network.Vote{}, false
	}
	xid, known, err := p.state.KnownAs(ctx, e.ID)
	if err == nil && !known && p.shared(e.Domain) {
		// The node's own, unless another network brought it.
		var theirs bool
		if theirs, err = p.theirs(ctx, e.ID); err == nil && !theirs {
			xid, known = network.ExperienceID(p.netID, store.NormalizeDomain(e.Domain), e.Text), true
		}
	}
	if err != nil || !known {
		if err != nil {
			p.warn(ctx, err)
		}
		return network.Vote{}, false
	}
	t, err := p.st.Tally(ctx, e.ID)
	if err != nil || t.Up+t.Down == 0 {
		if err != nil {
			p.warn(ctx, err)
		}
		return network.Vote{}, false
	}
	grade := int8(math.Round(200*float64(t.Up)/float64(t.Up+t.Down) - 100))
	return network.Vote{Network: p.netID, Experience: xid, Grade: grade, Time: time.Now()}, true
}
