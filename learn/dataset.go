package learn

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Item is one training or held-out example: a line of the JSONL dataset.
type Item struct {
	Query       string `json:"query"`
	GroundTruth string `json:"ground_truth"`
	// Domain is the lessons' domain for this item; empty: Config.Domain.
	Domain string `json:"domain,omitempty"`
}

// ReadDataset reads JSONL items, one object per line (blank lines are
// skipped). Every line is checked; the error lists each bad line.
func ReadDataset(r io.Reader) ([]Item, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	var items []Item
	var errs []error
	for line := 1; sc.Scan(); line++ {
		b := sc.Bytes()
		if len(strings.TrimSpace(string(b))) == 0 {
			continue
		}
		var it Item
		dec := json.NewDecoder(strings.NewReader(string(b)))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&it); err != nil {
			errs = append(errs, fmt.Errorf("line %d: %v", line, err))
			continue
		}
		if strings.TrimSpace(it.Query) == "" || strings.TrimSpace(it.GroundTruth) == "" {
			errs = append(errs, fmt.Errorf("line %d: query and ground_truth are required", line))
			continue
		}
		items = append(items, it)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return items, errors.Join(errs...)
}
