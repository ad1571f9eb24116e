package config

import (
	"strings"
	"testing"
)

func TestCheckNetwork(t *testing.T) {
	for _, tt := range []struct {
		name string
		yaml string
		want []string // "line path" of each problem
	}{
		{"none", "listen: 127.0.0.1:8080\n", nil},
		{"ok", "network:\n  id: hanzo\n  key_file: ./node.key\n  share: [code]\n", nil},
		{"bad id", "network:\n  id: Hanzo/x\n  key_file: k\n", []string{"2 network.id"}},
		{"no key", "network:\n  id: hanzo\n", []string{"2 network.key_file"}},
		{"no id", "network:\n  key_file: k\n  share: [code]\n", []string{"2 network.id"}},
		{"empty share", "network:\n  id: hanzo\n  key_file: k\n  share: [code, \" \"]\n", []string{"4 network.share[1]"}},
		{"unknown field", "network:\n  id: hanzo\n  key_file: k\n  peer: x\n", []string{"4 "}},
		{"peers", "network:\n  id: hanzo\n  key_file: k\n  sync_interval: 1s\n  peers: [{url: \"http://a.example\", key: \"nodeA+1a2b3c4d+AbC+/x\"}, {url: \"https://b.example/log/hanzo/mirror/nodeC\", key: \"nodeC+1a2b3c4d+AbC\", quarantine: true}]\n", nil},
		{"bad peer url", "network:\n  id: hanzo\n  key_file: k\n  peers: [{url: \"ftp://a\", key: \"nodeA+1a2b3c4d+AbC\"}]\n", []string{"4 network.peers[0].url"}},
		{"bad peer key", "network:\n  id: hanzo\n  key_file: k\n  peers: [{url: \"http://a\", key: \"nodeA\"}]\n", []string{"4 network.peers[0].key"}},
		{"same peer twice", "network:\n  id: hanzo\n  key_file: k\n  peers: [{url: \"http://a\", key: \"nodeA+1+x\"}, {url: \"http://b\", key: \"nodeA+1+x\"}]\n", []string{"4 network.peers[1].key"}},
		{"peers without id", "network:\n  peers: [{url: \"http://a\", key: \"nodeA+1+x\"}]\n", []string{"2 network.id"}},
		{"trust", "network:\n  id: hanzo\n  key_file: k\n  trust: {keys: [\"nodeZ+1a2b+AbC\"], depth: 4, max_vouches: 8, retire_below: 0.5, min_vote_weight: 3, aggregate: trimmed_mean, no_votes: true}\n", nil},
		{"bad trust", "network:\n  id: hanzo\n  key_file: k\n  trust:\n    keys: [nodeZ]\n    depth: 9\n    retire_below: 2\n    min_vote_weight: -1\n    aggregate: mean\n",
			[]string{"5 network.trust.keys[0]", "6 network.trust.depth", "7 network.trust.retire_below", "8 network.trust.min_vote_weight", "9 network.trust.aggregate"}},
		{"trust in networks", "networks:\n  - id: hanzo\n    key_file: k\n    trust: {depth: -1}\n", []string{"4 networks[0].trust.depth"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := Check([]byte(tt.yaml))
			if len(got) != len(tt.want) {
				t.Fatalf("got %d problems; want %d:\n%s", len(got), len(tt.want), problemList(got))
			}
			for i, w := range tt.want {
				line, path, _ := strings.Cut(w, " ")
				if s := got[i].Error(); !strings.HasPrefix(s, "line "+line+": "+path) {
					t.Errorf("problem %d = %q; want line %s, path %q", i, s, line, path)
				}
			}
		})
	}
}
