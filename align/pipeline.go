package align

import "fmt"

// Pipeline maps a source model's vector to its canonical vector: the
// adapter into the reference space, centring by the reference mean, then the
// lift. A Pipeline is safe for concurrent use once built.
type Pipeline struct {
	// Adapter maps the source model into the reference space; nil means the
	// source model is the reference model.
	Adapter *Adapter
	// Mean is the reference space's mean, subtracted before the lift; nil
	// means no centring.
	Mean []float32
	// Lift is the network's lift; it must not be nil.
	Lift *Lift
}

// Canonical maps src into the canonical space, writing into dst (grown to
// [LiftDim] capacity when needed) and returning dst[:Dim].
func (p *Pipeline) Canonical(dst, src []float32) ([]float32, error) {
	var buf [LiftDim]float32
	ref := src
	if p.Adapter != nil {
		var err error
		if ref, err = p.Adapter.Apply(buf[:0:LiftDim], src); err != nil {
			return nil, err
		}
	}
	if p.Mean != nil {
		if len(p.Mean) != len(ref) {
			return nil, fmt.Errorf("align: mean has %d components, reference vector %d: %w", len(p.Mean), len(ref), ErrDim)
		}
		if p.Adapter == nil {
			ref = append(buf[:0:LiftDim], ref...)
		}
		for i, m := range p.Mean {
			ref[i] -= m
		}
	}
	return p.Lift.Apply(dst, ref)
}

// Mean returns the component-wise mean of vs, all of the same length.
func Mean(vs [][]float32) []float32 {
	if len(vs) == 0 {
		return nil
	}
	sum := make([]float64, len(vs[0]))
	for _, v := range vs {
		for i, x := range v[:len(sum)] {
			sum[i] += float64(x)
		}
	}
	out := make([]float32, len(sum))
	for i, s := range sum {
		out[i] = float32(s / float64(len(vs)))
	}
	return out
}
