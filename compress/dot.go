package compress

// The dot product of a float query with a code's sign vector is summed in
// one fixed order, so that every way of computing it (Dot, a DotTable, the
// GPU index's kernel) gives the same float32, bit for bit: the components
// fall into groups of four (the code's 4-bit nibbles, group g holding
// components 4g..4g+3); a group's partial sum adds its set components from
// the highest to the lowest, starting from 0; group g's partial sum goes to
// lane g mod 4, lanes summed in increasing g; the result is
// 2·((l0+l1)+(l2+l3)) − all, where all is the same sum with every bit set.
//
// The order lets a query be turned into a table of every group's 16
// partial sums once (DotTable), after which a code costs 960 table reads
// instead of 3840 masked additions: worth it from a handful of codes on,
// which is what re-ranking does.

// groups is the number of 4-component groups.
const groups = Dim / 4

// Dot returns the dot product of the float query q ([Dim] components) with
// the ±scale reconstruction of the code given by its words and scale. It
// panics if q or words is too short. To score many codes against one q,
// a [DotTable] is faster and gives the same result.
func Dot(q []float32, words []uint64, scale float32) float32 {
	q = q[:Dim]
	words = words[:Words]
	var p, a [4]float32
	for g := range groups {
		f := (*[4]float32)(q[4*g : 4*g+4])
		nib := uint(words[g/16]>>(4*(g%16))) & 15
		p[g&3] += partial(f, nib)
		a[g&3] += partial(f, 15)
	}
	pos, all := (p[0]+p[1])+(p[2]+p[3]), (a[0]+a[1])+(a[2]+a[3])
	return scale * (2*pos - all)
}

// partial is the sum of the components of f whose bit is set in nib, added
// from the highest bit down.
func partial(f *[4]float32, nib uint) float32 {
	var s float32
	for b := 3; b >= 0; b-- {
		if nib>>uint(b)&1 != 0 {
			s += f[b]
		}
	}
	return s
}

// DotTable is a query prepared for scoring many codes: each group's 16
// partial sums. Its zero value is ready for Reset; it is 60 KiB, so callers
// reuse one.
type DotTable struct {
	t   [groups * 16]float32
	all float32
}

// Reset prepares t for the query q ([Dim] components; it panics if q is
// shorter).
func (t *DotTable) Reset(q []float32) {
	q = q[:Dim]
	var a [4]float32
	for g := range groups {
		f0, f1, f2, f3 := q[4*g], q[4*g+1], q[4*g+2], q[4*g+3]
		// Entry m sums the set bits of m from the highest down, as
		// partial does (a lone bit's sum is the component itself).
		f32, f31, f21 := f3+f2, f3+f1, f2+f1
		f321 := f32 + f1
		e := (*[16]float32)(t.t[16*g : 16*g+16])
		e[0], e[1], e[2], e[3] = 0, f0, f1, f1+f0
		e[4], e[5], e[6], e[7] = f2, f2+f0, f21, f21+f0
		e[8], e[9], e[10], e[11] = f3, f3+f0, f31, f31+f0
		e[12], e[13], e[14], e[15] = f32, f32+f0, f321, f321+f0
		a[g&3] += e[15]
	}
	t.all = (a[0] + a[1]) + (a[2] + a[3])
}

// Dot returns [Dot] of the table's query with the code given by words and
// scale. It panics if words is too short.
func (t *DotTable) Dot(words []uint64, scale float32) float32 {
	words = words[:Words]
	var p0, p1, p2, p3 float32
	for w, word := range words {
		e := (*[256]float32)(t.t[256*w : 256*w+256])
		for s := 0; s < 16; s += 4 {
			p0 += e[16*s+int(word>>(4*s))&15]
			p1 += e[16*(s+1)+int(word>>(4*(s+1)))&15]
			p2 += e[16*(s+2)+int(word>>(4*(s+2)))&15]
			p3 += e[16*(s+3)+int(word>>(4*(s+3)))&15]
		}
	}
	pos := (p0 + p1) + (p2 + p3)
	return scale * (2*pos - t.all)
}
