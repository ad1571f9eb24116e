package network

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/dso-proxy/dso/compress"
	"github.com/dso-proxy/dso/store"
	"golang.org/x/mod/sumdb/note"
)

// Outcomes of admitting a record, as counted per followed log.
const (
	Admitted   = "admitted"
	Quarantine = "quarantined"
	// QuarantineFull counts the turns a log was held back at a record the
	// quarantine could not keep (see ErrQuarantineFull): the record is
	// not dropped but offered again, and the log not read past it.
	QuarantineFull = "quarantine_full"
	Votes          = "votes"         // not admitted yet: voting is the next layer
	WrongNetwork   = "wrong_network" // a record of another network in this one's log
	Unembeddable   = "unembeddable"  // text the library cannot embed (blank)
)

// Library is what admission writes to: *library.Library, whose Add embeds
// the text itself in the local space (a record's code is never trusted),
// and skips a duplicate; Code is its code of a text, when space is the
// library's (ok false, and nothing embedded, when not), against which a
// record's code is checked (see PoisonedCode). Withdraw reads and
// deletes what an author without standing left.
type Library interface {
	Add(ctx context.Context, e store.Experience) (store.Experience, bool, error)
	Update(ctx context.Context, id string, u store.Update) (store.Experience, error)
	Code(ctx context.Context, space, text string) (code compress.Code, ok bool, err error)
	GetExperience(ctx context.Context, id string) (store.Experience, error)
	Delete(ctx context.Context, id string) error
}

// CodedLibrary is a Library that can also add an experience with a code
// it did not make: *library.Library's AddCoded.
type CodedLibrary interface {
	AddCoded(ctx context.Context, e store.Experience, space string, code compress.Code) (store.Experience, bool, error)
}

// AdmittedByMajority is the outcome of an experience admitted, while the
// library could not embed, with the per-bit majority of the codes of at
// least MinMajority trusted authors.
const AdmittedByMajority = "admitted_majority_code"

// MinMajority is how many independent roots of trust a majority code
// needs codes from.
const MinMajority = 3

// ErrCannotEmbed wraps the wait of a record admitted by majority before
// enough codes have come: it is offered again on the next sync.
var ErrCannotEmbed = errors.New("network: the library cannot embed")

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
	// CannotEmbed reports an error of the library's that says it could
	// not embed (its embedder is down): admission then takes the per-bit
	// majority of the codes trusted authors published (see
	// AdmittedByMajority). Nil: such errors are retried like any other.
	CannotEmbed func(error) bool
	// Aggregate combines the authors' confidences: AggregateMedian (the
	// default, "") or AggregateTrimmedMean, weighted by trust.
	Aggregate string
	// Root is the root of trust an author's standing comes from, by
	// AuthorID (see Syncer.AuthorRoot): a majority code needs codes from
	// MinMajority independent roots. Nil: every author is its own.
	Root func(author string) string

	// mu keeps Withdraw apart from admissions, which run concurrently
	// with each other: an experience taken back must not be endorsed
	// anew halfway through.
	mu sync.RWMutex
}

// AuthorID names a record's signer by key name and hash, "name+hash" as
// in a verifier key: names alone are anyone's to take.
func AuthorID(r Record) string { return authorID(r.Author, r.KeyHash) }

// keyAuthorID is the AuthorID of the records v verifies.
func keyAuthorID(v note.Verifier) string { return authorID(v.Name(), v.KeyHash()) }

func authorID(name string, hash uint32) string { return fmt.Sprintf("%s+%08x", name, hash) }

