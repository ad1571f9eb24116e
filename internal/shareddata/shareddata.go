// Package shareddata finds the real data kept beside the checkout
// (../shared/data: GloVe vectors, STS-B pairs) for tests and benchmarks, and
// skips the caller where it is absent (testenv.SharedData: it fails instead
// where DSO_TEST_REQUIRE names shared-data, as in CI).
package shareddata

import (
	"encoding/csv"
	"os"
	"path/filepath"
	"strconv"
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

// Pair is one STS-B sentence pair and its human similarity judgement, from
// 0 (unrelated) to 5 (same meaning).
type Pair struct {
	S1, S2 string
	Score  float64
}

// STSB returns the pairs of an STS-B split ("train" or "dev") in file
// order, which runs genre by genre (captions, forums, news).
func STSB(tb testing.TB, split string) []Pair {
	tb.Helper()
	path := filepath.Join(Dir(tb), "stsb", "stsb-en-"+split+".csv")
	f, err := os.Open(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	r := csv.NewReader(f)
	r.FieldsPerRecord = 3
	rows, err := r.ReadAll()
	if err != nil {
		tb.Fatalf("shareddata: %s: %v", path, err)
	}
	ps := make([]Pair, len(rows))
	for i, row := range rows {
		score, err := strconv.ParseFloat(row[2], 64)
		if err != nil {
			tb.Fatalf("shareddata: %s line %d: bad score %q", path, i+1, row[2])
		}
		ps[i] = Pair{row[0], row[1], score}
	}
	return ps
}
