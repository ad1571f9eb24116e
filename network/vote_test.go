package network

import (
	"context"
	"errors"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/dso-proxy/dso/store"
)

// One trusted root and the 16 keys it vouches for (1/16 each) weigh, all
// voting together, what the root weighs alone: they cannot retire
// anything without a second, independent root.
func TestTallyCapsARootsSubtree(t *testing.T) {
	weights := map[string]float64{"R": 1, "S": 1, "T": 0.5}
	roots := map[string]string{"R": "R", "S": "S", "T": "S"}
	var ballots []Ballot
	ballots = append(ballots, Ballot{"R", Down})
	for i := range 16 {
		k := fmt.Sprintf("r%02d", i)
		weights[k], roots[k] = 1.0/16, "R"
		ballots = append(ballots, Ballot{k, Down})
	}
	v := &Voting{Weight: func(k string) float64 { return weights[k] }, Root: func(k string) string { return roots[k] }}
	if vd := v.Tally(ballots); vd.Retire || math.Abs(vd.Weight-1) > 1e-9 || vd.Roots != 1 {
		t.Errorf("one root and its 16 keys: %+v; want weight 1, one root, not retired", vd)
	}
	if vd := v.Tally(append(ballots, Ballot{"T", Down})); vd.Retire || math.Abs(vd.Weight-1.5) > 1e-9 || vd.Roots != 2 {
		t.Errorf("and half a second root: %+v; want weight 1.5, two roots, not retired", vd)
	}
	if vd := v.Tally(append(ballots, Ballot{"S", Down}, Ballot{"T", Down})); !vd.Retire || math.Abs(vd.Weight-2) > 1e-9 || vd.Roots != 2 {
		t.Errorf("and a second root with its key: %+v; want weight 2, two roots, retired", vd)
	}
	up := append(ballots, Ballot{"S", Up})
	if vd := v.Tally(up); math.Abs(vd.Approval-0.5) > 1e-9 || math.Abs(vd.Weight-2) > 1e-9 {
		t.Errorf("one root down (with its keys), one up: %+v; want approval 1/2 at weight 2", vd)
	}
	low := &Voting{Weight: v.Weight, Root: v.Root, MinWeight: 0.5}
	if vd := low.Tally(ballots); vd.Retire {
		t.Errorf("one root and its keys, with min weight 0.5: %+v; want not retired (one root)", vd)
	}
}

func TestTally(t *testing.T) {
	weights := map[string]float64{"A": 1, "B": 1, "C": 1, "half": 0.5, "big": 7}
	v := &Voting{Weight: func(k string) float64 { return weights[k] }}
	for _, tt := range []struct {
		name     string
		ballots  []Ballot
		approval float64
		weight   float64
		retire   bool
	}{
		{"no votes", nil, 0, 0, false},
		{"one node alone cannot retire", []Ballot{{"A", Down}}, 0, 1, false},
		{"two nodes down retire", []Ballot{{"A", Down}, {"B", Down}}, 0, 2, true},
		{"two down, one up: 1/3", []Ballot{{"A", Down}, {"B", Down}, {"C", Up}}, 1.0 / 3, 3, true},
		{"one down, two up: 2/3 stays", []Ballot{{"A", Down}, {"B", Up}, {"C", Up}}, 2.0 / 3, 3, false},
		{"weightless voters do not count", []Ballot{{"A", Up}, {"x1", Down}, {"x2", Down}, {"x3", Down}}, 1, 1, false},
		{"weight is capped at 1", []Ballot{{"big", Down}, {"A", Up}}, 0.5, 2, true},
		{"graded", []Ballot{{"A", 0}, {"half", 100}}, (0.5 + 0.5) / 1.5, 1.5, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			vd := v.Tally(tt.ballots)
			if math.Abs(vd.Approval-tt.approval) > 1e-9 || math.Abs(vd.Weight-tt.weight) > 1e-9 || vd.Retire != tt.retire {
				t.Errorf("verdict %+v; want approval %v, weight %v, retire %v", vd, tt.approval, tt.weight, tt.retire)
			}
		})
	}
}

