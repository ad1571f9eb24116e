package network

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestLoadKeyRejects(t *testing.T) {
	dir := t.TempDir()
	for _, tt := range []struct {
		name string
		data string
	}{
		{"empty", ""},
		{"verifier key", "nodeA+12345678+AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA="},
		{"garbage", "PRIVATE+KEY+x+zz+!!"},
		{"two lines", "a\nb\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := filepath.Join(dir, tt.name)
			if err := os.WriteFile(f, []byte(tt.data), 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := LoadKey(f); !errors.Is(err, ErrKeyFile) {
				t.Errorf("LoadKey(%q) = %v; want ErrKeyFile", tt.data, err)
			}
		})
	}
}
