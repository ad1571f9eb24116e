package config

import (
	"strings"
	"testing"
)

func TestCheckNetworks(t *testing.T) {
	two := "networks:\n  - {id: code, key_file: k, share: [code]}\n  - {id: research, key_file: k, share: [research], seed: 7}\n"
	for _, tt := range []struct {
		name string
		yaml string
		want []string // "line path" of each problem
	}{
		{"two", two, nil},
		{"both", "network: {id: hanzo, key_file: k}\n" + two, []string{"3 networks"}},
		{"same id", "networks:\n  - {id: code, key_file: k}\n  - {id: code, key_file: k2}\n", []string{"3 networks[1].id"}},
		{"no id", "networks:\n  - {id: code, key_file: k}\n  - {key_file: k}\n", []string{"3 networks[1].id"}},
		{"entry checks", "networks:\n  - {id: code, key_file: k}\n  - id: research\n    share: [research, \"\"]\n    sync_interval: -1s\n",
			[]string{"3 networks[1].key_file", "4 networks[1].share[1]", "5 networks[1].sync_interval"}},
		{"peers per network", "networks:\n  - {id: a, key_file: k, peers: [{url: \"http://a\", key: \"nodeA+1+x\"}]}\n  - {id: b, key_file: k, peers: [{url: \"http://a\", key: \"nodeA+1+x\"}, {url: \"ftp://b\", key: \"nodeB+1+x\"}]}\n",
			[]string{"3 networks[1].peers[1].url"}},
		{"seed without id", "network: {seed: 3}\n", []string{"1 network.id"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := Check([]byte(tt.yaml))
			if len(got) != len(tt.want) {
				t.Fatalf("got %d problems; want %d:\n%s", len(got), len(tt.want), problemList(got))
			}
			for i, w := range tt.want {
				line, path, _ := strings.Cut(w, " ")
				if s := got[i].Error(); !strings.HasPrefix(s, "line "+line+": "+path+":") {
					t.Errorf("problem %d = %q; want line %s, path %q", i, s, line, path)
				}
			}
		})
	}
}

func TestJoinedNetworks(t *testing.T) {
	var c Config
	if got := c.JoinedNetworks(); len(got) != 0 {
		t.Errorf("no network: got %v", got)
	}
	c.Network = Network{ID: "hanzo", KeyFile: "k"}
	if got := c.JoinedNetworks(); len(got) != 1 || got[0].ID != "hanzo" {
		t.Errorf("network: got %v; want hanzo", got)
	}
	c.Network = Network{}
	c.Networks = []Network{{ID: "code"}, {ID: "research"}}
	if got := c.JoinedNetworks(); len(got) != 2 || got[0].ID != "code" || got[1].ID != "research" {
		t.Errorf("networks: got %v; want code, research", got)
	}
}
