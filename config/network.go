package config

import (
	"fmt"
	"net/url"
	"strings"
	"time"
)

// DefaultSyncInterval is how often a node syncs each peer's log.
const DefaultSyncInterval = 10 * time.Second

// Network is the experience network this node takes part in. The zero
// value (no ID) means none: nothing is shared and no log is served.
type Network struct {
	// ID names the network: lower-case letters, digits, '.', '_', '-'.
	// The node's log of it is served under /log/<ID>/.
	ID string `yaml:"id"`
	// KeyFile is the node's key, made by `dso keygen`. Required with ID.
	KeyFile string `yaml:"key_file"`
	// Share lists the domain prefixes this node publishes on the network.
	// Empty: nothing (the log is served, and stays empty).
	Share []string `yaml:"share"`
	// Peers are the logs this node follows, admits and mirrors onward.
	Peers []Peer `yaml:"peers"`
	// SyncInterval is the time between syncs of a peer. Zero:
	// DefaultSyncInterval.
	SyncInterval time.Duration `yaml:"sync_interval"`
	// Trust says whose records are admitted and whose votes count.
	Trust Trust `yaml:"trust"`
	// Seed is the network's canonical lift seed, the same on every node
	// of it: the codes its records carry are in that lift. Zero:
	// retrieval.seed. A node whose library lifts with another seed
	// publishes its experiences there without codes (receivers re-embed
	// the text anyway).
	Seed uint64 `yaml:"seed"`
	// Witness makes this node a witness (C2SP tlog-witness) of its peers'
	// logs: it answers POST /log/<ID>/witness/add-checkpoint and cosigns,
	// with its key as a cosignature/v1 key, each checkpoint of a peer's
	// log that extends the last one it cosigned of that log.
	Witness bool `yaml:"witness"`
	// Witnesses are the network's witnesses, as this node takes them:
	// its own log asks each one with a URL to cosign every checkpoint it
	// signs, and serves the cosignatures with it; the logs it follows
	// need cosignatures from WitnessQuorum of them.
	Witnesses []Witness `yaml:"witnesses"`
	// WitnessQuorum is how many of Witnesses must have cosigned a
	// followed log's checkpoint before it is accepted. Zero: none.
	WitnessQuorum int `yaml:"witness_quorum"`
}

// Peer is a followed log.
type Peer struct {
	// URL is the peer's address (its log of the network is under
	// /log/<id>/), or the full URL of a log, such as a mirror that a
	// node serves under /log/<id>/mirror/<name>+<hash>.
	URL string `yaml:"url"`
	// Key is the verifier key of the log's author, as dso keygen prints
	// it ("name+hash+key").
	Key string `yaml:"key"`
	// Quarantine admits none of the log's records into the library: they
	// are kept and shown, not injected. False, the default: a configured
	// peer is trusted.
	Quarantine bool `yaml:"quarantine"`
}

// Interval is SyncInterval with its default.
func (n Network) Interval() time.Duration {
	if n.SyncInterval <= 0 {
		return DefaultSyncInterval
	}
	return n.SyncInterval
}

// Enabled reports whether a network is configured.
func (n Network) Enabled() bool { return n.ID != "" }

// validate adds the problems of the network section.
func (n Network) validate(add func(path, format string, args ...any)) {
	if !n.Enabled() {
		if n.KeyFile != "" || len(n.Share) > 0 || len(n.Peers) > 0 || n.Seed != 0 || n.Witness || len(n.Witnesses) > 0 || n.WitnessQuorum != 0 {
			add("network.id", "must be set when network has other settings")
		}
		return
	}
	if !validNetworkID(n.ID) {
		add("network.id", "%q is not 1-64 lower-case letters, digits, '.', '_' or '-' (starting with a letter or digit)", n.ID)
	}
	if n.KeyFile == "" {
		add("network.key_file", "must be set (make one with dso keygen)")
	}
	for i, s := range n.Share {
		if strings.TrimSpace(s) == "" {
			add(fmt.Sprintf("network.share[%d]", i), "must not be empty")
		}
	}
	if n.SyncInterval < 0 {
		add("network.sync_interval", "must not be negative")
	}
	n.Trust.validate("network.trust", add)
	n.validateWitnesses(add)
	names := map[string]bool{}
	for i, p := range n.Peers {
		path := fmt.Sprintf("network.peers[%d]", i)
		if u, err := url.Parse(p.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			add(path+".url", "%q is not an http or https URL", p.URL)
		}
		// The key is checked where it is parsed (network.NewVerifier);
		// here only its shape, name+hash+key, and that one author's log
		// is followed once (its mirror is named by the key's name).
		name, _, ok := strings.Cut(p.Key, "+")
		if !ok || strings.Count(p.Key, "+") < 2 || name == "" {
			add(path+".key", "must be a verifier key, name+hash+key, as dso keygen prints it")
			continue
		}
		if !validNetworkID(strings.ToLower(name)) {
			// The name is a path segment of the log's mirror.
			add(path+".key", "key name %q is not letters, digits, '.', '_' or '-'", name)
			continue
		}
		if names[name] {
			add(path+".key", "a second peer with the key name %q", name)
		}
		names[name] = true
	}
}

// validNetworkID mirrors network.ValidNetworkID; config does not import
// network, whose types it has no use for.
func validNetworkID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9':
		case (c == '.' || c == '_' || c == '-') && i > 0:
		default:
			return false
		}
	}
	return true
}
