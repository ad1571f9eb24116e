// Package testenv is how a test skips for want of something outside the
// repository (the shared data, a program, a device), and the switch that
// turns such a skip into a failure where that thing must be present.
//
// A plain clone runs `go test ./...` and skips, saying why, the tests whose
// needs are not met. CI, which installs or provides them, names them in
// DSO_TEST_REQUIRE (for example "shared-data,redis,chromium"), and a test
// whose need is named fails instead of skipping. Every other skip in the
// repository is asked for by -short or is a benchmark's: cmd/dso's
// TestSkipsNameTheirNeed holds the tests to that.
package testenv

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
)

// EnvRequire names the environment variable that lists, comma-separated,
// the needs that must be met; "all" names every one.
const EnvRequire = "DSO_TEST_REQUIRE"

// Need is something from outside the repository that a test needs.
type Need string

// The needs, in DSO_TEST_REQUIRE's vocabulary.
const (
	SharedData Need = "shared-data" // ../shared/data beside the checkout: GloVe, STS-B
	Redis      Need = "redis"       // redis-server on PATH
	Chromium   Need = "chromium"    // a Chromium-family browser on PATH
	OpenCL     Need = "opencl"      // an OpenCL platform (PoCL on the CPU will do)
)

// Needs lists every Need.
var Needs = []Need{SharedData, Redis, Chromium, OpenCL}

// Required reports whether DSO_TEST_REQUIRE names need. A name outside
// Needs (a typo) is an error, so that a misspelt requirement cannot pass
// as a skip.
func Required(need Need) (bool, error) {
	v := strings.TrimSpace(os.Getenv(EnvRequire))
	if v == "" {
		return false, nil
	}
	named := false
	for _, f := range strings.Split(v, ",") {
		f = strings.TrimSpace(f)
		switch {
		case f == "all":
			named = true
		case slices.Contains(Needs, Need(f)):
			named = named || Need(f) == need
		case f != "":
			return false, fmt.Errorf("testenv: %s=%q: unknown need %q (known: all, %s)", EnvRequire, v, f, joinNeeds())
		}
	}
	return named, nil
}

// Skip skips tb because need is not met here, with the reason format and
// args give; where DSO_TEST_REQUIRE names need, it fails tb instead.
func Skip(tb testing.TB, need Need, format string, args ...any) {
	tb.Helper()
	msg := fmt.Sprintf(format, args...)
	required, err := Required(need)
	switch {
	case err != nil:
		tb.Fatal(err)
	case required:
		tb.Fatalf("%s required (%s=%s) but absent: %s", need, EnvRequire, os.Getenv(EnvRequire), msg)
	default:
		tb.Skipf("%s absent: %s", need, msg)
	}
}

func joinNeeds() string {
	s := make([]string, len(Needs))
	for i, n := range Needs {
		s[i] = string(n)
	}
	return strings.Join(s, ", ")
}
