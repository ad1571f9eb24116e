package network

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/mod/sumdb/note"
)

// Syncer defaults and bounds.
const (
	DefaultSyncInterval = 10 * time.Second
	// DefaultMaxFailures is how many syncs in a row may find a peer
	// serving invalid data before it is dropped until restart.
	DefaultMaxFailures = 5
	// syncBatch bounds the entries one Sync takes; syncRounds the Syncs
	// one turn makes before the next peer's turn comes (each peer has its
	// own goroutine, so this only bounds how long a turn holds the state).
	syncBatch  = 256
	syncRounds = 16
	// fetchTimeout bounds one HTTP request to a peer.
	fetchTimeout = 10 * time.Second
	// maxBackoff caps the wait after failures, in sync intervals.
	maxBackoff = 64
)

// Peer states, as reported.
const (
	PeerOK         = "ok"
	PeerBackingOff = "backing_off"
	PeerDropped    = "dropped"
	PeerForked     = "forked"
	// PeerUnwitnessed: the log's newest checkpoint lacks the witness
	// quorum; what was accepted is kept, and the node waits.
	PeerUnwitnessed = "unwitnessed"
)

// Reasons a sync is refused, counted beside the record reasons.
const (
	RejectBadEntry      = "bad_entry"
	RejectBadCheckpoint = "bad_checkpoint"
	RejectInconsistent  = "inconsistent"
	RejectStale         = "stale"
	RejectMissing       = "missing" // withholds what its checkpoint covers
	RejectInvalid       = "invalid"
)

// Peer is a log to follow.
type Peer struct {
	// URL is the node's address, whose log of the network is under
	// /log/<network>/, or the full URL of a log (a mirror's:
	// <node>/log/<network>/mirror/<name>+<hash>, see MirrorPath).
	URL string
	// Key is the verifier key of the log's author.
	Key string
	// Trusted peers are roots of trust (see TrustConfig): their records
	// are admitted, their votes weigh fully. Others' standing comes from
	// vouches only; without any, their records are quarantined.
	Trusted bool
}

// SyncConfig configures a Syncer of one network.
type SyncConfig struct {
	Network string
	Peers   []Peer
	// Trust: Roots add to the trusted Peers (an allow-list); Self is
	// the node's own key.
	Trust TrustConfig
	// Interval between syncs of a peer. 0: DefaultSyncInterval.
	Interval time.Duration
	// MaxFailures: see DefaultMaxFailures (used for 0).
	MaxFailures int
	// Dir holds a mirror of each followed log, served onward. Required.
	Dir string
	// State keeps what was accepted. Required.
	State *State
	// Admit admits each verified experience record, trusted when its
	// author has standing. Required.
	Admit func(ctx context.Context, r Record, trusted bool) (string, error)
	// Withdraw takes back what the library holds on the word of an
	// author (an AuthorID) that lost its standing, and says how many
	// experiences left it (see Admitter.Withdraw); nil: nothing is.
	Withdraw func(ctx context.Context, author string) (int, error)
	// Verify checks what was admitted by a majority code against the
	// library's own code, once it can embed (see Admitter.Verify); Run
	// calls it every Interval. Nil: nothing is checked.
	Verify func(ctx context.Context) (Verified, error)
	// Voting weighs the votes; nil: votes are counted, not kept. Its
	// Weight is set by the syncer.
	Voting *Voting
	// Witnesses are the verifier keys of the witnesses whose
	// cosignatures count (see WitnessVerifiers); every followed log's new
	// checkpoint needs WitnessQuorum of them (0: none) before it is
	// accepted. A log's own key never counts as its witness.
	Witnesses     []string
	WitnessQuorum int
	// Client makes the requests. nil: one with a per-request timeout.
	Client *http.Client
	Logger *slog.Logger
}

