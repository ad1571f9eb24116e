package config

import (
	"strings"
	"testing"
)

func TestParseByteSize(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want ByteSize
	}{
		{"4GiB", 4 << 30}, {"512MiB", 512 << 20}, {"1.5GiB", 3 << 29}, {"64KiB", 64 << 10}, {"2TiB", 2 << 40},
		{"2GB", 2e9}, {"1.5 GB", 1.5e9}, {"10kB", 10e3}, {"10KB", 10e3}, {"300MB", 300e6},
		{"1073741824", 1 << 30}, {"100B", 100}, {"off", Off}, {" 8GiB ", 8 << 30},
	} {
		got, err := ParseByteSize(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("ParseByteSize(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
	for _, in := range []string{"", "GiB", "4 gigs", "-1GiB", "NaNGiB", "1e30TiB", "4gib", "four"} {
		if got, err := ParseByteSize(in); err == nil {
			t.Errorf("ParseByteSize(%q) = %v; want an error", in, got)
		}
	}
	for _, b := range []ByteSize{4 << 30, 3 << 29, 1e9, 100, Off, 0} {
		back, err := ParseByteSize(b.String())
		if err != nil || back != b {
			t.Errorf("%d: String %q reads back as %v, %v", int64(b), b.String(), back, err)
		}
	}
}

func TestMemoryLimitConfig(t *testing.T) {
	for _, tt := range []struct {
		yaml string
		env  string
		want ByteSize
		err  string
	}{
		{yaml: "", want: 0},
		{yaml: "memory_limit: 4GiB\n", want: 4 << 30},
		{yaml: "memory_limit: 1073741824\n", want: 1 << 30},
		{yaml: "memory_limit: off\n", want: Off},
		{yaml: "memory_limit: 4GiB\n", env: "512MiB", want: 512 << 20},
		{yaml: "memory_limit: 1MiB\n", err: "memory_limit: 1MiB is below 32MiB"},
		{yaml: "memory_limit: -5\n", err: "memory_limit: must not be negative"},
		{env: "lots", err: "DSO_MEMORY_LIMIT: \"lots\" is not a size"},
	} {
		c, _, err := parse([]byte(tt.yaml))
		if err == nil {
			err = c.ApplyEnv(func(k string) string {
				if k == EnvMemoryLimit {
					return tt.env
				}
				return ""
			})
		}
		if err == nil {
			err = c.Validate()
		}
		switch {
		case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
			t.Errorf("%q, env %q: got %v; want an error containing %q", tt.yaml, tt.env, err, tt.err)
		case tt.err == "" && (err != nil || c.MemoryLimit != tt.want):
			t.Errorf("%q, env %q: got %v, %v; want %v", tt.yaml, tt.env, c.MemoryLimit, err, tt.want)
		}
	}
	ps := Check([]byte("memory_limit: lots\n"))
	if len(ps) != 1 || ps[0].Line != 1 || ps[0].Path != "memory_limit" || !strings.Contains(ps[0].Msg, "is not a size (use a form like 4GiB") {
		t.Errorf("config check of a bad size: %v", ps)
	}
}

func TestDefaultMemoryLimit(t *testing.T) {
	if got := DefaultMemoryLimit(0); got != MemoryHeadroom {
		t.Errorf("nothing live: %d; want %d", got, MemoryHeadroom)
	}
	if got := DefaultMemoryLimit(16 << 30); got != 17<<30 {
		t.Errorf("16GiB live: %d; want 17GiB", got)
	}
}
