package gpuidx

import "math/bits"

// The CPU scan's selection of the best records: candidates, and the
// collector that keeps the best k of a stream of distances without a heap.

// cand is a scanned record: its slot and Hamming distance.
type cand struct {
	dist uint16
	slot int32
}

func less(a, b cand) bool { return a.dist < b.dist || a.dist == b.dist && a.slot < b.slot }

func cmpCand(a, b cand) int {
	if less(a, b) {
		return -1
	}
	if less(b, a) {
		return 1
	}
	return 0
}

// collector keeps the best k records of a scan by (distance, slot) without
// a heap. Distances are small integers, so it counts the held records per
// distance and admits only records below limit: after each block it lowers
// limit while k records are held below it, as a heap of k would. Records
// above limit stay in the buffer until it has grown to 2k, when shrink drops
// them. Records must arrive in increasing slot order: a tie at the cut-off
// goes to the earlier slot, as in a sort by (distance, slot).
type collector struct {
	k     int
	limit int      // admit distances below it
	held  int      // records in the buffer at or below limit
	hist  []uint32 // held records by distance; zero above limit
	slots []int32  // buffered records in slot order
	dists []uint16
}

func (c *collector) reset(k, maxDist int) {
	c.k = k
	c.limit = maxDist + 1
	c.held = 0
	if cap(c.hist) < maxDist+2 {
		c.hist = make([]uint32, maxDist+2)
	}
	c.hist = c.hist[:maxDist+2]
	clear(c.hist)
	c.slots, c.dists = c.slots[:0], c.dists[:0]
}

// add collects the records of dist (slots base, base+1, ...) below the
// limit that pass f.
func (c *collector) add(dist []uint16, base int, f *filter) {
	lim := c.limit
	n := len(c.slots)
	// Most records are at or above the limit once it has tightened: skip
	// them four at a time, testing four 16-bit distances (all below 1<<15)
	// in one word: d|1<<15 - lim keeps bit 15 exactly when d >= lim.
	lims := uint64(lim) * 0x0001_0001_0001_0001
	const highs = 0x8000_8000_8000_8000
	j := 0
	for ; j+4 <= len(dist); j += 4 {
		w := uint64(dist[j]) | uint64(dist[j+1])<<16 | uint64(dist[j+2])<<32 | uint64(dist[j+3])<<48
		if ((w|highs)-lims)&highs == highs {
			continue
		}
		for i := j; i < j+4; i++ {
			c.admit(dist[i], base+i, lim, f)
		}
	}
	for ; j < len(dist); j++ {
		c.admit(dist[j], base+j, lim, f)
	}
	c.held += len(c.slots) - n
	c.tighten()
}

// addBelow is add where the kernel has marked the records below the
// limit: bit j of below[i] for record 8i+j of dist.
func (c *collector) addBelow(dist []uint16, below []uint8, base int, f *filter) {
	lim := c.limit
	n := len(c.slots)
	for i, m := range below {
		for ; m != 0; m &= m - 1 {
			j := 8*i + bits.TrailingZeros8(m)
			c.admit(dist[j], base+j, lim, f)
		}
	}
	c.held += len(c.slots) - n
	c.tighten()
}

// addSlots collects the records of dist, whose slots are slots[i], below
// the limit that pass f. The slots come in any order (an inverted file's
// lists), so a tie at the cut-off goes to the record met first.
func (c *collector) addSlots(dist []uint16, slots []int32, f *filter) {
	lim := c.limit
	n := len(c.slots)
	for i, d := range dist {
		c.admit(d, int(slots[i]), lim, f)
	}
	c.held += len(c.slots) - n
	c.tighten()
}

// admit buffers record s at distance d if it is below lim and passes f.
func (c *collector) admit(d uint16, s, lim int, f *filter) {
	if int(d) >= lim || !f.ok(s) {
		return
	}
	c.slots = append(c.slots, int32(s))
	c.dists = append(c.dists, d)
	c.hist[d]++
}

// push collects one record, which passed the filters.
func (c *collector) push(s int32, d uint16) {
	if int(d) >= c.limit {
		return
	}
	c.slots = append(c.slots, s)
	c.dists = append(c.dists, d)
	c.hist[d]++
	c.held++
	if len(c.slots)&255 == 0 {
		c.tighten()
	}
}

// tighten lowers the limit while the records below it number k, and
// shrinks the buffer when it has grown to 2k.
func (c *collector) tighten() {
	for c.held-int(c.hist[c.limit]) >= c.k && c.limit > 0 {
		c.held -= int(c.hist[c.limit])
		c.hist[c.limit] = 0
		c.limit--
	}
	if len(c.slots) >= 2*c.k+block {
		c.shrink()
	}
}

// cut returns the smallest distance t at which hist holds k records up to
// and including t, and how many of the records at t are needed; ok is false
// when hist holds fewer than k records.
func cut(hist []uint32, k int) (t, need int, ok bool) {
	sum := 0
	for d, h := range hist {
		if sum+int(h) >= k {
			return d, k - sum, true
		}
		sum += int(h)
	}
	return len(hist), 0, false
}

// shrink drops the buffered records above the limit and, when k are held,
// keeps exactly the best k.
func (c *collector) shrink() {
	t, need, ok := cut(c.hist[:c.limit+1], c.k)
	if !ok {
		t, need = c.limit, int(c.hist[c.limit])
	}
	c.hist[t] = uint32(need)
	clear(c.hist[t+1 : c.limit+1])
	j := 0
	for i, d := range c.dists {
		if int(d) < t || int(d) == t && need > 0 {
			if int(d) == t {
				need--
			}
			c.slots[j], c.dists[j] = c.slots[i], d
			j++
		}
	}
	c.slots, c.dists = c.slots[:j], c.dists[:j]
	c.held = j
	c.limit = t
}

// best appends to out the best k records of cs, taken in order, by
// (distance, slot): all below the common cut-off and the earliest at it.
// hist is scratch of at least maxDist+1 entries.
func best(out []cand, cs []collector, k int, hist []uint32) []cand {
	clear(hist)
	for i := range cs {
		for _, d := range cs[i].dists {
			hist[d]++
		}
	}
	t, need, ok := cut(hist, k)
	if !ok {
		t, need = len(hist), 0
	}
	for i := range cs {
		for j, d := range cs[i].dists {
			if int(d) < t || int(d) == t && need > 0 {
				if int(d) == t {
					need--
				}
				out = append(out, cand{d, cs[i].slots[j]})
			}
		}
	}
	return out
}
