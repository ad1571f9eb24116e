package network

import (
	"math"
	"testing"
)

func TestAggregate(t *testing.T) {
	eq := func(cs ...float64) []Endorsement {
		var es []Endorsement
		for _, c := range cs {
			es = append(es, Endorsement{c, 1})
		}
		return es
	}
	sybils := append(eq(0.2, 0.2, 0.2), Endorsement{1, 1})
	for range 16 {
		sybils = append(sybils, Endorsement{1, 1.0 / 16})
	}
	for _, tt := range []struct {
		name          string
		es            []Endorsement
		median, trimd float64
	}{
		{"none", nil, 0, 0},
		{"one", eq(0.4), 0.4, 0.4},
		{"odd", eq(0.2, 0.9, 0.8), 0.8, (0.4*0.2 + 0.8 + 0.4*0.9) / 1.8},
		{"even", eq(0.2, 0.9), 0.55, 0.55},
		{"an outlier moves the median not at all", eq(0.5, 0.6, 0.7, 0.0), 0.55, (0.5 + 0.6 + 0.2*0.7) / 2.4},
		{"a trimmed mean cuts 20% of the weight each end", eq(0, 0.5, 0.5, 0.5, 1), 0.5, 0.5},
		{"weightless endorsements do not count", []Endorsement{{0.3, 1}, {1, 0}, {1, 0}}, 0.3, 0.3},
		// Three honest nodes at 0.2 against a trusted node at 1 and the
		// 16 keys it vouches for: by weight it is 3 against 2, which the
		// median withstands; 40% is past the trimmed mean's 20%.
		{"a node's vouched keys weigh what it does", sybils, 0.2, (2*0.2 + 1) / 3},
	} {
		t.Run(tt.name, func(t *testing.T) {
			for method, want := range map[string]float64{AggregateMedian: tt.median, AggregateTrimmedMean: tt.trimd} {
				got, err := Aggregate(method, tt.es)
				if err != nil || math.Abs(got-want) > 1e-9 {
					t.Errorf("%s: %v, %v; want %v", method, got, err, want)
				}
			}
		})
	}
	if _, err := Aggregate("mean", eq(1)); err == nil {
		t.Error("an unknown aggregation is accepted")
	}
}
