package config

import (
	"fmt"
	"net/url"
	"strings"
)

// Witness is a witness of the network (C2SP tlog-witness): a node or
// service that cosigns a log's checkpoints only when each extends the
// last one it cosigned, so that a log cannot show its followers one
// history and its witness another.
type Witness struct {
	// URL is the witness's submission prefix: this node's log posts
	// each checkpoint it signs to URL/add-checkpoint. A dso witness's is
	// <node>/log/<id>/witness. Empty: the witness's cosignatures count on
	// the logs this node follows, and its own log does not ask it.
	URL string `yaml:"url"`
	// Key is the verifier key of the witness's cosignatures: for a dso
	// witness its verifier key, as dso keygen prints it (it cosigns with
	// that key), or any Ed25519 cosignature/v1 key (type 0x04).
	Key string `yaml:"key"`
}

// validateWitnesses adds the problems of the witness settings.
func (n Network) validateWitnesses(add func(path, format string, args ...any)) {
	keys := map[string]bool{}
	for i, w := range n.Witnesses {
		path := fmt.Sprintf("network.witnesses[%d]", i)
		if w.URL != "" {
			if u, err := url.Parse(w.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				add(path+".url", "%q is not an http or https URL", w.URL)
			}
		}
		// The key is parsed where it is used (network.WitnessVerifiers);
		// here only its shape, and that a witness counts once.
		if name, _, ok := strings.Cut(w.Key, "+"); !ok || strings.Count(w.Key, "+") < 2 || name == "" {
			add(path+".key", "must be a verifier key, name+hash+key, as dso keygen prints it")
			continue
		}
		if keys[w.Key] {
			add(path+".key", "the same witness twice")
		}
		keys[w.Key] = true
	}
	if n.WitnessQuorum < 0 || n.WitnessQuorum > len(n.Witnesses) {
		add("network.witness_quorum", "%d is outside [0, %d], the witnesses listed", n.WitnessQuorum, len(n.Witnesses))
	}
}
