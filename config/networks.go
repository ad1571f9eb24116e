package config

import (
	"fmt"
	"strings"
)

// JoinedNetworks returns every network the node takes part in: Network
// when it is set, else the entries of Networks, in order.
func (c *Config) JoinedNetworks() []Network {
	if c.Network.Enabled() {
		return []Network{c.Network}
	}
	return c.Networks
}

// validateNetworks adds the problems of the network and networks
// sections.
func (c *Config) validateNetworks(add func(path, format string, args ...any)) {
	c.Network.validate(add)
	if len(c.Networks) == 0 {
		return
	}
	if c.Network.Enabled() {
		add("networks", "set either network (one) or networks (several), not both")
	}
	ids := map[string]int{}
	for i, n := range c.Networks {
		prefix := fmt.Sprintf("networks[%d]", i)
		if !n.Enabled() {
			add(prefix+".id", "must be set")
			continue
		}
		// Network.validate names its fields network.*; an entry's are
		// networks[i].*, with the same checks.
		n.validate(func(path, format string, args ...any) {
			add(prefix+strings.TrimPrefix(path, "network"), format, args...)
		})
		if j, dup := ids[n.ID]; dup {
			add(prefix+".id", "%q is also the id of networks[%d]", n.ID, j)
			continue
		}
		ids[n.ID] = i
	}
}
