package network

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/dso-proxy/dso/compress"
	"github.com/dso-proxy/dso/store"
)

// Outcomes of admitting a record, as counted per followed log.
const (
	Admitted   = "admitted"
	Quarantine = "quarantined"
	// QuarantineFull: dropped, the quarantine at MaxQuarantine.
	QuarantineFull = "quarantine_full"
	Votes          = "votes"         // not admitted yet: voting is the next layer
	WrongNetwork   = "wrong_network" // a record of another network in this one's log
	Unembeddable   = "unembeddable"  // text the library cannot embed (blank)
)

// Library is what admission writes to: *library.Library, whose Add embeds
// the text itself in the local space (a record's code is never trusted),
// and skips a duplicate; Code is its code of a text, when space is the
// library's (ok false, and nothing embedded, when not), against which a
// record's code is checked (see PoisonedCode).
type Library interface {
	Add(ctx context.Context, e store.Experience) (store.Experience, bool, error)
	Update(ctx context.Context, id string, u store.Update) (store.Experience, error)
	Code(ctx context.Context, space, text string) (code compress.Code, ok bool, err error)
}

// Admitter admits verified records of one network into the local library.
type Admitter struct {
	Network string
	Library Library
	State   *State
	// Voting, when set, applies the votes already kept on an experience
	// when it is admitted.
	Voting *Voting
	// Weight is an author's trust weight by AuthorID; nil weighs every
	// trusted author 1.
	Weight func(author string) float64
	// Aggregate combines the authors' confidences: AggregateMedian (the
	// default, "") or AggregateTrimmedMean, weighted by trust.
	Aggregate string
}

// AuthorID names a record's signer by key name and hash, "name+hash" as
// in a verifier key: names alone are anyone's to take.
func AuthorID(r Record) string { return fmt.Sprintf("%s+%08x", r.Author, r.KeyHash) }

// Admit admits r and says how. A trusted author's experience enters the
// library, re-embedded here, with the trust-weighted median (or trimmed
// mean) confidence of every author that published it (once per author);
// an untrusted author's is
// quarantined: kept in State and shown, never injected, so retrieval is
// untouched by it. An error is worth retrying (the store or the embedder
// failed).
func (a *Admitter) Admit(ctx context.Context, r Record, trusted bool) (string, error) {
	e := r.Experience
	switch {
	case r.Vote != nil:
		return Votes, nil
	case e == nil || e.Network != a.Network:
		return WrongNetwork, nil
	case strings.TrimSpace(e.Text) == "":
		return Unembeddable, nil
	}
	bad, err := poisoned(ctx, a.Library, e)
	switch {
	case err != nil:
		return "", err
	case bad:
		return PoisonedCode, nil
	case !trusted:
		err := a.State.Quarantine(ctx, AuthorID(r), *e)
		if errors.Is(err, ErrQuarantineFull) {
			return QuarantineFull, nil
		}
		return Quarantine, err
	}
	xid := ExperienceID(e.Network, e.Domain, e.Text)
	conf, err := a.endorse(ctx, xid, AuthorID(r), e.Confidence)
	if err != nil {
		return "", err
	}
	// Marked before it is added, so that the node's publisher, which may
	// read the new experience at once, never signs it as its own.
	sid := store.ExperienceID(e.Domain, e.Text)
	theirs, err := a.State.Admitted(ctx, sid)
	if err != nil {
		return "", err
	}
	if !theirs {
		if err := a.State.MarkAdmitted(ctx, sid, xid); err != nil {
			return "", err
		}
	}
	got, created, err := a.Library.Add(ctx, store.Experience{
		Text: e.Text, Domain: e.Domain, Confidence: conf, Status: store.StatusActive,
		SourceNode: r.Author, CreatedAt: e.Time,
	})
	if err != nil {
		if !theirs {
			err = errors.Join(err, a.State.Unmark(ctx, sid))
		}
		return "", err
	}
	if err := a.know(ctx, xid, got.ID); err != nil {
		return "", err
	}
	if created {
		return Admitted, nil
	}
	if !theirs {
		// The node had this lesson itself: it stays the node's, to
		// publish, with its own confidence.
		return Admitted, a.State.Unmark(ctx, sid)
	}
	if got.Confidence == conf {
		return Admitted, nil
	}
	_, err = a.Library.Update(ctx, got.ID, store.Update{Confidence: &conf})
	return Admitted, err
}

// endorse keeps author's confidence in xid and returns the aggregate of
// every author's, each at its weight now.
func (a *Admitter) endorse(ctx context.Context, xid [32]byte, author string, c float64) (float64, error) {
	authors, err := a.State.Endorse(ctx, xid, author, c)
	if err != nil {
		return 0, err
	}
	es := make([]Endorsement, 0, len(authors))
	for _, e := range authors {
		w := 1.0
		if a.Weight != nil && e.Author != author {
			// The author at hand has standing (it is being admitted);
			// the others' may have changed since they published.
			w = a.Weight(e.Author)
		}
		es = append(es, Endorsement{Confidence: e.Confidence, Weight: w})
	}
	return Aggregate(a.Aggregate, es)
}

// know notes the store's id of the network's experience xid, which votes
// name, and applies the votes kept on it.
func (a *Admitter) know(ctx context.Context, xid [32]byte, storeID string) error {
	if err := a.State.Know(ctx, xid, storeID); err != nil {
		return err
	}
	if a.Voting == nil {
		return nil
	}
	return a.Voting.Apply(ctx, xid)
}