// Admit admits r and says how. A trusted author's experience enters the
// library, re-embedded here, with the trust-weighted median (or trimmed
// mean) confidence of every author that published it (once per author);
// an untrusted author's is quarantined: kept in State and shown, never
// injected, so retrieval is untouched by it. An error is worth retrying
// (the store or the embedder failed, or the quarantine is full:
// ErrQuarantineFull).
func (a *Admitter) Admit(ctx context.Context, r Record, trusted bool) (string, error) {
	a.mu.RLock()
	defer a.mu.RUnlock()
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
	unchecked := err != nil && a.cannotEmbed(err)
	switch {
	case err != nil && !unchecked:
		return "", err
	case bad:
		return PoisonedCode, nil
	case !trusted:
		// A full quarantine is an error (ErrQuarantineFull): the record
		// waits in its log, offered again, until its author gains
		// standing or the quarantine has room.
		if err := a.State.Quarantine(ctx, AuthorID(r), *e); err != nil {
			return "", err
		}
		return Quarantine, nil
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
	admitted := Admitted
	add := store.Experience{Text: e.Text, Domain: e.Domain, Confidence: conf, Status: store.StatusActive,
		SourceNode: r.Author, CreatedAt: e.Time}
	var got store.Experience
	var created bool
	if !unchecked {
		got, created, err = a.Library.Add(ctx, add)
	}
	if unchecked || (err != nil && a.cannotEmbed(err)) {
		// The library cannot embed now: the per-bit majority of the codes
		// trusted authors published stands in for its own, once there are
		// enough of them; until then the record waits (the error).
		// One already in the library (admitted by majority from other
		// authors' records) is this one: its codes were dropped then.
		var gerr error
		switch got, gerr = a.Library.GetExperience(ctx, sid); {
		case gerr == nil:
			created, err = false, nil
		case errors.Is(gerr, store.ErrNotFound):
			got, created, err = a.byMajority(ctx, r, xid, add)
			admitted = AdmittedByMajority
		default:
			err = gerr
		}
	}
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
		return admitted, nil
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

// cannotEmbed reports whether err says the library could not embed.
func (a *Admitter) cannotEmbed(err error) bool {
	return a.CannotEmbed != nil && a.CannotEmbed(err)
}

// byMajority keeps r's code and, once MinMajority trusted authors have
// published codes of the experience in the library's space, adds it with
// their per-bit majority code. A minority of poisoned codes cannot move a
// majority of honest ones, bit for bit.
func (a *Admitter) byMajority(ctx context.Context, r Record, xid [32]byte, e store.Experience) (store.Experience, bool, error) {
	coded, ok := a.Library.(CodedLibrary)
	x := r.Experience
	if !ok || len(x.Code) == 0 {
		return store.Experience{}, false, fmt.Errorf("%w: and the record has no code to take instead", ErrCannotEmbed)
	}
	if err := a.State.SaveCode(ctx, xid, AuthorID(r), x.Space, x.Code); err != nil {
		return store.Experience{}, false, err
	}
	acs, err := a.State.Codes(ctx, xid, x.Space)
	if err != nil {
		return store.Experience{}, false, err
	}
	// One voice per root of trust: the keys one node vouches for are that
	// node, however many they are. Each root's own authors agree by their
	// majority first.
	byRoot := map[string][]compress.Code{}
	var roots []string
	for _, ac := range acs {
		c, err := compress.Decode(ac.Code)
		if err != nil {
			continue
		}
		root := ac.Author
		if a.Root != nil {
			root = a.Root(ac.Author)
		}
		if _, ok := byRoot[root]; !ok {
			roots = append(roots, root)
		}
		byRoot[root] = append(byRoot[root], c)
	}
	if len(roots) < MinMajority {
		return store.Experience{}, false, fmt.Errorf("%w: codes from %d of the %d independent roots a majority needs", ErrCannotEmbed, len(roots), MinMajority)
	}
	cs := make([]compress.Code, 0, len(roots))
	for _, root := range roots {
		cs = append(cs, compress.Majority(byRoot[root]))
	}
	got, created, err := coded.AddCoded(ctx, e, x.Space, compress.Majority(cs))
	if err != nil {
		return got, created, err
	}
	if created {
		// Checked against the library's own code once it can embed again
		// (Verify): colluding roots can agree on a forged code too.
		if err := a.State.MarkUnverified(ctx, got.ID, xid, x.Space); err != nil {
			return got, created, err
		}
	}
	return got, created, a.State.DropCodes(ctx, xid)
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
