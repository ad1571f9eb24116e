package main

import (
	"encoding/csv"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// pair is one line of an STS-style pairs file.
type pair struct {
	s1, s2 string
	score  float64
}

// readPairs reads "sentence1,sentence2,score" CSV (quoted as needed; a header
// line whose score is not a number is skipped).
func readPairs(path string) ([]pair, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r := csv.NewReader(f)
	r.FieldsPerRecord = 3
	var ps []pair
	for line := 1; ; line++ {
		rec, err := r.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read pairs: %w", err)
		}
		score, err := strconv.ParseFloat(strings.TrimSpace(rec[2]), 64)
		if err != nil {
			if line == 1 {
				continue // header
			}
			return nil, fmt.Errorf("read pairs line %d: bad score %q", line, rec[2])
		}
		ps = append(ps, pair{rec[0], rec[1], score})
	}
	if len(ps) == 0 {
		return nil, fmt.Errorf("read pairs %s: no pairs", path)
	}
	return ps, nil
}

// readAnchors reads anchor texts: a pairs CSV (both sentences of every pair)
// when the file ends in .csv, else one text per non-empty line. Duplicates
// are dropped.
func readAnchors(path string) ([]string, error) {
	var texts []string
	if strings.HasSuffix(path, ".csv") {
		ps, err := readPairs(path)
		if err != nil {
			return nil, err
		}
		for _, p := range ps {
			texts = append(texts, p.s1, p.s2)
		}
	} else {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		for _, l := range strings.Split(string(b), "\n") {
			if l = strings.TrimSpace(l); l != "" {
				texts = append(texts, l)
			}
		}
	}
	seen := map[string]bool{}
	out := texts[:0]
	for _, t := range texts {
		if !seen[t] {
			seen[t] = true
			out = append(out, t)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("read anchors %s: no texts", path)
	}
	return out, nil
}
