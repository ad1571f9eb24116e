package network

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// Follower defaults and bounds.
const (
	DefaultMaxEntries  = 1024
	MaxMaxEntries      = 1 << 16
	DefaultSyncTimeout = time.Minute
)

// ErrForked reports a log that showed two histories: the follower keeps
// both signed checkpoints (see Follower.Fork) and takes nothing more from
// it.
var ErrForked = errors.New("network: log forked")

// ErrStale reports a peer serving an older checkpoint than one it served
// before, consistent with it: a stale cache, or a node that lost its log.
// Nothing is taken from it until it catches up.
var ErrStale = errors.New("network: log is behind the accepted checkpoint")

// ErrMissing reports a tile or entry that a log's own signed checkpoint
// covers and that it does not serve. It wraps ErrNotFound; unlike a log
// with no checkpoint yet, it is held against the log: one that signs a
// tree and then withholds it is never caught up with, and must not stay
// "ok" (a dso log and mirror serve a checkpoint only once what it covers
// is stored).
var ErrMissing = errors.New("network: a tile or entry under the signed checkpoint is missing")

// ErrAccept wraps an error of Accept's: the follower's own (its store or
// embedder failed), not the peer's; the record is offered again.
var ErrAccept = errors.New("network: accepting a record")

// ErrBadEntry reports an entry bundle whose entries are not the ones the
// signed tree holds: the peer served invalid data.
var ErrBadEntry = errors.New("network: entry does not match the signed tree")

// Reasons a logged record is rejected, as counted in FollowState.Rejected.
const (
	RejectMalformed     = "malformed"
	RejectBadSignature  = "bad_signature"
	RejectUnknownAuthor = "unknown_author"
	RejectTooLarge      = "too_large" // a record or one of its fields over its bound
)

// emptyTree is the root hash of the empty tree, where a follower starts.
var emptyTree, _ = tlog.TreeHash(0, nil)

// FollowConfig configures a Follower of one peer's log.
type FollowConfig struct {
	// Fetcher reads the peer's log. Required.
	Fetcher Fetcher
	// Key is the peer's verifier key; its checkpoints must be signed by
	// it. Required.
	Key note.Verifier
	// Origin is the checkpoint origin the log must name; empty accepts
	// any (not recommended).
	Origin string
	// Authors are the keys records may be signed by. nil: Key only.
	Authors note.Verifiers
	// MaxEntries bounds the entries one Sync fetches. 0 means
	// DefaultMaxEntries; at most MaxMaxEntries.
	MaxEntries int
	// Timeout bounds one Sync. 0 means DefaultSyncTimeout.
	Timeout time.Duration
	// Accept is handed each valid record in log order, with its index. An
	// error stops the Sync; the record is offered again on the next.
	Accept func(ctx context.Context, index int64, r Record) error
	// State resumes from what State returned before; zero starts from the
	// empty log.
	State FollowState
	// Mirror, when set, is handed every entry of the log, valid records
	// or not (the tree commits to all of them), before Accept sees them.
	Mirror Sink
	// Witnesses are the cosigners whose cosignatures of the log's
	// checkpoints count (C2SP tlog-cosignature verifiers); Quorum is how
	// many of them must have cosigned a checkpoint before it is accepted
	// (0: none). Until then the follower keeps the checkpoint it accepted
	// and Sync returns an *UnwitnessedError. A quorum larger than the
	// witnesses is never met.
	Witnesses []note.Verifier
	Quorum    int
}

// Sink keeps a followed log's entries, [start, start+len(entries)) of the
// tree signed by checkpoint; *Mirror is one.
type Sink interface {
	Add(ctx context.Context, checkpoint []byte, start int64, entries [][]byte) error
}

// FollowState is what a follower has accepted, for resuming and reports.
type FollowState struct {
	// Checkpoint is the last accepted signed checkpoint; nil for none.
	Checkpoint []byte
	// Next is the index of the next entry to hand to Accept.
	Next int64
	// Rejected counts logged records refused, by reason.
	Rejected map[string]int64
}

// Fork is evidence that a log showed two histories: two checkpoints, both
// signed by its key, that no append-only log explains.
type Fork struct {
	Old, New []byte
}

