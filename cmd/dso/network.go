package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"

	"github.com/dso-proxy/dso/config"
	"github.com/dso-proxy/dso/network"
	"github.com/dso-proxy/dso/store"
)

// networkLogFile is the file of the node's log of network id, in the data
// directory beside the store: a file of its own, so that the store's
// schema and the log's never meet.
func networkLogFile(data, id string) string {
	return filepath.Join(data, "network", id+".db")
}

// withNetwork serves the node's log of the configured network under
// /log/<id>/ beside h, when a network is configured. The returned func
// closes the log, after the server has stopped.
func withNetwork(ctx context.Context, cfg config.Config, h http.Handler, log *slog.Logger) (http.Handler, func(), error) {
	nc := cfg.Network
	if !nc.Enabled() {
		return h, func() {}, nil
	}
	id, err := network.LoadKey(nc.KeyFile)
	if err != nil {
		return nil, nil, fmt.Errorf("network.key_file: %w", err)
	}
	l, err := network.OpenLog(ctx, network.LogConfig{
		Path:     networkLogFile(cfg.Data, nc.ID),
		Origin:   network.Origin(id.Signer.Name(), nc.ID),
		Identity: id,
	})
	if err != nil {
		return nil, nil, err
	}
	closeLog := func() {
		if err := l.Close(); err != nil {
			log.Warn("closing the network log", "err", err.Error())
		}
	}
	stopPublishing, err := startPublisher(ctx, cfg, l, log)
	if err != nil {
		closeLog()
		return nil, nil, err
	}
	prefix := "/log/" + nc.ID
	mux := http.NewServeMux()
	mux.Handle(prefix+"/", http.StripPrefix(prefix, network.NewHandler(l, log)))
	mux.Handle("/", h)
	log.Info("serving the node's log", "network", nc.ID, "path", prefix+"/", "origin", l.Origin(),
		"size", l.Size(), "verifier_key", id.VerifierKey)
	return mux, func() {
		stopPublishing()
		closeLog()
	}, nil
}

// startPublisher publishes the shared domains of the store under
// cfg.Data into l until the returned func is called; with nothing shared
// it does nothing. It opens the store file on its own handle, as dso
// import does, so that serve's retrieval wiring stays as it is.
func startPublisher(ctx context.Context, cfg config.Config, l *network.Log, log *slog.Logger) (func(), error) {
	if len(cfg.Network.Share) == 0 {
		return func() {}, nil
	}
	st, err := store.OpenDir(ctx, cfg.Data, store.Options{})
	if err != nil {
		return nil, fmt.Errorf("network: %w", err)
	}
	pctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	p := newPublisher(st, l, cfg.Network.ID, cfg.Network.Share, log)
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
