package config

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// ByteSize is a number of bytes, written in the file and the environment
// as a plain integer (bytes) or a number with a unit: B; KiB, MiB, GiB,
// TiB (powers of 1024, as GOMEMLIMIT writes them); kB, MB, GB, TB (powers
// of 1000); "4GiB", "1.5GB", "512MiB". "off" is -1, for settings where it
// means none.
type ByteSize int64

// Off is the ByteSize "off".
const Off ByteSize = -1

var sizeUnits = []struct {
	suffix string
	scale  float64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
	{"kB", 1e3}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12},
	{"B", 1},
}

var errSize = errors.New("not a size (use a form like 4GiB, 512MiB, 2GB or a number of bytes)")

// ParseByteSize parses a ByteSize.
func ParseByteSize(s string) (ByteSize, error) {
	s = strings.TrimSpace(s)
	if s == "off" {
		return Off, nil
	}
	num, scale := s, 1.0
	for _, u := range sizeUnits {
		if n, ok := strings.CutSuffix(s, u.suffix); ok {
			num, scale = strings.TrimSpace(n), u.scale
			break
		}
	}
	if num == "" {
		return 0, fmt.Errorf("%q is %w", s, errSize)
	}
	if n, err := strconv.ParseInt(num, 10, 64); err == nil && scale == 1 {
		return ByteSize(n), nil
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || f < 0 {
		return 0, fmt.Errorf("%q is %w", s, errSize)
	}
	if f*scale >= math.MaxInt64 {
		return 0, fmt.Errorf("%q is too large", s)
	}
	return ByteSize(f * scale), nil
}

// UnmarshalText parses a ByteSize.
func (b *ByteSize) UnmarshalText(text []byte) error {
	v, err := ParseByteSize(string(text))
	if err != nil {
		return err
	}
	*b = v
	return nil
}

// UnmarshalYAML parses a ByteSize from the file. A value that is no size
// is a type error, as for any field, so that decoding goes on and config
// check reports it with its line and field.
func (b *ByteSize) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		if v, err := ParseByteSize(n.Value); err == nil {
			*b = v
			return nil
		}
	}
	return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: cannot unmarshal %s into a size", n.Line, describe(n))}}
}

// String writes b as it may be read back: "off", in the largest binary
// unit that divides it, or in bytes.
func (b ByteSize) String() string {
	if b == Off {
		return "off"
	}
	for _, u := range []struct {
		suffix string
		scale  int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if b != 0 && int64(b)%u.scale == 0 {
			return strconv.FormatInt(int64(b)/u.scale, 10) + u.suffix
		}
	}
	return strconv.FormatInt(int64(b), 10)
}

// MarshalText writes b as String does.
func (b ByteSize) MarshalText() ([]byte, error) { return []byte(b.String()), nil }

// Memory limit defaults (Config.MemoryLimit).
const (
	// MinMemoryLimit is the smallest memory_limit accepted: below it the
	// runtime and the proxy's own buffers do not fit, and the collector
	// would run without pause.
	MinMemoryLimit = 32 << 20
	// MemoryHeadroom is the least the default memory limit leaves above
	// what dso holds: the garbage requests make between two collections.
	// dso's own working set (measured: about 35 MiB resident idle, 85 MiB
	// at the peak of the RSS benchmark's 32 chat clients and 1 MiB bodies)
	// is live, and so counted in what it holds.
	MemoryHeadroom = 64 << 20
)

// DefaultMemoryLimit is the memory limit dso sets, unless configured, when
// it holds live bytes (the live heap, mostly the library's index): those
// bytes, and the larger of MemoryHeadroom and a sixteenth of them above.
// The index holds no pointers, so a collection costs what the rest of the
// heap does however large the library, and collecting often to stay
// within the headroom is cheap; without a limit, Go lets the heap grow to
// twice what is live (GOGC=100), which for a large library is as much
// garbage as index.
func DefaultMemoryLimit(live int64) int64 {
	return live + max(MemoryHeadroom, live/16)
}
