package gpuidx

import (
	"context"
	"math/bits"
)

// The inverted file: past CPUConfig.ListsFrom records, the CPU index splits
// its records into lists by the nearest of a set of binary centroids (each
// the bitwise majority of its list's prefixes, k-majority clustering) and
// keeps each list's slots and prefixes contiguous. A search reads the
// prefixes of the lists nearest the query, not of every record: the cost
// grows with the lists probed, not with the index.
//
// Hamming distance between codes estimates the angle between the
// embeddings, so records near a query mostly share its nearest centroids;
// the probe width trades recall for time (measured by dso bench index).
// The scan stays: for a small index, for exhaustive modes, and when a
// filter leaves too few candidates in the probed lists.

// lists is the inverted file over slots 0..n-1 of a CPU index.
type lists struct {
	pw    int      // words of a prefix
	cents []uint64 // centroid c is cents[c*pw : (c+1)*pw]
	slots [][]int32
	pre   [][]uint64 // pre[c] holds the prefixes of slots[c], in order
	of    []uint32   // by slot: its list
	at    []uint32   // by slot: its place in the list
	built int        // the index's size when the centroids were trained
}

func (ls *lists) count() int { return len(ls.slots) }

// nearest returns the list whose centroid is nearest prefix p; d is
// scratch of count() entries.
func (ls *lists) nearest(p []uint64, d []uint16) uint32 {
	return nearestCentroid(p, ls.cents, ls.pw, d)
}

// nearestCentroid returns the first of the len(d) centroids of pw words
// in cents nearest p, filling d with their distances.
func nearestCentroid(p, cents []uint64, pw int, d []uint16) uint32 {
	hamming(p, cents, len(d), pw, d)
	best := 0
	for c := 1; c < len(d); c++ {
		if d[c] < d[best] {
			best = c
		}
	}
	return uint32(best)
}

// add appends slot s with prefix p to list c.
func (ls *lists) add(s int, c uint32, p []uint64) {
	for len(ls.of) <= s {
		ls.of = append(ls.of, 0)
		ls.at = append(ls.at, 0)
	}
	ls.of[s], ls.at[s] = c, uint32(len(ls.slots[c]))
	ls.slots[c] = append(ls.slots[c], int32(s))
	ls.pre[c] = append(ls.pre[c], p...)
}

// remove takes slot s out of its list; the list's last member takes its
// place.
func (ls *lists) remove(s int) {
	c, i := ls.of[s], int(ls.at[s])
	sl, pr := ls.slots[c], ls.pre[c]
	last := len(sl) - 1
	if i != last {
		m := sl[last]
		sl[i] = m
		copy(pr[i*ls.pw:(i+1)*ls.pw], pr[last*ls.pw:])
		ls.at[m] = uint32(i)
	}
	ls.slots[c], ls.pre[c] = sl[:last], pr[:last*ls.pw]
}

// renumber records that the record in slot from is now in slot to.
func (ls *lists) renumber(from, to int) {
	c, i := ls.of[from], ls.at[from]
	ls.slots[c][i] = int32(to)
	ls.of[to], ls.at[to] = c, i
}

// truncate forgets slots n and above.
func (ls *lists) truncate(n int) { ls.of, ls.at = ls.of[:n], ls.at[:n] }

// bytes is the memory ls holds.
func (ls *lists) bytes() int64 {
	b := int64(cap(ls.cents))*8 + int64(cap(ls.of)+cap(ls.at))*4 + int64(len(ls.slots))*48
	for c := range ls.slots {
		b += int64(cap(ls.slots[c]))*4 + int64(cap(ls.pre[c]))*8
	}
	return b
}

// listCount is the number of lists for n records: a power of two near √n,
// from 256 to 8192, so a list holds about √n records.
func listCount(n int) int {
	c := 1 << ((bits.Len(uint(n)) + 1) / 2)
	return min(max(c, 256), 8192)
}

// trainSample is how many prefixes train each centroid.
const trainSample = 32

// trainRounds is the k-majority iterations: the assignments barely move
// after a few.
const trainRounds = 6

