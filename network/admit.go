package network

import (
	"context"
	"errors"
	"strings"

	"github.com/dso-proxy/dso/store"
)

// Outcomes of admitting a record, as counted per followed log.
const (
	Admitted     = "admitted"
	Quarantine   = "quarantined"
	Votes        = "votes"         // not admitted yet: voting is the next layer
	WrongNetwork = "wrong_network" // a record of another network in this one's log
	Unembeddable = "unembeddable"  // text the library cannot embed (blank)
)

// Library is what admission writes to: *library.Library, whose Add embeds
// the text itself in the local space (a record's code is never trusted),
// and skips a duplicate.
type Library interface {
	Add(ctx context.Context, e store.Experience) (store.Experience, bool, error)
	Update(ctx context.Context, id string, u store.Update) (store.Experience, error)
}

// Admitter admits verified records of one network into the local library.
type Admitter struct {
	Network string
	Library Library
	State   *State
}

// Admit admits r and says how. A trusted author's experience enters the
// library, re-embedded here, with the median confidence of every author
// that published it (once per author); an untrusted author's is
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
	case !trusted:
		if err := a.State.Quarantine(ctx, r.Author, *e); err != nil && !errors.Is(err, ErrQuarantineFull) {
			return "", err
		}
		return Quarantine, nil
	}
	xid := ExperienceID(e.Network, e.Domain, e.Text)
	cs, err := a.State.Endorse(ctx, xid, r.Author, e.Confidence)
	if err != nil {
		return "", err
	}
	conf := Median(cs)
	got, created, err := a.Library.Add(ctx, store.Experience{
		Text: e.Text, Domain: e.Domain, Confidence: conf, Status: store.StatusActive,
		SourceNode: r.Author, CreatedAt: e.Time,
	})
	if err != nil {
		return "", err
	}
	if created {
		return Admitted, a.State.MarkAdmitted(ctx, got.ID, xid)
	}
	// Known already: this node's own lesson keeps its own confidence; one
	// it admitted takes the new median.
	mine, err := a.State.Admitted(ctx, got.ID)
	if err != nil || !mine || got.Confidence == conf {
		return Admitted, err
	}
	_, err = a.Library.Update(ctx, got.ID, store.Update{Confidence: &conf})
	return Admitted, err
}
