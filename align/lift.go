package align

import (
	"fmt"
	"math"
)

const (
	// Dim is the dimension of the canonical space.
	Dim = 3840
	// LiftDim is the padded dimension the Hadamard rotation works in.
	LiftDim = 4096
	// Rounds is the number of sign-flip + Hadamard rounds of the lift.
	// It is part of the network's definition of the canonical space.
	Rounds = 3
)

// Lift is the fixed, seeded lift from a reference space of at most
// [LiftDim] dimensions to the canonical [Dim]-dimension space: zero-pad to
// 4096, then [Rounds] times flip signs by a seeded random ±1 diagonal and
// apply the orthonormal fast Walsh–Hadamard transform, then keep the first
// 3840 components, scaled by sqrt(4096/3840) so norms are preserved in
// expectation. It costs O(D log D) and is identical on every machine for the
// same seed: the signs come from splitmix64, not math/rand.
//
// The rotated coordinates are inner products with the rows of an orthogonal
// matrix whose rows look random, so each sign bit of the result is a
// random-hyperplane hash of the input and Hamming distance between codes
// estimates the angle between inputs.
//
// A Lift is immutable and safe for concurrent use.
type Lift struct {
	seed  uint64
	signs [Rounds][LiftDim]float32
}

// NewLift returns the lift for seed.
func NewLift(seed uint64) *Lift {
	l := &Lift{seed: seed}
	s := splitmix64(seed)
	for r := range l.signs {
		for i := 0; i < LiftDim; i += 64 {
			w := s.next()
			for j := range 64 {
				l.signs[r][i+j] = float32(1 - 2*int(w>>uint(j)&1))
			}
		}
	}
	return l
}

// Seed returns the seed the lift was built from.
func (l *Lift) Seed() uint64 { return l.seed }

// Apply lifts src (at most [LiftDim] components, already centred) into dst
// and returns dst[:Dim]. dst is used as scratch up to [LiftDim] components and
// is reallocated if its capacity is smaller; src and dst must not overlap.
func (l *Lift) Apply(dst, src []float32) ([]float32, error) {
	if len(src) > LiftDim || len(src) == 0 {
		return nil, fmt.Errorf("align: lift %d components, want 1..%d: %w", len(src), LiftDim, ErrDim)
	}
	if cap(dst) < LiftDim {
		dst = make([]float32, LiftDim)
	}
	x := (*[LiftDim]float32)(dst[:LiftDim])
	// Round 1 on a short input: only the first p = nextPow2(len(src))
	// entries are non-zero, and H_2n [a; 0] = [H_n a; H_n a], so transform
	// p entries and tile them.
	p := 1
	for p < len(src) {
		p <<= 1
	}
	s0 := &l.signs[0]
	for i, v := range src {
		x[i] = v * s0[i]
	}
	clear(x[len(src):p])
	if p >= 8 {
		firstPass(x[:p])
		butterflies(x[:p])
	} else {
		fwht(x[:p])
	}
	for off := p; off < LiftDim; off += p {
		copy(x[off:off+p], x[:p])
	}
	for r := 1; r < Rounds; r++ {
		signedFirstPass(x, &l.signs[r])
		butterflies(x[:])
	}
	// Each unnormalised transform (the tiled first one included) scales
	// norms by sqrt(4096) = 64.
	scale := float32(math.Sqrt(float64(LiftDim)/Dim) / math.Pow(64, Rounds))
	for i := range x[:Dim] {
		x[i] *= scale
	}
	return dst[:Dim], nil
}

// fwht is the unnormalised in-place fast Walsh–Hadamard transform; len(x)
// must be a power of two. Stages are fused in threes (radix-8 butterflies) to
// cut the passes over memory.
func fwht(x []float32) { fwhtFrom(x, 1) }

