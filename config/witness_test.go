package config

import (
	"strings"
	"testing"
)

func TestCheckWitnesses(t *testing.T) {
	const head = "network:\n  id: hanzo\n  key_file: k\n"
	for _, tt := range []struct {
		name string
		yaml string
		want []string // "line path" of each problem
	}{
		{"witness", head + "  witness: true\n", nil},
		{"witnesses", head + "  witnesses: [{url: \"https://w.example/log/hanzo/witness\", key: \"nodeW+1a2b3c4d+AbC\"}, {key: \"nodeV+1a2b3c4d+AbC\"}]\n  witness_quorum: 2\n", nil},
		{"bad url", head + "  witnesses: [{url: \"ftp://w\", key: \"nodeW+1a2b3c4d+AbC\"}]\n", []string{"4 network.witnesses[0].url"}},
		{"bad key", head + "  witnesses: [{url: \"http://w\", key: \"nodeW\"}]\n", []string{"4 network.witnesses[0].key"}},
		{"twice", head + "  witnesses: [{key: \"nodeW+1+x\"}, {key: \"nodeW+1+x\"}]\n", []string{"4 network.witnesses[1].key"}},
		{"quorum over", head + "  witnesses: [{key: \"nodeW+1+x\"}]\n  witness_quorum: 2\n", []string{"5 network.witness_quorum"}},
		{"quorum negative", head + "  witness_quorum: -1\n", []string{"4 network.witness_quorum"}},
		{"without id", "network:\n  witness: true\n", []string{"2 network.id"}},
		{"in networks", "networks:\n  - id: hanzo\n    key_file: k\n    witness_quorum: 1\n", []string{"4 networks[0].witness_quorum"}},
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