// Syncer follows the logs of one network, each in its own goroutine, and
// mirrors each followed log. It follows the configured peers, and the
// logs they vouch for, as far as trust reaches (see Standings): a vouched
// log is fetched from the mirror of the host its voucher was fetched
// from, so records travel between nodes that never talk to each other.
type Syncer struct {
	cfg SyncConfig

	// retrusting serialises retrust: two peers' vouches must not both
	// open the log they reach. stale says the last retrust failed, so
	// the next record of any peer retries it.
	retrusting sync.Mutex
	stale      atomic.Bool

	mu         sync.Mutex // protects the fields below
	peers      []*peer
	byKey      map[string]*peer
	standings  map[string]Standing
	authors    map[string]float64  // weight by AuthorID
	authorKeys map[string]string   // verifier key by AuthorID, of the keys with standing
	forked     map[string]bool     // keys caught showing two histories
	vouchers   map[string][]string // key to the keys vouching for it
	run        func(*peer)         // starts a peer's goroutine once Run has begun
	witnesses  []note.Verifier     // of SyncConfig.Witnesses
	skipped    int64               // discovered logs not followed: MaxFollowed reached
	refuted    int64               // majority codes Verify found forged
}

// NewSyncer opens the peers' follow state and mirrors, and the logs the
// kept vouches reach.
func NewSyncer(ctx context.Context, cfg SyncConfig) (*Syncer, error) {
	if cfg.State == nil || cfg.Admit == nil || cfg.Dir == "" {
		return nil, errors.New("network: syncer needs a state, Admit and a directory")
	}
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultSyncInterval
	}
	if cfg.MaxFailures <= 0 {
		cfg.MaxFailures = DefaultMaxFailures
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: fetchTimeout}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	cfg.Trust.Roots = slices.Clone(cfg.Trust.Roots)
	for _, p := range cfg.Peers {
		if p.Trusted {
			cfg.Trust.Roots = append(cfg.Trust.Roots, p.Key)
		}
	}
	forked, err := cfg.State.Forked(ctx)
	if err != nil {
		return nil, err
	}
	witnesses, err := WitnessVerifiers(cfg.Witnesses)
	if err != nil {
		return nil, err
	}
	s := &Syncer{cfg: cfg, byKey: map[string]*peer{}, forked: map[string]bool{}, witnesses: witnesses}
	for _, k := range forked {
		s.forked[k] = true
	}
	if v := cfg.Voting; v != nil {
		v.Weight, v.Root = s.Weight, s.Root
	}
	for _, pc := range cfg.Peers {
		if _, dup := s.byKey[pc.Key]; dup || pc.Key == cfg.Trust.Self {
			continue
		}
		p, err := s.openPeer(ctx, pc)
		if err != nil {
			s.Close()
			return nil, err
		}
		s.add(p)
	}
	if err := s.retrust(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

func (s *Syncer) add(p *peer) {
	s.peers = append(s.peers, p)
	s.byKey[p.cfg.Key] = p
}

func (s *Syncer) openPeer(ctx context.Context, pc Peer) (*peer, error) {
	v, err := note.NewVerifier(pc.Key)
	if err != nil {
		return nil, fmt.Errorf("network: peer %s: key: %w", pc.URL, err)
	}
	origin := Origin(v.Name(), s.cfg.Network)
	st, fork, err := s.cfg.State.Follow(ctx, pc.Key)
	if err != nil {
		return nil, err
	}
	m, err := OpenMirror(ctx, MirrorConfig{Path: filepath.Join(s.cfg.Dir, fmt.Sprintf("%s-mirror-%08x.db", s.cfg.Network, v.KeyHash())),
		Origin: origin, Key: pc.Key})
	if err != nil {
		return nil, fmt.Errorf("network: peer %s: %w", pc.URL, err)
	}
	p := &peer{cfg: pc, name: v.Name(), key: v, origin: origin, url: LogURL(pc.URL, s.cfg.Network), mirror: m, syncer: s,
		state: PeerOK, reasons: map[string]int64{}, outcomes: map[string]int64{}, fork: fork}
	if fork != nil {
		p.state = PeerForked
	}
	p.accepted, p.saved = st, st
	p.follower, err = NewFollower(FollowConfig{
		Fetcher: HTTPFetcher{Base: p.url, Client: s.cfg.Client}, Key: v, Origin: origin,
		MaxEntries: syncBatch, Timeout: 2 * fetchTimeout, State: st, Mirror: m, Accept: p.accept,
		Witnesses: withoutLog(s.witnesses, pc.Key), Quorum: s.cfg.WitnessQuorum,
	})
	if err != nil {
		m.Close()
		return nil, fmt.Errorf("network: peer %s: %w", pc.URL, err)
	}
	return p, nil
}

// LogURL is where the log of network is, given a peer's URL (see Peer).
func LogURL(peerURL, network string) string {
	u := strings.TrimSuffix(peerURL, "/")
	if strings.Contains(u, "/log/") {
		return u
	}
	return u + "/log/" + network
}

// hostLog is the log of the node that serves logURL: logURL itself, or
// the node whose mirror it is.
func hostLog(logURL string) string {
	if i := strings.Index(logURL, "/mirror/"); i >= 0 {
		return logURL[:i]
	}
	return logURL
}

// MirrorPath is where a node serves its mirror of the log by key v,
// below its own log's prefix: "/mirror/" and the key's name and hash,
// "name+hash" as in AuthorID, one path segment. A name alone is anyone's
// to take; two keys of one name are mirrored apart.
func MirrorPath(v note.Verifier) string { return "/mirror/" + url.PathEscape(keyAuthorID(v)) }

// Mirror returns the mirror of the followed log whose key is id, its name
// and hash ("name+hash", as AuthorID), to serve onward; nil for none.
func (s *Syncer) Mirror(id string) *Mirror {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range s.peers {
		if keyAuthorID(p.key) == id {
			return p.mirror
		}
	}
	return nil
}

// mirrorsNamed returns the keys (as MirrorPath names them) of the
// followed logs whose key is named name, and the mirror of the first.
func (s *Syncer) mirrorsNamed(name string) ([]note.Verifier, *Mirror) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var vs []note.Verifier
	var m *Mirror
	for _, p := range s.peers {
		if p.name == name {
			if m == nil {
				m = p.mirror
			}
			vs = append(vs, p.key)
		}
	}
	return vs, m
}

