package gpuidx

import "unsafe"

// chunkShift sets how many records a chunk of rows holds: 1<<15, a
// multiple of the scan's block, so that a block never spans two chunks.
// A chunk of codes is 15 MiB.
const (
	chunkShift = 15
	chunkRows  = 1 << chunkShift
	chunkMask  = chunkRows - 1
	// minChunkRows is the smallest chunk allocated: small indexes (a
	// library's anchors) stay small.
	minChunkRows = 64
)

// A block of the scan never spans two chunks.
var _ = [1]struct{}{}[chunkRows%block]

// rows is a growable array of fixed-width records of w elements, held in
// chunks of chunkRows records: every chunk but the last is full, and
// growing never copies a full chunk, so an index of millions of records
// grows without holding its codes twice, and holds at most one chunk's
// slack (the last chunk grows by doubling until it is full; sized by
// reserve, it holds exactly what was asked for).
type rows[T uint64 | byte] struct {
	w  int
	cs [][]T
}

func newRows[T uint64 | byte](w int) rows[T] { return rows[T]{w: w} }

// row returns record i.
func (r *rows[T]) row(i int) []T {
	c := r.cs[i>>chunkShift]
	o := (i & chunkMask) * r.w
	return c[o : o+r.w : o+r.w]
}

// span returns records i to i+m-1, which must lie in one chunk.
func (r *rows[T]) span(i, m int) []T {
	c := r.cs[i>>chunkShift]
	o := (i & chunkMask) * r.w
	return c[o : o+m*r.w : o+m*r.w]
}

// chunk returns chunk k, whose first record is k<<chunkShift.
func (r *rows[T]) chunk(k int) []T { return r.cs[k] }

// capacity is how many records r holds room for.
func (r *rows[T]) capacity() int {
	k := len(r.cs)
	if k == 0 {
		return 0
	}
	return (k-1)*chunkRows + len(r.cs[k-1])/r.w
}

// grow makes room for n records. With exact set (reserve: the records to
// come are known), the last chunk holds exactly what n needs; otherwise it
// at least doubles.
func (r *rows[T]) grow(n int, exact bool) {
	for r.capacity() < n {
		k := len(r.cs)
		if k > 0 && len(r.cs[k-1]) < chunkRows*r.w {
			// Enlarge the partial last chunk: a copy of less than a chunk.
			last := r.cs[k-1]
			want := n - (k-1)*chunkRows
			if !exact {
				want = max(want, 2*len(last)/r.w)
			}
			c := make([]T, min(chunkRows, want)*r.w)
			copy(c, last)
			r.cs[k-1] = c
			continue
		}
		r.cs = append(r.cs, make([]T, min(chunkRows, max(n-k*chunkRows, minChunkRows))*r.w))
	}
}

// shrink releases the chunks that n records leave empty but one, so that
// records deleted and added at a chunk's edge do not allocate it each
// time.
func (r *rows[T]) shrink(n int) {
	keep := (n+chunkMask)>>chunkShift + 1
	for k := keep; k < len(r.cs); k++ {
		r.cs[k] = nil
	}
	if keep < len(r.cs) {
		r.cs = r.cs[:keep]
	}
}

// bytes is the memory r holds.
func (r *rows[T]) bytes() int64 {
	var zero T
	size := int64(unsafe.Sizeof(zero))
	var n int64
	for _, c := range r.cs {
		n += int64(len(c)) * size
	}
	return n + int64(cap(r.cs))*24
}