// Follower follows one peer's log: it accepts a checkpoint only if it is
// signed by the peer and consistent with the last one accepted, and hands
// on only records proven to be in it.
type Follower struct {
	cfg   FollowConfig
	bytes atomic.Int64 // fetched, for traffic reports

	mu    sync.Mutex // serialises Sync; protects the fields below
	last  Checkpoint
	state FollowState
	fork  *Fork
}

// NewFollower checks cfg and returns a follower at cfg.State.
func NewFollower(cfg FollowConfig) (*Follower, error) {
	if cfg.Fetcher == nil || cfg.Key == nil || cfg.Accept == nil {
		return nil, errors.New("network: follower needs a fetcher, a key and Accept")
	}
	if cfg.MaxEntries == 0 {
		cfg.MaxEntries = DefaultMaxEntries
	}
	if cfg.MaxEntries < 0 || cfg.MaxEntries > MaxMaxEntries {
		return nil, fmt.Errorf("network: follower MaxEntries %d outside [1, %d]", cfg.MaxEntries, MaxMaxEntries)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultSyncTimeout
	}
	if cfg.Authors == nil {
		cfg.Authors = note.VerifierList(cfg.Key)
	}
	if cfg.Quorum < 0 {
		return nil, fmt.Errorf("network: follower witness quorum %d is negative", cfg.Quorum)
	}
	cfg.Witnesses = distinctWitnesses(cfg.Witnesses)
	f := &Follower{cfg: cfg, state: FollowState{Rejected: map[string]int64{}}, last: Checkpoint{Hash: emptyTree}}
	if st := cfg.State; st.Checkpoint != nil {
		c, err := OpenCheckpoint(st.Checkpoint, cfg.Key, cfg.Origin)
		if err != nil {
			return nil, fmt.Errorf("network: follower state: %w", err)
		}
		if st.Next < 0 || st.Next > c.Size {
			return nil, fmt.Errorf("network: follower state: next %d of a log of %d", st.Next, c.Size)
		}
		f.last, f.state.Checkpoint, f.state.Next = c, st.Checkpoint, st.Next
	}
	for k, v := range cfg.State.Rejected {
		f.state.Rejected[k] = v
	}
	return f, nil
}

// State returns a copy of what the follower has accepted.
func (f *Follower) State() FollowState {
	f.mu.Lock()
	defer f.mu.Unlock()
	st := f.state
	st.Rejected = make(map[string]int64, len(f.state.Rejected))
	for k, v := range f.state.Rejected {
		st.Rejected[k] = v
	}
	return st
}

// Fork returns the evidence of a fork, or nil.
func (f *Follower) Fork() *Fork {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.fork
}

// BytesFetched is how many bytes the follower has read from the peer.
func (f *Follower) BytesFetched() int64 { return f.bytes.Load() }

// SyncResult says what one Sync did.
type SyncResult struct {
	Size     int64 // of the accepted checkpoint
	Accepted int   // records handed to Accept
	Rejected int   // records refused (counted by reason in State)
	More     bool  // entries remain past MaxEntries
}

// Sync fetches the peer's checkpoint, proves it consistent with the last
// one accepted, and hands on up to MaxEntries new records.
func (f *Follower) Sync(ctx context.Context) (SyncResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fork != nil {
		return SyncResult{}, ErrForked
	}
	ctx, cancel := context.WithTimeout(ctx, f.cfg.Timeout)
	defer cancel()
	fetch := countingFetcher{f.cfg.Fetcher, &f.bytes}
	c, msg, err := FetchCheckpoint(ctx, fetch, f.cfg.Key, f.cfg.Origin)
	if err != nil {
		return SyncResult{}, err
	}
	old, cur, proof := f.last, c, Fetcher(fetch)
	if c.Size < f.last.Size {
		// An older checkpoint is stale (a cache) if the accepted tree
		// extends it, and a fork if not; either way the accepted tree
		// stays: a log is never believed over its own signed past. The
		// proof then reads this node's copy of that past too, so a tile
		// not found is not the peer's to answer for.
		old, cur, proof = c, f.last, f.pastFetcher(fetch)
	}
	if err := ProveConsistency(ctx, proof, old, cur); err != nil {
		if errors.Is(err, ErrInconsistent) && f.state.Checkpoint != nil {
			f.fork = &Fork{Old: f.state.Checkpoint, New: msg}
			return SyncResult{}, fmt.Errorf("%w: %v", ErrForked, err)
		}
		if c.Size >= f.last.Size {
			err = missing(err) // what its checkpoint covers, the peer must serve
		}
		return SyncResult{}, err
	}
	if c.Size < f.last.Size {
		return SyncResult{Size: f.last.Size}, fmt.Errorf("%w: size %d, accepted %d", ErrStale, c.Size, f.last.Size)
	}
	if c.Size > f.last.Size || f.state.Checkpoint == nil {
		if n := f.cosigned(msg); n < f.cfg.Quorum {
			// Not the witnesses' view (yet): take in what the accepted
			// checkpoint covers, and wait.
			var res SyncResult
			if f.state.Checkpoint != nil {
				res, err = f.admit(ctx, fetch)
			}
			if err != nil {
				return res, missing(err)
			}
			return res, &UnwitnessedError{Unwitnessed{Size: c.Size, Cosigned: n, Quorum: f.cfg.Quorum}}
		}
		f.last, f.state.Checkpoint = c, msg
	}
	res, err := f.admit(ctx, fetch)
	return res, missing(err)
}

