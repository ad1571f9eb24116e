package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"time"

	"github.com/dso-proxy/dso/config"
	"github.com/dso-proxy/dso/library"
	"github.com/dso-proxy/dso/network"
	"github.com/dso-proxy/dso/proxy"
	"github.com/dso-proxy/dso/store"
)

// networkLogFile is the file of the node's log of network id, in the data
// directory beside the store: a file of its own, so that the store's
// schema and the log's never meet. What the node keeps of the logs it
// follows is in the same file.
func networkLogFile(data, id string) string {
	return filepath.Join(data, "network", id+".db")
}

// networkNode is the node's part in one configured network: its own log,
// the publisher of its shared domains, and the followers of its peers.
type networkNode struct {
	cfg    config.Network
	id     network.Identity
	log    *network.Log
	state  *network.State
	syncer *network.Syncer
	voting *network.Voting
	// witness answers the peers' logs' add-checkpoint requests (nil: the
	// node is no witness); witnessed is the node's log with the
	// cosignatures its witnesses gave (nil: it asks none).
	witness   *network.Witness
	witnessed *network.WitnessedLog
	logger    *slog.Logger
	stop      []func() // in order, by close
	// admitted reports experiences admitted from any network the node
	// is in (see networkNodes.admitted); nil: from this one.
	admitted func(ctx context.Context, id string) (bool, error)
}

var _ proxy.NetworkReporter = (*networkNode)(nil)

// openNetwork opens the node's log of network nc and the state of its
// peers (nil, nil when nc is not enabled). lib, when not nil, is where the
// peers' records are admitted. Nothing runs until start.
func openNetwork(ctx context.Context, cfg config.Config, nc config.Network, lib *library.Library, logger *slog.Logger) (*networkNode, error) {
	if !nc.Enabled() {
		return nil, nil
	}
	id, err := network.LoadKey(nc.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("network %s: key_file: %w", nc.ID, err)
	}
	path := networkLogFile(cfg.Data, nc.ID)
	l, err := network.OpenLog(ctx, network.LogConfig{Path: path, Origin: network.Origin(id.Signer.Name(), nc.ID), Identity: id})
	if err != nil {
		return nil, err
	}
	n := &networkNode{cfg: nc, id: id, log: l, logger: logger}
	if n.state, err = network.OpenState(ctx, path); err != nil {
		n.close()
		return nil, err
	}
	if err := n.openWitnessing(); err != nil {
		n.close()
		return nil, err
	}
	voting := n.newVoting(lib)
	n.voting = voting
	admit, withdraw, verify := n.admitter(lib, voting)
	n.syncer, err = network.NewSyncer(ctx, network.SyncConfig{
		Network: nc.ID, Peers: peersOf(nc), Interval: nc.Interval(), Dir: filepath.Dir(path),
		State: n.state, Admit: admit, Withdraw: withdraw, Verify: verify, Voting: voting, Logger: logger,
		Trust: network.TrustConfig{Roots: nc.Trust.Keys, Depth: nc.Trust.Depth, MaxVouches: nc.Trust.MaxVouches,
			Self: id.VerifierKey},
		Witnesses: witnessKeys(nc), WitnessQuorum: nc.WitnessQuorum,
	})
	if err != nil {
		n.close()
		return nil, err
	}
	if lib == nil && len(nc.Peers) > 0 {
		logger.Warn("retrieval is disabled: the peers' logs are followed and mirrored, their records not admitted")
	}
	return n, nil
}

func peersOf(nc config.Network) []network.Peer {
	ps := make([]network.Peer, len(nc.Peers))
	for i, p := range nc.Peers {
		ps[i] = network.Peer{URL: p.URL, Key: p.Key, Trusted: !p.Quarantine}
	}
	return ps
}