// fwhtFrom runs the transform's stages from butterfly half-size h0 on.
func fwhtFrom(x []float32, h0 int) {
	n := len(x)
	h := h0
	for ; 8*h <= n; h *= 8 {
		for i := 0; i < n; i += 8 * h {
			q0 := x[i : i+h]
			q1 := x[i+h : i+2*h][:len(q0)]
			q2 := x[i+2*h : i+3*h][:len(q0)]
			q3 := x[i+3*h : i+4*h][:len(q0)]
			q4 := x[i+4*h : i+5*h][:len(q0)]
			q5 := x[i+5*h : i+6*h][:len(q0)]
			q6 := x[i+6*h : i+7*h][:len(q0)]
			q7 := x[i+7*h : i+8*h][:len(q0)]
			for j := range q0 {
				a0, a1 := q0[j]+q1[j], q0[j]-q1[j]
				a2, a3 := q2[j]+q3[j], q2[j]-q3[j]
				a4, a5 := q4[j]+q5[j], q4[j]-q5[j]
				a6, a7 := q6[j]+q7[j], q6[j]-q7[j]
				b0, b1, b2, b3 := a0+a2, a1+a3, a0-a2, a1-a3
				b4, b5, b6, b7 := a4+a6, a5+a7, a4-a6, a5-a7
				q0[j], q1[j], q2[j], q3[j] = b0+b4, b1+b5, b2+b6, b3+b7
				q4[j], q5[j], q6[j], q7[j] = b0-b4, b1-b5, b2-b6, b3-b7
			}
		}
	}
	if 4*h <= n {
		for i := 0; i < n; i += 4 * h {
			q0 := x[i : i+h]
			q1 := x[i+h : i+2*h][:len(q0)]
			q2 := x[i+2*h : i+3*h][:len(q0)]
			q3 := x[i+3*h : i+4*h][:len(q0)]
			for j := range q0 {
				a0, a1 := q0[j]+q1[j], q0[j]-q1[j]
				a2, a3 := q2[j]+q3[j], q2[j]-q3[j]
				q0[j], q1[j], q2[j], q3[j] = a0+a2, a1+a3, a0-a2, a1-a3
			}
		}
		h *= 4
	}
	if 2*h == n { // one stage left
		a, b := x[:h], x[h:2*h]
		b = b[:len(a)]
		for j := range a {
			a[j], b[j] = a[j]+b[j], a[j]-b[j]
		}
	}
}

// butterflies runs the transform's stages from half-size 8 on, over x of
// a power-of-two length of at least 8, after firstPass or
// signedFirstPass. It is fwhtFrom unless the CPU has a vector version
// (fwht_amd64.go) doing the same operations in the same order, so that
// every machine lifts a vector to the same bits.
var butterflies = func(x []float32) { fwhtFrom(x, 8) }

// firstPass runs the transform's first three stages over x, whose length
// is a multiple of 8, in one pass: signedFirstPass without the signs.
func firstPass(x []float32) {
	for i := 0; i+8 <= len(x); i += 8 {
		v := (*[8]float32)(x[i : i+8])
		a0, a1 := v[0]+v[1], v[0]-v[1]
		a2, a3 := v[2]+v[3], v[2]-v[3]
		a4, a5 := v[4]+v[5], v[4]-v[5]
		a6, a7 := v[6]+v[7], v[6]-v[7]
		b0, b1, b2, b3 := a0+a2, a1+a3, a0-a2, a1-a3
		b4, b5, b6, b7 := a4+a6, a5+a7, a4-a6, a5-a7
		v[0], v[1], v[2], v[3] = b0+b4, b1+b5, b2+b6, b3+b7
		v[4], v[5], v[6], v[7] = b0-b4, b1-b5, b2-b6, b3-b7
	}
}

// signedFirstPass multiplies x by the signs s and runs the transform's first
// three stages (radix-8 butterflies on consecutive groups of 8) in one pass.
func signedFirstPass(x, s *[LiftDim]float32) {
	for i := 0; i < LiftDim; i += 8 {
		v := (*[8]float32)(x[i : i+8])
		g := (*[8]float32)(s[i : i+8])
		a0, a1 := v[0]*g[0]+v[1]*g[1], v[0]*g[0]-v[1]*g[1]
		a2, a3 := v[2]*g[2]+v[3]*g[3], v[2]*g[2]-v[3]*g[3]
		a4, a5 := v[4]*g[4]+v[5]*g[5], v[4]*g[4]-v[5]*g[5]
		a6, a7 := v[6]*g[6]+v[7]*g[7], v[6]*g[6]-v[7]*g[7]
		b0, b1, b2, b3 := a0+a2, a1+a3, a0-a2, a1-a3
		b4, b5, b6, b7 := a4+a6, a5+a7, a4-a6, a5-a7
		v[0], v[1], v[2], v[3] = b0+b4, b1+b5, b2+b6, b3+b7
		v[4], v[5], v[6], v[7] = b0-b4, b1-b5, b2-b6, b3-b7
	}
}

// splitmix64 is the deterministic generator behind every seeded choice in
// this package (Steele, Lea & Flood 2014). Its output for a seed never
// changes, unlike math/rand's streams.
type splitmix64 uint64

func (s *splitmix64) next() uint64 {
	*s += 0x9e3779b97f4a7c15
	z := uint64(*s)
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	return z ^ z>>31
}
