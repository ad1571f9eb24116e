package network

import (
	"context"
	"errors"
	"fmt"
)

// maxCrossChecks bounds the other sources of one log checked per turn.
const maxCrossChecks = 4

// CrossCheck fetches the log's checkpoint from another source — another
// node's mirror of it — and proves it consistent with the one accepted.
// A log that shows one history to this node's peer and another to a
// different node is caught so: both checkpoints are signed by its key,
// and no append-only log explains them; the follower keeps both as
// evidence and returns ErrForked. Any other error is the source's (it is
// down, serves an old or invalid tree): nothing is held against the log.
func (f *Follower) CrossCheck(ctx context.Context, alt Fetcher) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fork != nil {
		return ErrForked
	}
	if f.state.Checkpoint == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, f.cfg.Timeout)
	defer cancel()
	fetch := Fetcher(countingFetcher{alt, &f.bytes})
	c, msg, err := FetchCheckpoint(ctx, fetch, f.cfg.Key, f.cfg.Origin)
	if err != nil {
		return err
	}
	old, cur, proof := f.last, c, fetch
	if c.Size < f.last.Size {
		old, cur, proof = c, f.last, f.pastFetcher(countingFetcher{f.cfg.Fetcher, &f.bytes})
	}
	err = ProveConsistency(ctx, proof, old, cur)
	if errors.Is(err, ErrInconsistent) {
		f.fork = &Fork{Old: f.state.Checkpoint, New: msg}
		return fmt.Errorf("%w: another node's copy: %v", ErrForked, err)
	}
	return err
}

// alternates are the other nodes' mirrors of p's log that the syncer
// knows of: those of the hosts of the followed logs that vouch for it,
// other than the host p is fetched from.
func (s *Syncer) alternates(p *peer) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	seen := map[string]bool{hostLog(p.url): true}
	var out []string
	for _, v := range s.vouchers[p.cfg.Key] {
		x := s.byKey[v]
		if x == nil {
			continue
		}
		host := hostLog(x.url)
		if seen[host] {
			continue
		}
		seen[host] = true
		out = append(out, host+MirrorPath(p.key))
		if len(out) == maxCrossChecks {
			break
		}
	}
	return out
}

// crossCheck checks p's accepted checkpoint against the other mirrors of
// its log; ErrForked when one shows another history.
func (p *peer) crossCheck(ctx context.Context) error {
	s := p.syncer
	for _, u := range s.alternates(p) {
		err := p.follower.CrossCheck(ctx, HTTPFetcher{Base: u, Client: s.cfg.Client})
		if errors.Is(err, ErrForked) {
			return err
		}
		if err != nil && !errors.Is(err, ErrNotFound) && ctx.Err() == nil {
			s.cfg.Logger.Debug("cross-checking a log against another mirror", "log", p.url, "mirror", u, "err", err.Error())
		}
	}
	return nil
}
