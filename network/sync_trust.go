package network

import (
	"context"
	"slices"
	"strings"

	"golang.org/x/mod/sumdb/note"
)

// Weight is the trust weight of the key now: 0 for none, 1 for the
// node's own (its users' grades count in its tally like a peer's).
func (s *Syncer) Weight(key string) float64 {
	if key == s.cfg.Trust.Self && key != "" {
		return 1
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.standings[key].Weight
}

// Root is the root of trust key's standing comes from: the configured
// key at the top of the vouches that first reached it (itself for a root,
// the node's own key, or a key without standing).
func (s *Syncer) Root(key string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rootLocked(key)
}

// AuthorRoot is Root of the key of author (an AuthorID); the author
// itself when no key with standing is its.
func (s *Syncer) AuthorRoot(author string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	key, ok := s.authorKeys[author]
	if !ok {
		return author
	}
	return s.rootLocked(key)
}

func (s *Syncer) rootLocked(key string) string {
	for range MaxTrustDepth {
		via := s.standings[key].Via
		if via == "" {
			return key
		}
		key = via
	}
	return key
}

// retrust computes the standings from the kept vouches and follows the
// logs that gained standing.
func (s *Syncer) retrust(ctx context.Context) error {
	s.retrusting.Lock()
	defer s.retrusting.Unlock()
	err := s.retrustLocked(ctx)
	s.stale.Store(err != nil)
	return err
}

func (s *Syncer) retrustLocked(ctx context.Context) error {
	vouches, err := s.cfg.State.Vouches(ctx)
	if err != nil {
		return err
	}
	s.mu.Lock()
	cfg := s.cfg.Trust
	for k := range s.forked {
		cfg.Distrusted = append(cfg.Distrusted, k)
	}
	s.mu.Unlock()
	st := Standings(cfg, vouches)
	authors := make(map[string]float64, len(st))
	authorKeys := make(map[string]string, len(st))
	for key, sd := range st {
		if v, err := note.NewVerifier(key); err == nil {
			authors[keyAuthorID(v)] = sd.Weight
			authorKeys[keyAuthorID(v)] = key
		}
	}
	s.mu.Lock()
	var gained []string // keys that had no standing before: release their quarantine
	var lost []string   // AuthorIDs that had: take back what they left
	if s.standings != nil {
		for key, sd := range st {
			if sd.Weight > 0 && !(s.standings[key].Weight > 0) {
				gained = append(gained, key)
			}
		}
		for author, w := range s.authors {
			if w > 0 && !(authors[author] > 0) {
				lost = append(lost, author)
			}
		}
	}
	s.standings, s.authors, s.authorKeys = st, authors, authorKeys
	s.vouchers = map[string][]string{}
	for voucher, keys := range vouches {
		for _, k := range keys {
			s.vouchers[k] = append(s.vouchers[k], voucher)
		}
	}
	for _, vs := range s.vouchers {
		slices.Sort(vs)
	}
	var found []Peer
	for key, sd := range st {
		if _, ok := s.byKey[key]; ok || sd.Via == "" {
			continue
		}
		via := s.byKey[sd.Via]
		if via == nil {
			continue
		}
		v, err := note.NewVerifier(key)
		if err != nil {
			continue // checked when the vouch was admitted
		}
		found = append(found, Peer{URL: hostLog(via.url) + MirrorPath(v), Key: key})
	}
	s.mu.Unlock()
	slices.SortFunc(found, func(a, b Peer) int { return strings.Compare(a.Key, b.Key) })
	for _, pc := range found {
		if err := s.follow(ctx, pc); err != nil {
			return err
		}
	}
	slices.Sort(lost)
	for _, author := range lost {
		if err := s.withdraw(ctx, author); err != nil {
			return err
		}
	}
	slices.Sort(gained)
	for _, key := range gained {
		if err := s.release(ctx, key); err != nil {
			return err
		}
	}
	if s.cfg.Voting != nil {
		return s.cfg.Voting.Reapply(ctx)
	}
	return nil
}

// retrustOrWarn retrusts; a failure here (the node's own state or
// mirrors) is not the peer's doing: it is logged, and the next turn of
// any peer tries again (warning once until it succeeds).
func (s *Syncer) retrustOrWarn(ctx context.Context) {
	was := s.stale.Load()
	if err := s.retrust(ctx); err != nil && ctx.Err() == nil && !was {
		s.cfg.Logger.Warn("following what the vouches reach", "network", s.cfg.Network, "err", err.Error())
	}
}

// distrust takes the standing of key, whose log was caught showing two
// histories (the evidence is kept), and what the library holds on its
// word alone.
func (s *Syncer) distrust(ctx context.Context, key string) {
	s.mu.Lock()
	s.forked[key] = true
	s.mu.Unlock()
	s.retrustOrWarn(ctx)
}

// withdraw takes back what author, without standing now, left in the
// library, and counts it on the author's log.
func (s *Syncer) withdraw(ctx context.Context, author string) error {
	if s.cfg.Withdraw == nil {
		return nil
	}
	n, err := s.cfg.Withdraw(ctx, author)
	if n > 0 {
		s.mu.Lock()
		peers := slices.Clone(s.peers)
		s.mu.Unlock()
		for _, p := range peers {
			if keyAuthorID(p.key) == author {
				p.count(Withdrawn, int64(n))
			}
		}
		s.cfg.Logger.Warn("took back the lessons of an author without standing: quarantined, no longer injected",
			"network", s.cfg.Network, "author", author, "withdrawn", n)
	}
	return err
}

// sweep takes back, once Run begins, what authors without standing left
// in the library: their standing may have gone while the node was down
// (a peer taken out of the configuration), or a withdrawal was cut
// short. It reads every endorsing author once.
func (s *Syncer) sweep(ctx context.Context) {
	if s.cfg.Withdraw == nil {
		return
	}
	authors, err := s.cfg.State.Endorsers(ctx)
	for _, a := range authors {
		if err != nil {
			break
		}
		if !(s.AuthorWeight(a) > 0) {
			err = s.withdraw(ctx, a)
		}
	}
	if err != nil && ctx.Err() == nil {
		s.cfg.Logger.Warn("taking back the lessons of authors without standing", "network", s.cfg.Network, "err", err.Error())
	}
}

// AuthorWeight is the trust weight of a record's author, by AuthorID.
func (s *Syncer) AuthorWeight(author string) float64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.authors[author]
}

