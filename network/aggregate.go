package network

import (
	"fmt"
	"slices"
)

// Aggregations of the confidences several authors published for one
// experience.
const (
	// AggregateMedian is the weighted median: its breakdown point is 50%
	// of the weight — authors holding less than half of it cannot move
	// the result outside the range of the others' confidences.
	AggregateMedian = "median"
	// AggregateTrimmedMean is the weighted mean of what remains once
	// TrimFraction of the weight is cut from each end: smoother than the
	// median when authors agree, with a breakdown point of TrimFraction
	// (20%).
	AggregateTrimmedMean = "trimmed_mean"
	// TrimFraction is the weight a trimmed mean cuts from each end.
	TrimFraction = 0.2
)

// Endorsement is one author's confidence in an experience, with the
// author's trust weight.
type Endorsement struct {
	Confidence, Weight float64
}

// Aggregate combines the endorsements by method (see the Aggregate*
// constants; "" is the median). Endorsements without weight do not
// count; with none left it returns 0.
func Aggregate(method string, es []Endorsement) (float64, error) {
	s := slices.DeleteFunc(slices.Clone(es), func(e Endorsement) bool { return !(e.Weight > 0) })
	if len(s) == 0 {
		return 0, nil
	}
	slices.SortFunc(s, func(a, b Endorsement) int {
		switch {
		case a.Confidence < b.Confidence:
			return -1
		case a.Confidence > b.Confidence:
			return 1
		}
		return 0
	})
	var total float64
	for _, e := range s {
		total += e.Weight
	}
	switch method {
	case "", AggregateMedian:
		return weightedMedian(s, total), nil
	case AggregateTrimmedMean:
		return trimmedMean(s, total, TrimFraction), nil
	}
	return 0, fmt.Errorf("network: unknown aggregation %q", method)
}

// weightedMedian of sorted s: the confidence where half the weight lies
// on either side, the mean of the two middle ones when the halves meet
// between them (so equal weights give the usual median).
func weightedMedian(s []Endorsement, total float64) float64 {
	half := total / 2
	var acc float64
	for i, e := range s {
		acc += e.Weight
		switch {
		case nearlyEqual(acc, half) && i+1 < len(s):
			return (e.Confidence + s[i+1].Confidence) / 2
		case acc > half:
			return e.Confidence
		}
	}
	return s[len(s)-1].Confidence
}

// trimmedMean of sorted s, cutting trim of the weight from each end.
func trimmedMean(s []Endorsement, total, trim float64) float64 {
	lo, hi := trim*total, (1-trim)*total
	var acc, sum, kept float64
	for _, e := range s {
		// The part of this endorsement's weight inside [lo, hi].
		from, to := max(acc, lo), min(acc+e.Weight, hi)
		if to > from {
			sum += e.Confidence * (to - from)
			kept += to - from
		}
		acc += e.Weight
	}
	if kept == 0 {
		return weightedMedian(s, total)
	}
	return sum / kept
}

func nearlyEqual(a, b float64) bool {
	d := a - b
	return d < 1e-12 && d > -1e-12
}
