package network

import (
	"slices"
)

// Trust defaults and bounds.
const (
	// DefaultTrustDepth lets the last node of a line of four trust the
	// first: its peer is at depth 1, the peer's peer at 2, the first at 3.
	DefaultTrustDepth = 3
	// MaxTrustDepth bounds how far vouching may reach.
	MaxTrustDepth = 8
	// DefaultMaxVouches is how many of one node's vouches count: a node
	// that vouches for more (say, 50 fresh keys) has the rest ignored.
	DefaultMaxVouches = 16
	// MaxFollowed bounds the logs one network follows, configured and
	// discovered together.
	MaxFollowed = 256
)

// TrustConfig says whom a node trusts on one network.
type TrustConfig struct {
	// Roots are verifier keys trusted outright with full weight: the
	// peers a node is configured to follow (unless quarantined) and its
	// allow-list.
	Roots []string
	// Depth bounds how far trust passes along vouches; a root is at depth
	// 1. 0: DefaultTrustDepth; negative: roots only.
	Depth int
	// MaxVouches bounds the vouches of one node that count. 0:
	// DefaultMaxVouches.
	MaxVouches int
	// Self is the node's own verifier key: never followed, never weighed.
	Self string
	// Distrusted are keys caught showing two histories: no standing,
	// whoever trusts or vouches for them, and their vouches count for
	// nothing.
	Distrusted []string
}

func (c TrustConfig) depth() int {
	switch {
	case c.Depth == 0:
		return DefaultTrustDepth
	case c.Depth < 0:
		return 1
	}
	return min(c.Depth, MaxTrustDepth)
}

func (c TrustConfig) maxVouches() int {
	if c.MaxVouches <= 0 {
		return DefaultMaxVouches
	}
	return c.MaxVouches
}

// Standing is how far a node trusts a key.
type Standing struct {
	// Weight is in [0, 1]: 1 for a root; a vouched key gets a share of
	// its vouchers' weight. 0: no standing (its records are quarantined,
	// its votes do not count).
	Weight float64 `json:"weight"`
	// Depth is the vouches between this node and the key; 1 for a root.
	Depth int `json:"depth"`
	// Via is the key that vouched for it first, through whose host its
	// log is fetched; empty for a root.
	Via string `json:"via,omitempty"`
}

// Standings computes the standing of every key reachable from the roots
// through vouches (voucher key to the keys it vouches for, in the order
// it vouched), breadth first, to cfg's depth.
//
// Weight flows and never grows: a node of weight w that vouches for n
// keys gives each w/n, and a key's weight is what its vouchers at the
// depth above give it, capped at 1. So all the keys one node vouches for
// together weigh no more than it does: a trusted node that mints 50
// fresh keys and vouches for them adds at most its own weight, split 50
// ways, and keys no trusted node vouches for weigh nothing. Only vouches
// from the depth above count, so cycles cannot feed a key's weight.
func Standings(cfg TrustConfig, vouches map[string][]string) map[string]Standing {
	out := map[string]Standing{}
	barred := func(k string) bool { return k == cfg.Self || k == "" || slices.Contains(cfg.Distrusted, k) }
	var layer []string
	for _, k := range cfg.Roots {
		if barred(k) {
			continue
		}
		if _, ok := out[k]; !ok {
			out[k] = Standing{Weight: 1, Depth: 1}
			layer = append(layer, k)
		}
	}
	maxDepth, maxVouches := cfg.depth(), cfg.maxVouches()
	for d := 1; d < maxDepth && len(layer) > 0; d++ {
		next := map[string]Standing{}
		var order []string
		for _, x := range layer {
			w := out[x].Weight
			vs := vouches[x]
			vs = slices.DeleteFunc(slices.Clone(vs[:min(len(vs), maxVouches)]), barred)
			if w <= 0 || len(vs) == 0 {
				continue
			}
			share := w / float64(len(vs))
			for _, k := range vs {
				if _, reached := out[k]; reached {
					continue
				}
				s, seen := next[k]
				if !seen {
					s = Standing{Depth: d + 1, Via: x}
					order = append(order, k)
				}
				s.Weight = min(1, s.Weight+share)
				next[k] = s
			}
		}
		for _, k := range order {
			out[k] = next[k]
		}
		layer = order
	}
	return out
}
