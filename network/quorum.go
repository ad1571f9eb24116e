package network

import (
	"errors"
	"fmt"

	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"
)

// ErrUnwitnessed reports a log's checkpoint that lacks the cosignatures
// of the witness quorum the follower requires: not the log's fault (its
// witnesses may not have answered yet), and nothing newer is accepted
// until a checkpoint carries them. A log that shows the follower another
// history than its witnesses saw can never get one cosigned.
var ErrUnwitnessed = errors.New("network: checkpoint lacks the witnesses' cosignatures")

// Unwitnessed describes a checkpoint waiting for its witnesses.
type Unwitnessed struct {
	Size     int64 `json:"size"`     // of the checkpoint
	Cosigned int   `json:"cosigned"` // valid cosignatures from the named witnesses
	Quorum   int   `json:"quorum"`   // how many are needed
}

// UnwitnessedError is the error of a Sync that found the log's newest
// checkpoint without the quorum; it wraps ErrUnwitnessed.
type UnwitnessedError struct{ Unwitnessed }

func (e *UnwitnessedError) Error() string {
	return fmt.Sprintf("%v: size %d has %d of the %d needed", ErrUnwitnessed, e.Size, e.Cosigned, e.Quorum)
}

func (e *UnwitnessedError) Unwrap() error { return ErrUnwitnessed }

// WitnessVerifiers parses the verifier keys of witnesses: Ed25519
// cosignature/v1 keys (type 0x04), or dso node verifier keys, whose
// Ed25519 key a dso witness cosigns with (see Identity.WitnessKey).
func WitnessVerifiers(keys []string) ([]note.Verifier, error) {
	out := make([]note.Verifier, 0, len(keys))
	for _, k := range keys {
		v, err := fnote.NewVerifierForCosignatureV1(k)
		if err != nil {
			return nil, fmt.Errorf("network: witness key %q: %w", k, err)
		}
		out = append(out, v)
	}
	return distinctWitnesses(out), nil
}

// distinctWitnesses drops a verifier named twice (by key name and hash):
// one witness counts once, however often it is listed.
func distinctWitnesses(vs []note.Verifier) []note.Verifier {
	type id struct {
		name string
		hash uint32
	}
	seen := map[id]bool{}
	var out []note.Verifier
	for _, v := range vs {
		k := id{v.Name(), v.KeyHash()}
		if !seen[k] {
			seen[k] = true
			out = append(out, v)
		}
	}
	return out
}

// cosigned counts the named witnesses with a valid cosignature in msg. A
// signature line that names a witness but does not verify counts for
// nothing; lines of other keys are ignored, as C2SP tlog-cosignature
// asks.
func (f *Follower) cosigned(msg []byte) int {
	n := 0
	for _, w := range f.cfg.Witnesses {
		if _, err := note.Open(msg, note.VerifierList(w)); err == nil {
			n++
		}
	}
	return n
}

// withoutLog drops from witnesses any with the log's own name and key: a
// log's cosignature of itself says nothing of what others were shown.
func withoutLog(witnesses []note.Verifier, logKey string) []note.Verifier {
	self, err := fnote.NewVerifierForCosignatureV1(logKey)
	if err != nil {
		return witnesses
	}
	var out []note.Verifier
	for _, w := range witnesses {
		if w.Name() != self.Name() || w.KeyHash() != self.KeyHash() {
			out = append(out, w)
		}
	}
	return out
}
