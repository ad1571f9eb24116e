package main

import (
	"context"
	"log/slog"
	"net/http"

	"github.com/dso-proxy/dso/config"
	"github.com/dso-proxy/dso/library"
	"github.com/dso-proxy/dso/network"
	"github.com/dso-proxy/dso/proxy"
)

// networkNodes are the node's parts in every network it joined, each with
// its own log, publisher and followers. What any of them admits goes into
// the one library, so retrieval spans the networks (X-DSO-Domain narrows
// it by domain).
type networkNodes []*networkNode

var _ proxy.NetworkReporter = networkNodes(nil)

// openNetworks opens a networkNode per configured network (none when no
// network is configured).
func openNetworks(ctx context.Context, cfg config.Config, lib *library.Library, logger *slog.Logger) (networkNodes, error) {
	var ns networkNodes
	for _, nc := range cfg.JoinedNetworks() {
		n, err := openNetwork(ctx, cfg, nc, lib, logger)
		if err != nil {
			ns.close()
			return nil, err
		}
		ns = append(ns, n)
	}
	if len(ns) > 1 {
		for _, n := range ns {
			n.admitted = ns.admitted
		}
	}
	return ns, nil
}

// admitted reports whether the experience id was admitted from a peer on
// any network: a lesson taken from one network is its author's, never to
// be signed as this node's on another.
func (ns networkNodes) admitted(ctx context.Context, id string) (bool, error) {
	for _, n := range ns {
		if ok, err := n.state.Admitted(ctx, id); ok || err != nil {
			return ok, err
		}
	}
	return false, nil
}

// start starts every network's publisher and followers.
func (ns networkNodes) start(ctx context.Context, cfg config.Config) error {
	for _, n := range ns {
		if err := n.start(ctx, cfg); err != nil {
			return err // serve's deferred close stops those started
		}
	}
	return nil
}

// handler serves every network's log and mirrors under /log/<id>/ beside
// srv: each network's mux passes what is not its own to the next. The
// logs' requests are logged and counted as srv's own are.
func (ns networkNodes) handler(srv *proxy.Server) http.Handler {
	var h http.Handler = srv
	for i := len(ns) - 1; i >= 0; i-- {
		h = ns[i].handler(h, srv.Observe)
	}
	return h
}

// reporter is ns as the proxy takes it: nil when there is no network.
func (ns networkNodes) reporter() proxy.NetworkReporter {
	if len(ns) == 0 {
		return nil
	}
	return ns
}

// Status implements proxy.NetworkReporter: every network, in the order
// configured.
func (ns networkNodes) Status(ctx context.Context) (any, error) {
	out := make([]network.NetworkStatus, 0, len(ns))
	for _, n := range ns {
		s, err := n.status(ctx)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return map[string]any{"networks": out}, nil
}

// close closes every network, the last opened first.
func (ns networkNodes) close() {
	for i := len(ns) - 1; i >= 0; i-- {
		ns[i].close()
	}
}

// sameLift reports whether the library's codes, lifted with retrieval's
// seed, are in network nc's lift. A code cannot be moved to another lift:
// the lift keeps 3840 of 4096 rotated dimensions and the code only their
// signs, so the text would have to be embedded again.
func sameLift(rt config.Retrieval, nc config.Network) bool {
	lib := rt.Seed
	if lib == 0 {
		lib = library.DefaultSeed
	}
	seed := nc.Seed
	if seed == 0 {
		seed = lib
	}
	return seed == lib
}
