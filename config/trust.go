package config

import (
	"fmt"
	"strings"
)

// Trust says whom a node trusts on a network. The zero value trusts the
// configured peers (those not quarantined) and, through their vouches,
// the logs they follow, to a depth of 3: the last node of a line of four
// trusts the first.
type Trust struct {
	// Keys are verifier keys trusted outright, with full weight, wherever
	// their logs are found (an allow-list beside the peers).
	Keys []string `yaml:"keys"`
	// Depth bounds how far trust passes along vouches: 1 is the peers
	// and keys themselves, 2 the logs they vouch for, and so on. Zero:
	// 3; at most 8.
	Depth int `yaml:"depth"`
	// MaxVouches is how many of one node's vouches count. Zero: 16.
	MaxVouches int `yaml:"max_vouches"`
	// RetireBelow is the trust-weighted approval under which the
	// network's votes retire an experience here. Zero: 0.66.
	RetireBelow float64 `yaml:"retire_below"`
	// MinVoteWeight is the trust weight the votes on an experience must
	// carry together before they retire it (each node weighs at most 1).
	// Zero: 2.
	MinVoteWeight float64 `yaml:"min_vote_weight"`
	// Aggregate combines the confidences several authors published for
	// one experience, weighted by their trust: "median" (the default;
	// breakdown point 50%) or "trimmed_mean" (20% of the weight cut from
	// each end; breakdown point 20%).
	Aggregate string `yaml:"aggregate"`
	// NoVotes keeps this node's votes to itself: by default it publishes
	// its grade of each experience it holds from the network, and of its
	// own shared ones.
	NoVotes bool `yaml:"no_votes"`
}

// validate adds the problems of a trust section at path.
func (t Trust) validate(path string, add func(path, format string, args ...any)) {
	for i, k := range t.Keys {
		if name, _, ok := strings.Cut(k, "+"); !ok || strings.Count(k, "+") < 2 || name == "" {
			add(fmt.Sprintf("%s.keys[%d]", path, i), "must be a verifier key, name+hash+key, as dso keygen prints it")
		}
	}
	if t.Depth < 0 || t.Depth > 8 {
		add(path+".depth", "%d is outside [0, 8]", t.Depth)
	}
	if t.MaxVouches < 0 {
		add(path+".max_vouches", "must not be negative")
	}
	if t.RetireBelow < 0 || t.RetireBelow > 1 {
		add(path+".retire_below", "%v is outside [0, 1]", t.RetireBelow)
	}
	if t.Aggregate != "" && t.Aggregate != "median" && t.Aggregate != "trimmed_mean" {
		add(path+".aggregate", "%q is not median or trimmed_mean", t.Aggregate)
	}
	if t.MinVoteWeight < 0 {
		add(path+".min_vote_weight", "must not be negative")
	}
}
