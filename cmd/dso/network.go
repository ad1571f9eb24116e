package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"

	"github.com/dso-proxy/dso/config"
	"github.com/dso-proxy/dso/network"
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
	prefix := "/log/" + nc.ID
	mux := http.NewServeMux()
	mux.Handle(prefix+"/", http.StripPrefix(prefix, network.NewHandler(l, log)))
	mux.Handle("/", h)
	log.Info("serving the node's log", "network", nc.ID, "path", prefix+"/", "origin", l.Origin(),
		"size", l.Size(), "verifier_key", id.VerifierKey)
	return mux, func() {
		if err := l.Close(); err != nil {
			log.Warn("closing the network log", "err", err.Error())
		}
	}, nil
}