// Votes retire an experience once enough weight disapproves, whether the
// votes came before the experience or after; better votes later bring it
// back; what the node retired itself stays retired.
func TestVotingRetiresAndRestores(t *testing.T) {
	ctx := context.Background()
	st := openTestState(t, t.TempDir())
	lib := &fakeLibrary{es: map[string]store.Experience{}}
	weights := map[string]float64{"A": 1, "B": 1, "C": 1}
	v := &Voting{State: st, Library: lib, Weight: func(k string) float64 { return weights[k] }}
	a := &Admitter{Network: "hanzo", Library: lib, State: st, Voting: v}
	text := "Close response bodies."
	xid := ExperienceID("hanzo", "code.go", text)
	sid := store.ExperienceID("code.go", text)
	vote := func(voter string, g int8, at time.Duration) string {
		t.Helper()
		out, err := v.Vote(ctx, voter, Vote{Network: "hanzo", Experience: xid, Grade: g, Time: t0.Add(at)})
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	status := func() store.Status { return lib.es[sid].Status }

	// Votes before the experience is here are kept, and applied on
	// admission.
	vote("A", Down, 0)
	vote("B", Down, 0)
	id := testIdentity(t, "nodeA")
	r, _ := Sign(id.Signer, Record{Experience: &Experience{Network: "hanzo", Domain: "code.go", Text: text, Confidence: 0.7, Time: t0}})
	if out, err := a.Admit(ctx, r, true); err != nil || out != Admitted {
		t.Fatalf("admit: %q, %v", out, err)
	}
	if status() != store.StatusRetired {
		t.Fatalf("status %q after two nodes voted it down; want retired", status())
	}
	if out := vote("B", Up, -time.Second); out != VoteStale {
		t.Errorf("an older vote: %q; want %q", out, VoteStale)
	}
	vote("B", Up, time.Second)
	vote("C", Up, time.Second)
	if status() != store.StatusActive {
		t.Errorf("status %q at 2/3 approval; want active again", status())
	}
	// Retired by the node itself: the network does not bring it back.
	retired := store.StatusRetired
	lib.Update(ctx, sid, store.Update{Status: &retired})
	vote("C", Down, 2*time.Second)
	vote("C", Up, 3*time.Second)
	if status() != store.StatusRetired {
		t.Errorf("status %q; the node's own retirement must stay", status())
	}
}

// failingLibrary is a fakeLibrary whose next fail Updates fail.
type failingLibrary struct {
	*fakeLibrary
	fail int
}

var errUpdateFailed = errors.New("update failed")

func (l *failingLibrary) Update(ctx context.Context, id string, u store.Update) (store.Experience, error) {
	if l.fail > 0 {
		l.fail--
		return store.Experience{}, errUpdateFailed
	}
	return l.fakeLibrary.Update(ctx, id, u)
}

// Issue 25: a verdict whose library update failed is applied again by the
// next Apply or Reapply, in both directions, though the mark already
// says so.
func TestVotingMendsAFailedUpdate(t *testing.T) {
	for _, tt := range []struct {
		name string
		// downs vote the experience down, ups vote it up afterwards; the
		// last vote's update fails.
		downs, ups []string
		want       store.Status
	}{
		{"retirement", []string{"A", "B"}, nil, store.StatusRetired},
		{"restoration", []string{"A", "B"}, []string{"B", "C"}, store.StatusActive},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			st := openTestState(t, t.TempDir())
			lib := &failingLibrary{fakeLibrary: &fakeLibrary{es: map[string]store.Experience{}}}
			weights := map[string]float64{"A": 1, "B": 1, "C": 1}
			v := &Voting{State: st, Library: lib, Weight: func(k string) float64 { return weights[k] }}
			a := &Admitter{Network: "hanzo", Library: lib, State: st, Voting: v}
			text := "Close response bodies."
			xid := ExperienceID("hanzo", "code.go", text)
			sid := store.ExperienceID("code.go", text)
			id := testIdentity(t, "nodeA")
			r, _ := Sign(id.Signer, Record{Experience: &Experience{Network: "hanzo", Domain: "code.go", Text: text, Confidence: 0.7, Time: t0}})
			if out, err := a.Admit(ctx, r, true); err != nil || out != Admitted {
				t.Fatalf("admit: %q, %v", out, err)
			}
			var at time.Duration
			votes := append(append([]Ballot(nil), ballots(tt.downs, Down)...), ballots(tt.ups, Up)...)
			for i, b := range votes {
				at += time.Second
				if i == len(votes)-1 {
					lib.fail = 1
				}
				_, err := v.Vote(ctx, b.Voter, Vote{Network: "hanzo", Experience: xid, Grade: b.Grade, Time: t0.Add(at)})
				if i == len(votes)-1 && !errors.Is(err, errUpdateFailed) {
					t.Fatalf("last vote: %v; want the update's failure", err)
				} else if i < len(votes)-1 && err != nil {
					t.Fatal(err)
				}
			}
			if got := lib.es[sid].Status; got == tt.want {
				t.Fatalf("status %q before the update succeeded", got)
			}
			if err := v.Reapply(ctx); err != nil {
				t.Fatal(err)
			}
			if got := lib.es[sid].Status; got != tt.want {
				t.Errorf("status %q after Reapply; want %q", got, tt.want)
			}
			// Once mended, the node's own retirement still stays.
			if tt.want == store.StatusActive {
				retired := store.StatusRetired
				lib.Update(ctx, sid, store.Update{Status: &retired})
				if err := v.Reapply(ctx); err != nil {
					t.Fatal(err)
				}
				if got := lib.es[sid].Status; got != store.StatusRetired {
					t.Errorf("status %q; the node's own retirement must stay", got)
				}
			}
		})
	}
}

func ballots(voters []string, g int8) []Ballot {
	bs := make([]Ballot, len(voters))
	for i, v := range voters {
		bs[i] = Ballot{Voter: v, Grade: g}
	}
	return bs
}