// admitter admits records into lib, and takes back what authors that
// lost their standing left there; without a library, records are counted
// as not admitted.
func (n *networkNode) admitter(lib *library.Library, v *network.Voting) (
	func(context.Context, network.Record, bool) (string, error), func(context.Context, string) (int, error),
	func(context.Context) (network.Verified, error)) {
	if lib == nil {
		return func(context.Context, network.Record, bool) (string, error) { return "not_admitted", nil }, nil, nil
	}
	a := &network.Admitter{Network: n.cfg.ID, Library: lib, State: n.state, Voting: v, Aggregate: n.cfg.Trust.Aggregate,
		Weight:      func(author string) float64 { return n.syncer.AuthorWeight(author) },
		Root:        func(author string) string { return n.syncer.AuthorRoot(author) },
		CannotEmbed: func(err error) bool { return errors.Is(err, library.ErrEmbed) || errors.Is(err, library.ErrNotReady) }}
	return a.Admit, a.Withdraw, a.Verify
}

// voting weighs the network's votes and retires, in lib, what they
// disapprove of; without a library votes are kept and weighed only.
func (n *networkNode) newVoting(lib *library.Library) *network.Voting {
	v := &network.Voting{State: n.state, RetireBelow: n.cfg.Trust.RetireBelow, MinWeight: n.cfg.Trust.MinVoteWeight}
	if lib != nil {
		v.Library = lib
	}
	return v
}

// vouchKeys are the keys the node vouches for in its log: the peers it
// trusts and its allow-list, so that the nodes following it find them.
func vouchKeys(nc config.Network) []string {
	var keys []string
	for _, p := range nc.Peers {
		if !p.Quarantine {
			keys = append(keys, p.Key)
		}
	}
	return append(keys, nc.Trust.Keys...)
}

// start publishes the shared domains and follows the peers until close.
func (n *networkNode) start(ctx context.Context, cfg config.Config) error {
	if n == nil {
		return nil
	}
	if _, err := n.log.Vouch(ctx, n.cfg.ID, vouchKeys(n.cfg), time.Now()); err != nil {
		return err
	}
	admitted := n.admitted
	if admitted == nil {
		admitted = n.state.Admitted
	}
	self := func(ctx context.Context, v network.Vote) error {
		_, err := n.voting.Vote(ctx, n.id.VerifierKey, v)
		return err
	}
	if n.witnessed != nil {
		wctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			n.witnessed.Run(wctx)
		}()
		n.stop = append(n.stop, func() { cancel(); <-done })
	}
	stopPublishing, err := startPublisher(ctx, cfg, n.cfg, n.log, n.state, admitted, self, n.logger)
	if err != nil {
		return err
	}
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		n.syncer.Run(sctx)
	}()
	// Followers first: they write the library the publisher reads.
	n.stop = append(n.stop, func() { cancel(); <-done }, stopPublishing)
	return nil
}

// handler serves the node's log under /log/<id>/, and its mirrors of the
// logs it follows under /log/<id>/mirror/<name>+<hash>/, beside h; observe logs
// and counts their requests under route.
func (n *networkNode) handler(h http.Handler, observe func(route string, h http.Handler) http.Handler) http.Handler {
	if n == nil {
		return h
	}
	prefix := "/log/" + n.cfg.ID
	mux := http.NewServeMux()
	mux.Handle(prefix+"/mirror/", observe("/log/{network}/mirror/*", http.StripPrefix(prefix+"/mirror", n.syncer.MirrorHandler(n.logger))))
	var src network.TileSource = n.log
	if n.witnessed != nil {
		src = n.witnessed
	}
	mux.Handle(prefix+"/", observe("/log/{network}/*", http.StripPrefix(prefix, network.NewHandler(src, n.logger))))
	if n.witness != nil {
		mux.Handle(prefix+"/witness/", observe("/log/{network}/witness/*", http.StripPrefix(prefix+"/witness", n.witness)))
		n.logger.Info("witnessing the peers' logs", "network", n.cfg.ID, "path", prefix+"/witness/add-checkpoint",
			"witness_key", n.id.WitnessKey, "logs", len(n.witness.Origins()))
	}
	mux.Handle("/", h)
	n.logger.Info("serving the node's log", "network", n.cfg.ID, "path", prefix+"/", "origin", n.log.Origin(),
		"size", n.log.Size(), "verifier_key", n.id.VerifierKey, "peers", len(n.cfg.Peers))
	return mux
}

