package network

import (
	"context"
	"errors"
	"fmt"

	"github.com/dso-proxy/dso/store"
)

// Voting defaults.
const (
	// DefaultRetireBelow is the approval under which an experience is
	// retired network-wide.
	DefaultRetireBelow = 0.66
	// DefaultMinVoteWeight is the trust weight the votes on an experience
	// must carry together before they can retire it: two nodes of full
	// weight, so that no single node, nor all the keys it vouches for,
	// retires anything alone.
	DefaultMinVoteWeight = 2.0
)

// Outcomes of a vote, counted per followed log beside Admitted.
const (
	Voted = "voted"
	// VoteUnweighted: kept, from a voter without standing (no weight).
	VoteUnweighted = "vote_unweighted"
	VoteStale      = "vote_stale" // an older vote than the one kept
	VotesFull      = "votes_full" // the voter's votes at MaxVotesPerVoter
	Vouched        = "vouched"
	// VouchesFull: the voucher's vouches at MaxVouchRows.
	VouchesFull = "vouches_full"
)

// VoteLibrary is what voting retires experiences in: *library.Library
// with its store's reads.
type VoteLibrary interface {
	GetExperience(ctx context.Context, id string) (store.Experience, error)
	Update(ctx context.Context, id string, u store.Update) (store.Experience, error)
}

// Voting weighs the votes of one network and retires, here, what the
// network disapproves of.
type Voting struct {
	State   *State
	Library VoteLibrary // nil: votes are kept and weighed, nothing retired
	// Weight is a voter's trust weight in [0, 1], by verifier key.
	Weight func(voter string) float64
	// Root is the root of trust a voter's standing comes from (see
	// Syncer.Root); nil: every voter is a root of its own.
	Root func(voter string) string
	// RetireBelow and MinWeight: see DefaultRetireBelow and
	// DefaultMinVoteWeight (used for 0).
	RetireBelow float64
	MinWeight   float64
}

// Verdict is what the votes on one experience add up to.
type Verdict struct {
	// Approval is the trust-weighted mean grade mapped to [0, 1] (a
	// grade of -100 is 0, 100 is 1); Weight the voters' weight together.
	Approval float64
	Weight   float64
	Voters   int // with any weight
	// Roots is how many independent roots of trust the voters' weight
	// comes from.
	Roots  int
	Retire bool
}

// Tally weighs ballots. Voters without weight do not count at all; each
// voter counts once (its latest vote), with at most weight 1; and the
// voters whose standing comes from one root of trust (the root and the
// keys it vouches for, at any depth) weigh together no more than the
// root does, 1: a root cannot outvote the network by vouching for keys.
// Retiring takes votes from two independent roots at least, whatever
// MinWeight is.
func (v *Voting) Tally(ballots []Ballot) Verdict {
	type share struct{ weight, graded float64 }
	var vd Verdict
	byRoot := map[string]*share{}
	var order []string
	for _, b := range ballots {
		w := min(1, v.Weight(b.Voter))
		if !(w > 0) {
			continue
		}
		vd.Voters++
		root := b.Voter
		if v.Root != nil {
			root = v.Root(b.Voter)
		}
		sh := byRoot[root]
		if sh == nil {
			sh = &share{}
			byRoot[root] = sh
			order = append(order, root)
		}
		sh.weight += w
		sh.graded += w * (float64(b.Grade) + 100) / 200
	}
	var sum float64
	for _, root := range order { // in ballot order: the same sums every time
		sh := byRoot[root]
		scale := 1.0
		if sh.weight > 1 {
			scale = 1 / sh.weight
		}
		vd.Weight += sh.weight * scale
		sum += sh.graded * scale
	}
	vd.Roots = len(order)
	if vd.Weight > 0 {
		vd.Approval = sum / vd.Weight
	}
	below, minW := v.RetireBelow, v.MinWeight
	if below <= 0 {
		below = DefaultRetireBelow
	}
	if minW <= 0 {
		minW = DefaultMinVoteWeight
	}
	vd.Retire = vd.Weight >= minW-1e-9 && vd.Roots >= 2 && vd.Approval < below
	return vd
}

// Vote keeps voter's vote and applies the experience's new verdict.
func (v *Voting) Vote(ctx context.Context, voter string, vote Vote) (string, error) {
	changed, err := v.State.SaveVote(ctx, voter, vote)
	switch {
	case errors.Is(err, ErrVotesFull):
		return VotesFull, nil
	case err != nil:
		return "", err
	case !changed:
		return VoteStale, nil
	}
	return Voted, v.Apply(ctx, vote.Experience)
}

// Apply retires the experience xid here if its votes say so, and makes
// active again one the votes retired before and no longer do. An
// experience the node retired itself is left as it is.
//
// The mark (State.Retired) says the network's votes retired xid here. It
// is set before the library retires the experience and cleared after the
// library makes it active again, so a failed update or a crash between the
// two leaves a mark the library disagrees with, never a retirement the
// node would take for its own; the next Apply or Reapply mends it.
func (v *Voting) Apply(ctx context.Context, xid [32]byte) error {
	if v.Library == nil {
		return nil
	}
	id, err := v.State.StoreID(ctx, xid)
	if err != nil || id == "" {
		return err // not held here (yet): applied when it is admitted
	}
	ballots, err := v.State.Ballots(ctx, xid)
	if err != nil {
		return err
	}
	vd := v.Tally(ballots)
	was, err := v.State.Retired(ctx, xid)
	if err != nil || !was && !vd.Retire {
		return err // the network never retired it: whatever the node did stands
	}
	e, err := v.Library.GetExperience(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("network: apply votes: %w", err)
	}
	if !vd.Retire {
		if e.Status == store.StatusRetired {
			if err := v.update(ctx, id, store.StatusActive); err != nil {
				return err
			}
		}
		_, err := v.State.SetRetired(ctx, xid, false)
		return err
	}
	if !was {
		if e.Status == store.StatusRetired {
			return nil // retired here already, not by the network
		}
		if _, err := v.State.SetRetired(ctx, xid, true); err != nil {
			return err
		}
	}
	if e.Status == store.StatusRetired {
		return nil
	}
	return v.update(ctx, id, store.StatusRetired)
}

// update sets the library's status of the experience id.
func (v *Voting) update(ctx context.Context, id string, status store.Status) error {
	_, err := v.Library.Update(ctx, id, store.Update{Status: &status})
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("network: apply votes: %w", err)
	}
	return nil
}

// Reapply applies the verdict of every experience with votes: weights
// change when vouches do.
func (v *Voting) Reapply(ctx context.Context) error {
	var after []byte
	for {
		xids, err := v.State.VotedOn(ctx, after, 256)
		if err != nil || len(xids) == 0 {
			return err
		}
		for _, x := range xids {
			if err := v.Apply(ctx, x); err != nil {
				return err
			}
		}
		last := xids[len(xids)-1]
		after = last[:]
	}
}