// train returns nc centroids of pw words clustering the m prefixes of
// sample (m·pw words) by k-majority: each round assigns every prefix to
// its nearest centroid, then sets each centroid bit to its members'
// majority. A centroid left without members takes a prefix of the sample.
func train(sample []uint64, m, pw, nc int, seed uint64) []uint64 {
	s := trainRand(seed)
	cents := make([]uint64, nc*pw)
	for c, i := range pick(m, nc, &s) {
		copy(cents[c*pw:], sample[i*pw:(i+1)*pw])
	}
	d := make([]uint16, nc)
	of := make([]uint32, m)
	ones := make([]uint32, nc*pw*64)
	size := make([]uint32, nc)
	for range trainRounds {
		clear(ones)
		clear(size)
		for i := range m {
			p := sample[i*pw : (i+1)*pw]
			c := nearestCentroid(p, cents, pw, d)
			of[i] = c
			size[c]++
			o := ones[int(c)*pw*64:]
			for w, x := range p {
				for ; x != 0; x &= x - 1 {
					o[w*64+bits.TrailingZeros64(x)]++
				}
			}
		}
		for c := range nc {
			cw := cents[c*pw : (c+1)*pw]
			if size[c] == 0 {
				i := int(s.next() % uint64(m))
				copy(cw, sample[i*pw:(i+1)*pw])
				continue
			}
			o := ones[c*pw*64:]
			for w := range cw {
				var x uint64
				for b := range 64 {
					if 2*o[w*64+b] > size[c] || 2*o[w*64+b] == size[c] && cw[w]>>b&1 == 1 {
						x |= 1 << b
					}
				}
				cw[w] = x
			}
		}
	}
	return cents
}

// pick returns k distinct numbers below n (k ≤ n), in random order.
func pick(n, k int, s *trainRand) []int {
	if k*4 > n {
		p := make([]int, n)
		for i := range p {
			p[i] = i
		}
		for i := range k {
			j := i + int(s.next()%uint64(n-i))
			p[i], p[j] = p[j], p[i]
		}
		return p[:k]
	}
	seen := make(map[int]bool, k)
	out := make([]int, 0, k)
	for len(out) < k {
		i := int(s.next() % uint64(n))
		if !seen[i] {
			seen[i] = true
			out = append(out, i)
		}
	}
	return out
}

// trainRand is splitmix64: a deterministic stream for training, so the
// same records give the same lists on every run.
type trainRand uint64

func (s *trainRand) next() uint64 {
	*s += 0x9e3779b97f4a7c15
	z := uint64(*s)
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	return z ^ z>>31
}

// probeLists appends to out the p lists whose centroids are nearest q's
// prefix, ties to the lower list; d is scratch of count() entries, hist
// of pw·64+1. Distances are small integers: a count of each finds the
// cut-off in one pass, where a sort of thousands of lists would not.
func (ls *lists) probeLists(q []uint64, p int, d []uint16, hist []uint32, out []int32) []int32 {
	nc := ls.count()
	hamming(q, ls.cents, nc, ls.pw, d)
	p = min(p, nc)
	clear(hist)
	for _, x := range d {
		hist[x]++
	}
	t, need, _ := cut(hist, p)
	for c, x := range d {
		if int(x) < t || int(x) == t && need > 0 {
			if int(x) == t {
				need--
			}
			out = append(out, int32(c))
		}
	}
	return out
}

// scanLists adds to c the members of the probed lists that pass f, by
// their prefix distance to q.
func (ls *lists) scanLists(ctx context.Context, q []uint64, probe []int32, f *filter, c *collector) error {
	var dist [block]uint16
	for _, l := range probe {
		if err := ctx.Err(); err != nil {
			return err
		}
		sl, pr := ls.slots[l], ls.pre[l]
		for b := 0; b < len(sl); b += block {
			m := min(block, len(sl)-b)
			hamming(q, pr[b*ls.pw:(b+m)*ls.pw], m, ls.pw, dist[:m])
			c.addSlots(dist[:m], sl[b:b+m], f)
		}
	}
	return nil
}
