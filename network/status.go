package network

import (
	"context"
	"maps"
	"slices"
	"time"
)

// quarantineShown bounds the quarantined records a status lists.
const quarantineShown = 20

// NetworkStatus is what GET /v1/network shows of one network.
type NetworkStatus struct {
	ID          string        `json:"id"`
	Origin      string        `json:"origin"`
	Size        int64         `json:"size"` // of the node's own log
	VerifierKey string        `json:"verifier_key"`
	Share       []string      `json:"share"`
	Logs        []LogStatus   `json:"logs"`
	Quarantined int           `json:"quarantined"`
	Quarantine  []Quarantined `json:"quarantine,omitempty"` // the latest few
	// Retired counts experiences the network's votes retired here;
	// Unvouched the keys vouched for in followed logs that have no
	// standing (vouched only by nodes without it, past the depth or past
	// a voucher's MaxVouches): not followed, their votes weigh nothing.
	Retired   int `json:"retired_by_votes"`
	Unvouched int `json:"vouched_without_standing"`
	// Refuted counts experiences admitted by a majority code whose code,
	// checked once the library could embed, was forged (since start).
	Refuted int64 `json:"majority_codes_refuted"`
	// Witness is the node as a witness of its peers' logs; nil when it
	// is none. Witnesses are the witnesses its own log asks to cosign,
	// and WitnessQuorum how many cosignatures a followed log needs.
	Witness       *WitnessStatus `json:"witness,omitempty"`
	Witnesses     []CosignStatus `json:"witnesses,omitempty"`
	WitnessQuorum int            `json:"witness_quorum"`
}

// LogStatus is what a node knows of a log it follows.
type LogStatus struct {
	URL    string `json:"url"`
	Author string `json:"author"` // the log key's name
	Key    string `json:"key"`
	// Trusted: the author has standing (Weight > 0), from the
	// configuration or vouches (Depth of them; 1 for a configured peer).
	Trusted bool    `json:"trusted"`
	Weight  float64 `json:"weight"`
	Depth   int     `json:"depth,omitempty"`
	State   string  `json:"state"` // PeerOK, PeerBackingOff, PeerDropped, PeerForked, PeerUnwitnessed
	// Size is of the last accepted checkpoint; Next the next entry to
	// admit; Lag the entries between them.
	Size       int64  `json:"size"`
	Next       int64  `json:"next"`
	Lag        int64  `json:"lag"`
	Checkpoint string `json:"checkpoint,omitempty"`
	Mirrored   int64  `json:"mirrored"` // entries the mirror serves
	// Records counts records by outcome of admission (Admitted, Quarantine,
	// ...); Rejected counts refused records and refused syncs by reason.
	Records      map[string]int64 `json:"records"`
	Rejected     map[string]int64 `json:"rejected"`
	FetchErrors  int64            `json:"fetch_errors"`
	Failures     int              `json:"consecutive_failures"`
	LastError    string           `json:"last_error,omitempty"`
	LastSync     *time.Time       `json:"last_sync,omitempty"`
	BytesFetched int64            `json:"bytes_fetched"`
	Fork         *ForkEvidence    `json:"fork,omitempty"`
	// Unwitnessed is the log's newest checkpoint while State is
	// PeerUnwitnessed: its size, and how many of the witnesses the node
	// requires cosigned it.
	Unwitnessed *Unwitnessed `json:"unwitnessed,omitempty"`
}

// ForkEvidence is a Fork as shown: both signed checkpoints, as text.
type ForkEvidence struct {
	Old string `json:"old"`
	New string `json:"new"`
}

// Logs reports every followed log.
func (s *Syncer) Logs() []LogStatus {
	s.mu.Lock()
	peers := slices.Clone(s.peers)
	standings := s.standings
	s.mu.Unlock()
	out := make([]LogStatus, 0, len(peers))
	for _, p := range peers {
		ls := p.status()
		sd := standings[p.cfg.Key]
		ls.Trusted, ls.Weight, ls.Depth = sd.Weight > 0, sd.Weight, sd.Depth
		out = append(out, ls)
	}
	return out
}

// Quarantine returns the latest quarantined records and how many there are.
func (s *Syncer) Quarantine(ctx context.Context) ([]Quarantined, int, error) {
	return s.cfg.State.ListQuarantine(ctx, quarantineShown)
}

func (p *peer) status() LogStatus {
	p.mu.Lock()
	defer p.mu.Unlock()
	fs := p.accepted
	ls := LogStatus{URL: p.url, Author: p.name, Key: p.cfg.Key, Next: fs.Next,
		Checkpoint: string(fs.Checkpoint), Mirrored: p.mirror.Size(), BytesFetched: p.follower.BytesFetched()}
	if fs.Checkpoint != nil {
		if c, err := OpenCheckpoint(fs.Checkpoint, p.key, p.origin); err == nil {
			ls.Size = c.Size
		}
	}
	ls.Lag = ls.Size - ls.Next
	ls.State, ls.Failures, ls.LastError, ls.FetchErrors = p.state, p.failures, p.lastErr, p.fetchErrs
	ls.Records = maps.Clone(p.outcomes)
	ls.Rejected = maps.Clone(fs.Rejected)
	if ls.Rejected == nil {
		ls.Rejected = map[string]int64{}
	}
	for k, v := range p.reasons {
		ls.Rejected[k] += v
	}
	if !p.lastSync.IsZero() {
		t := p.lastSync
		ls.LastSync = &t
	}
	if p.fork != nil {
		ls.Fork = &ForkEvidence{Old: string(p.fork.Old), New: string(p.fork.New)}
	}
	if p.state == PeerUnwitnessed {
		uw := p.unwitnessed
		ls.Unwitnessed = &uw
	}
	return ls
}

// TrustCounts returns how many experiences the votes retired here and how
// many vouched-for keys have no standing (see NetworkStatus).
func (s *Syncer) TrustCounts(ctx context.Context) (retired, unvouched int, err error) {
	if retired, err = s.cfg.State.CountRetired(ctx); err != nil {
		return 0, 0, err
	}
	vouches, err := s.cfg.State.Vouches(ctx)
	if err != nil {
		return 0, 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	seen := map[string]bool{}
	for _, keys := range vouches {
		for _, k := range keys {
			if _, ok := s.standings[k]; !ok && !seen[k] && k != s.cfg.Trust.Self {
				seen[k] = true
				unvouched++
			}
		}
	}
	return retired, unvouched, nil
}