// Run follows every log until ctx is done, and those found meanwhile.
func (s *Syncer) Run(ctx context.Context) {
	var wg sync.WaitGroup
	start := func(p *peer) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.run(ctx)
		}()
	}
	s.mu.Lock()
	s.run = start
	peers := slices.Clone(s.peers)
	s.mu.Unlock()
	s.sweep(ctx)
	for _, p := range peers {
		start(p)
	}
	if s.cfg.Verify != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.verifyEvery(ctx)
		}()
	}
	<-ctx.Done()
	s.mu.Lock()
	s.run = nil
	s.mu.Unlock()
	wg.Wait()
}

// Close closes the mirrors, after Run has returned.
func (s *Syncer) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range s.peers {
		if err := p.mirror.Close(); err != nil {
			s.cfg.Logger.Warn("closing a mirror", "peer", p.url, "err", err.Error())
		}
	}
}

// peer is one followed log and what is reported of it.
type peer struct {
	cfg      Peer
	name     string // of the author's key
	key      note.Verifier
	origin   string
	url      string // of the log
	follower *Follower
	mirror   *Mirror
	syncer   *Syncer

	mu        sync.Mutex // protects the fields below
	state     string
	failures  int              // in a row
	reasons   map[string]int64 // syncs refused, by reason
	outcomes  map[string]int64 // records, by outcome of admission
	fetchErrs int64
	lastErr   string
	lastSync  time.Time
	fork      *Fork
	heldBack  bool // by a full quarantine, warned of; until a turn succeeds
	// accepted is the follower's state after its last turn: a status
	// must not wait on a sync in flight (which holds the follower).
	accepted FollowState
	// unwitnessed is the checkpoint waiting for its witnesses, while
	// state is PeerUnwitnessed; waits counts the turns in a row it
	// waited, and warned is set once it was logged.
	unwitnessed Unwitnessed
	waits       int
	warned      bool

	saved FollowState // as last stored; run's goroutine only
}

