package main

import (
	"strings"

	"github.com/dso-proxy/dso/config"
	"github.com/dso-proxy/dso/network"
)

// openWitnessing makes n a witness of its peers' logs when configured to
// be, and has its own log ask the configured witnesses that have a URL to
// cosign its checkpoints.
func (n *networkNode) openWitnessing() error {
	nc := n.cfg
	if nc.Witness {
		logs := map[string]string{}
		for _, p := range nc.Peers {
			// Quarantined peers too: a cosignature says the log showed
			// one history, not that its records are trusted.
			if name, _, ok := strings.Cut(p.Key, "+"); ok {
				logs[network.Origin(name, nc.ID)] = p.Key
			}
		}
		w, err := network.NewWitness(network.WitnessConfig{Cosigner: n.id.Cosigner, Logs: logs, State: n.state, Logger: n.logger})
		if err != nil {
			return err
		}
		n.witness = w
	}
	var remote []network.RemoteWitness
	for _, w := range nc.Witnesses {
		if w.URL != "" && !sameWitnessKey(w.Key, n.id) {
			remote = append(remote, network.RemoteWitness{URL: w.URL, Key: w.Key})
		}
	}
	if len(remote) == 0 {
		return nil
	}
	wl, err := network.NewWitnessedLog(network.WitnessedLogConfig{Log: n.log, Witnesses: remote, Logger: n.logger})
	if err != nil {
		return err
	}
	n.witnessed = wl
	return nil
}

// witnessKeys are the keys of the network's witnesses, whose
// cosignatures the logs n follows need.
func witnessKeys(nc config.Network) []string {
	keys := make([]string, len(nc.Witnesses))
	for i, w := range nc.Witnesses {
		keys[i] = w.Key
	}
	return keys
}

// sameWitnessKey reports whether key names the node itself as a witness:
// its log does not ask itself (it witnesses its peers' logs only).
func sameWitnessKey(key string, id network.Identity) bool {
	return key == id.VerifierKey || key == id.WitnessKey
}
