package library

import (
	"context"
	"fmt"

	"github.com/dso-proxy/dso/store"
)

// voteStore is what Modify needs beyond Store: an experience's votes, to
// move them (store.SQLite and store.Redis keep them).
type voteStore interface {
	Votes(ctx context.Context, experienceID string) ([]store.Vote, error)
	PutVote(ctx context.Context, v store.Vote) error
}

// Modify replaces the text of experience id with text and keeps what the
// lesson has earned: its domain, confidence, prior, status and provenance
// go with the new text, and so does every vote on it. An experience's id is
// the hash of its domain and text, so a new text has a new id (returned),
// and the old record is deleted once the new one holds the votes. A text
// that normalises to the one stored changes nothing.
//
// Modify is safe to repeat after a stop part-way: the new record and its
// votes are written idempotently, then the old one deleted. Once the old
// record is gone, Modify returns an error wrapping store.ErrNotFound.
func (l *Library) Modify(ctx context.Context, id, text string) (store.Experience, error) {
	vs, ok := l.store.(voteStore)
	if !ok {
		return store.Experience{}, fmt.Errorf("library: modify: the store (%T) keeps no votes", l.store)
	}
	got, err := l.store.GetExperiences(ctx, []string{id})
	if err != nil {
		return store.Experience{}, fmt.Errorf("library: modify: %w", err)
	}
	if len(got) == 0 {
		return store.Experience{}, fmt.Errorf("library: modify: %w", store.ErrNotFound)
	}
	old := got[0]
	if store.ExperienceID(old.Domain, text) == old.ID {
		return old, nil
	}
	votes, err := vs.Votes(ctx, id)
	if err != nil {
		return store.Experience{}, fmt.Errorf("library: modify: %w", err)
	}
	e, _, err := l.Add(ctx, store.Experience{
		Text: text, Key: old.Key, Domain: old.Domain, Confidence: old.Confidence, Prior: old.Prior, Status: old.Status,
		SourceModel: old.SourceModel, SourceNode: old.SourceNode, TraceID: old.TraceID,
	})
	if err != nil {
		return store.Experience{}, fmt.Errorf("library: modify: %w", err)
	}
	for _, v := range votes {
		v.ExperienceID = e.ID
		if err := vs.PutVote(ctx, v); err != nil {
			return store.Experience{}, fmt.Errorf("library: modify: moving votes: %w", err)
		}
	}
	if err := l.Delete(ctx, id); err != nil {
		return store.Experience{}, fmt.Errorf("library: modify: %w", err)
	}
	return e, nil
}