// run syncs p every interval, backing off after failures, until ctx is
// done, p is dropped or it forked.
func (p *peer) run(ctx context.Context) {
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if p.status().State == PeerForked {
			return
		}
		err := p.turn(ctx)
		if ctx.Err() != nil {
			return
		}
		wait, stop := p.settle(ctx, err)
		if errors.Is(err, ErrForked) {
			p.syncer.distrust(ctx, p.cfg.Key)
		}
		if stop {
			return
		}
		t.Reset(wait)
	}
}

// turn syncs until the peer's log is taken in, or syncRounds, and saves
// what was accepted.
func (p *peer) turn(ctx context.Context) error {
	if p.syncer.stale.Load() {
		// What the vouches reach was not all followed: try again.
		p.syncer.retrustOrWarn(ctx)
	}
	var err error
	for range syncRounds {
		var res SyncResult
		res, err = p.follower.Sync(ctx)
		if serr := p.save(ctx); serr != nil && err == nil {
			err = serr
		}
		if err != nil || !res.More {
			break
		}
	}
	if err == nil || errors.Is(err, ErrAccept) {
		// A record that waits (admission failed here) does not put off
		// the check of the checkpoint already accepted.
		if cerr := p.crossCheck(ctx); cerr != nil {
			err = cerr
		}
	}
	return err
}

// save stores the follower's state when it changed since the last save:
// a sync that found nothing new writes nothing (each write is an fsync).
func (p *peer) save(ctx context.Context) error {
	st := p.follower.State()
	if st.Next == p.saved.Next && bytes.Equal(st.Checkpoint, p.saved.Checkpoint) && maps.Equal(st.Rejected, p.saved.Rejected) {
		return nil
	}
	if err := p.syncer.cfg.State.SaveFollow(ctx, p.cfg.Key, st); err != nil {
		return err
	}
	p.saved = st
	return nil
}

// settle records the outcome of a turn and returns the wait before the
// next; stop when the peer is no longer followed.
func (p *peer) settle(ctx context.Context, err error) (time.Duration, bool) {
	s := p.syncer
	accepted := p.follower.State()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.accepted = accepted
	if err == nil {
		p.state, p.failures, p.lastErr, p.lastSync = PeerOK, 0, "", time.Now()
		p.heldBack, p.waits = false, 0
		return s.cfg.Interval, false
	}
	p.lastErr = err.Error()
	if uw := (*UnwitnessedError)(nil); errors.As(err, &uw) {
		// Not the peer's fault: its witnesses may not have answered yet.
		// Logged once, when a second turn in a row finds it waiting.
		p.state, p.failures, p.lastSync, p.unwitnessed = PeerUnwitnessed, 0, time.Now(), uw.Unwitnessed
		if p.waits++; p.waits > 1 && !p.warned {
			p.warned = true
			s.cfg.Logger.Warn("peer's checkpoint lacks the witness quorum; waiting for it, keeping what was accepted", "peer", p.url,
				"author", p.name, "size", uw.Size, "cosigned", uw.Cosigned, "quorum", uw.Quorum)
		}
		return s.cfg.Interval, false
	}
	if errors.Is(err, ErrForked) {
		p.state = PeerForked
		p.reasons[RejectInconsistent]++
		if f := p.follower.Fork(); f != nil {
			p.fork = f
			if serr := s.cfg.State.SaveFork(ctx, p.cfg.Key, *f); serr != nil {
				s.cfg.Logger.Error("saving fork evidence", "peer", p.url, "err", serr.Error())
			}
		}
		s.cfg.Logger.Warn("peer's log forked: two signed histories; no longer followed", "peer", p.url, "author", p.name, "err", p.lastErr)
		return 0, true
	}
	if errors.Is(err, ErrNotFound) && !errors.Is(err, ErrMissing) {
		// No checkpoint yet (a mirror still filling): nothing is wrong,
		// there is only nothing to take.
		p.state = PeerOK
		return s.cfg.Interval, false
	}
	p.failures++
	wait := s.cfg.Interval << min(p.failures, 6)
	wait = min(wait, s.cfg.Interval*maxBackoff)
	if errors.Is(err, ErrQuarantineFull) {
		// The node's own bound, not the peer's doing: the record waits
		// and the log is read no further until it is kept (its author
		// gains standing, or the quarantine has room), tried again after
		// a back-off.
		p.outcomes[QuarantineFull]++
		p.state = PeerBackingOff
		if !p.heldBack {
			p.heldBack = true
			s.cfg.Logger.Warn("the quarantine is full: the log is read no further until its author gains standing or there is room",
				"peer", p.url, "author", p.name, "err", p.lastErr)
		}
		return wait, false
	}
	reason := syncReason(err)
	if reason == "" {
		// Unreachable or slow: back off, but it has served nothing wrong.
		p.fetchErrs++
		p.state = PeerBackingOff
		return wait, false
	}
	p.reasons[reason]++
	if p.failures >= s.cfg.MaxFailures {
		p.state = PeerDropped
		s.cfg.Logger.Warn("peer served invalid data too often; dropped until restart", "peer", p.url, "author", p.name,
			"failures", p.failures, "err", p.lastErr)
		return 0, true
	}
	p.state = PeerBackingOff
	return wait, false
}