// release admits what the key's author has in quarantine, now that it
// has standing.
func (s *Syncer) release(ctx context.Context, key string) error {
	v, err := note.NewVerifier(key)
	if err != nil {
		return nil
	}
	author := keyAuthorID(v)
	es, err := s.cfg.State.Quarantined(ctx, s.cfg.Network, author)
	if err != nil || len(es) == 0 {
		return err
	}
	for i := range es {
		r := Record{Experience: &es[i], Author: v.Name(), KeyHash: v.KeyHash()}
		if _, err := s.cfg.Admit(ctx, r, true); err != nil {
			return err
		}
		if err := s.cfg.State.Release(ctx, author, es[i]); err != nil {
			return err
		}
	}
	s.cfg.Logger.Info("admitted the quarantined records of a log that gained standing", "author", author, "records", len(es))
	return nil
}

// follow starts following a log found through vouches.
func (s *Syncer) follow(ctx context.Context, pc Peer) error {
	s.mu.Lock()
	full := len(s.peers) >= MaxFollowed
	if full {
		s.skipped++
	}
	s.mu.Unlock()
	if full {
		s.cfg.Logger.Warn("not following a vouched log: the network follows the most logs it may", "key", pc.Key, "max", MaxFollowed)
		return nil
	}
	p, err := s.openPeer(ctx, pc)
	if err != nil {
		return err
	}
	s.mu.Lock()
	if _, dup := s.byKey[pc.Key]; dup {
		s.mu.Unlock()
		return p.mirror.Close()
	}
	s.add(p)
	start := s.run
	s.mu.Unlock()
	s.cfg.Logger.Info("following a vouched log", "url", p.url, "author", p.name)
	if start != nil {
		start(p)
	}
	return nil
}
