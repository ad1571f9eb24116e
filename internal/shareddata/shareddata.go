// Package shareddata finds the real data kept beside the checkout
// (../shared/data: GloVe vectors, STS-B pairs) for tests and benchmarks, and
// skips the caller where it is absent (testenv.SharedData: it fails instead
// where DSO_TEST_REQUIRE names shared-data, as in CI).
package shareddata

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/dso-proxy/dso/internal/testenv"
)

// Dir returns ../shared/data beside the module root, or skips tb with the
// reason when there is none (see testenv.Skip).
func Dir(tb testing.TB) string {
	tb.Helper()
	dir, err := os.Getwd()
	if err != nil {
		tb.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			tb.Fatal("shareddata: no go.mod above the test directory")
		}
		dir = parent
	}
	data := filepath.Join(dir, "..", "shared", "data")
	if _, err := os.Stat(data); err != nil {
		testenv.Skip(tb, testenv.SharedData, "no %s beside the checkout (GloVe vectors, STS-B pairs)", data)
	}
	return data
}

// GloVe is the path of the GloVe 100-d word-vector file.
func GloVe(tb testing.TB) string {
	tb.Helper()
	return filepath.Join(Dir(tb), "glove", "glove-6B-100d-top50k.txt.gz")
}