// syncReason names what was invalid in a failed sync; "" for a failure
// on the way (ErrFetch, a timeout) or here (ErrAccept: admission failed,
// the quarantine full among others), which is not held against the peer
// beyond a back-off.
func syncReason(err error) string {
	switch {
	case errors.Is(err, ErrMissing):
		return RejectMissing
	case errors.Is(err, ErrTileTooLarge):
		return RejectTooLarge
	case errors.Is(err, ErrFetch), errors.Is(err, ErrNotFound), errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, ErrAccept):
		return ""
	case errors.Is(err, ErrStale):
		return RejectStale
	case errors.Is(err, ErrInconsistent):
		return RejectInconsistent
	case errors.Is(err, ErrBadEntry), errors.Is(err, ErrBundle):
		return RejectBadEntry
	case errors.Is(err, ErrCheckpoint), errors.Is(err, ErrCheckpointSignature), errors.Is(err, ErrOrigin):
		return RejectBadCheckpoint
	}
	return RejectInvalid
}

// accept admits one verified record of the peer's log.
func (p *peer) accept(ctx context.Context, _ int64, r Record) error {
	s := p.syncer
	var out string
	var err error
	switch {
	case r.Network() != s.cfg.Network:
		out = WrongNetwork
	case r.Vouch != nil:
		out, err = p.vouch(ctx, *r.Vouch)
	case r.Vote != nil && s.cfg.Voting == nil:
		out = Votes
	case r.Vote != nil:
		out, err = s.cfg.Voting.Vote(ctx, p.cfg.Key, *r.Vote)
		if out == Voted && s.Weight(p.cfg.Key) == 0 {
			// Kept, should the voter gain standing; weighs nothing now.
			out = VoteUnweighted
		}
	default:
		out, err = s.cfg.Admit(ctx, r, s.Weight(p.cfg.Key) > 0)
	}
	if err != nil {
		return err
	}
	p.count(out, 1)
	return nil
}

// count adds n records of outcome out to the peer's.
func (p *peer) count(out string, n int64) {
	p.mu.Lock()
	p.outcomes[out] += n
	p.mu.Unlock()
}

// vouch keeps a vouch of the peer's and follows what it reaches.
func (p *peer) vouch(ctx context.Context, v Vouch) (string, error) {
	changed, err := p.syncer.cfg.State.SaveVouch(ctx, p.cfg.Key, v)
	switch {
	case errors.Is(err, ErrVouchesFull):
		return VouchesFull, nil
	case err != nil:
		return "", err
	case changed:
		p.syncer.retrustOrWarn(ctx)
	}
	return Vouched, nil
}
