package config

import (
	"fmt"
	"strings"
)

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
}

// Enabled reports whether a network is configured.
func (n Network) Enabled() bool { return n.ID != "" }

// validate adds the problems of the network section.
func (n Network) validate(add func(path, format string, args ...any)) {
	if !n.Enabled() {
		if n.KeyFile != "" || len(n.Share) > 0 {
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