// Status implements proxy.NetworkReporter.
func (n *networkNode) Status(ctx context.Context) (any, error) {
	ns, err := n.status(ctx)
	if err != nil {
		return nil, err
	}
	return map[string]any{"networks": []network.NetworkStatus{ns}}, nil
}

// status is what GET /v1/network shows of n.
func (n *networkNode) status(ctx context.Context) (network.NetworkStatus, error) {
	q, count, err := n.syncer.Quarantine(ctx)
	if err != nil {
		return network.NetworkStatus{}, err
	}
	retired, unvouched, err := n.syncer.TrustCounts(ctx)
	if err != nil {
		return network.NetworkStatus{}, err
	}
	ns := network.NetworkStatus{
		ID: n.cfg.ID, Origin: n.log.Origin(), Size: n.log.Size(), VerifierKey: n.id.VerifierKey,
		Share: n.cfg.Share, Logs: n.syncer.Logs(), Quarantined: count, Quarantine: q,
		Retired: retired, Unvouched: unvouched, Refuted: n.syncer.Refuted(),
	}
	if ns.Share == nil {
		ns.Share = []string{}
	}
	if n.witness != nil {
		ws, err := n.witness.Status(ctx, n.id.WitnessKey)
		if err != nil {
			return network.NetworkStatus{}, err
		}
		ns.Witness = &ws
	}
	if n.witnessed != nil {
		ns.Witnesses = n.witnessed.Status(ctx)
	}
	ns.WitnessQuorum = n.cfg.WitnessQuorum
	return ns, nil
}

// close stops what start started, then closes the files.
func (n *networkNode) close() {
	if n == nil {
		return
	}
	for _, f := range n.stop {
		f()
	}
	if n.syncer != nil {
		n.syncer.Close()
	}
	if n.state != nil {
		if err := n.state.Close(); err != nil {
			n.logger.Warn("closing the network state", "err", err.Error())
		}
	}
	if err := n.log.Close(); err != nil {
		n.logger.Warn("closing the network log", "err", err.Error())
	}
}

// startPublisher publishes the domains network nc shares of the store
// under cfg.Data into l, and the node's votes, until the returned func is
// called; with nothing shared and no votes it does nothing. It opens the
// store file on its own handle, as dso import does, so that serve's
// retrieval wiring stays as it is. admitted reports the experiences that
// are other nodes', not to sign; selfVote counts the node's own votes.
func startPublisher(ctx context.Context, cfg config.Config, nc config.Network, l *network.Log, state *network.State,
	admitted func(context.Context, string) (bool, error), selfVote func(context.Context, network.Vote) error,
	log *slog.Logger) (func(), error) {
	if len(nc.Share) == 0 && nc.Trust.NoVotes {
		return func() {}, nil
	}
	st, err := store.OpenDir(ctx, cfg.Data, store.Options{})
	if err != nil {
		return nil, fmt.Errorf("network: %w", err)
	}
	pctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	p := newPublisher(st, l, nc.ID, nc.Share, log)
	p.state, p.admitted, p.votes, p.selfVote = state, admitted, !nc.Trust.NoVotes, selfVote
	p.noCodes = !sameLift(cfg.Retrieval, nc)
	go func() {
		defer close(done)
		p.run(pctx)
	}()
	return func() {
		cancel()
		<-done // before the store and the log it writes close
		if err := st.Close(); err != nil {
			log.Warn("closing the store", "err", err.Error())
		}
	}, nil
}