// missing marks a tile or entry not found under a checkpoint the peer
// signed as ErrMissing.
func missing(err error) error {
	if errors.Is(err, ErrNotFound) && !errors.Is(err, ErrMissing) {
		return fmt.Errorf("%w: %w", ErrMissing, err)
	}
	return err
}

// admit hands on the entries from state.Next, each proven against the
// accepted tree through its record hash in the signed tiles.
func (f *Follower) admit(ctx context.Context, fetch Fetcher) (SyncResult, error) {
	c := f.last
	res := SyncResult{Size: c.Size}
	start := f.state.Next
	end := min(c.Size, start+int64(f.cfg.MaxEntries))
	res.More = end < c.Size
	if start == end {
		return res, f.mirror(ctx, start, nil)
	}
	entries, err := FetchEntries(ctx, fetch, c, start, end)
	if err != nil {
		return res, err
	}
	indexes := make([]int64, len(entries))
	for i := range entries {
		indexes[i] = tlog.StoredHashIndex(0, start+int64(i))
	}
	hashes, err := tlog.TileHashReader(c.Tree(), tileReader{ctx: ctx, f: fetch}).ReadHashes(indexes)
	if err != nil {
		return res, fmt.Errorf("network: record hashes %d..%d: %w", start, end, err)
	}
	for i, e := range entries {
		if tlog.RecordHash(e) != hashes[i] {
			return res, fmt.Errorf("%w: entry %d", ErrBadEntry, start+int64(i))
		}
	}
	if err := f.mirror(ctx, start, entries); err != nil {
		return res, err
	}
	for i, e := range entries {
		idx := start + int64(i)
		r, err := Open(e, f.cfg.Authors)
		if err != nil {
			f.state.Rejected[rejectReason(err)]++
			res.Rejected++
			f.state.Next = idx + 1
			continue
		}
		if err := f.cfg.Accept(ctx, idx, r); err != nil {
			return res, fmt.Errorf("%w: entry %d: %w", ErrAccept, idx, err)
		}
		res.Accepted++
		f.state.Next = idx + 1
	}
	return res, nil
}

// mirror hands proven entries to the configured mirror, if any.
func (f *Follower) mirror(ctx context.Context, start int64, entries [][]byte) error {
	if f.cfg.Mirror == nil {
		return nil
	}
	if err := f.cfg.Mirror.Add(ctx, f.state.Checkpoint, start, entries); err != nil {
		return fmt.Errorf("network: mirror entries from %d: %w", start, err)
	}
	return nil
}

func rejectReason(err error) string {
	switch {
	case errors.Is(err, ErrBadSignature):
		return RejectBadSignature
	case errors.Is(err, ErrUnknownAuthor):
		return RejectUnknownAuthor
	case errors.Is(err, ErrTooLarge):
		return RejectTooLarge
	}
	return RejectMalformed
}

// countingFetcher counts the bytes fetched through it.
type countingFetcher struct {
	f Fetcher
	n *atomic.Int64
}

func (c countingFetcher) Fetch(ctx context.Context, path string) ([]byte, error) {
	b, err := c.f.Fetch(ctx, path)
	c.n.Add(int64(len(b)))
	return b, err
}
