package gpuidx

import (
	"slices"
	"sync"
)

// Building the inverted file without stopping the index: a training runs
// in its own goroutine, reading the records under the read lock a chunk at
// a time, so searches go on and writes wait for a chunk at most. Writes
// meanwhile mark the slots they change (dirty); the write lock at the end
// brings those, and the records added since, into the new lists.

// maxDirty bounds the slots a training remembers; past it the training
// gives up and the next one starts later.
const maxDirty = 1 << 16

// listsDue reports whether the index has grown to its next training. The
// caller holds mu (read or write).
func (x *CPU) listsDue() bool {
	return x.cfg.ListsFrom > 0 && x.n >= x.nextTrain && !x.training.Load()
}

// startTraining trains new lists in the background unless one is already
// running. The caller holds mu (read or write).
func (x *CPU) startTraining() {
	if !x.training.CompareAndSwap(false, true) {
		return
	}
	x.trainWG.Add(1)
	go func() {
		defer x.trainWG.Done()
		defer x.training.Store(false)
		x.trainLists()
	}()
}

// markDirty records that slot s changed while a training runs, if the
// training has read it. The caller holds mu for writing.
func (x *CPU) markDirty(s int) {
	if !x.tracking || s >= int(x.assigned.Load()) {
		return // not read yet: the training will read it as it is
	}
	if len(x.dirty) >= maxDirty {
		x.overflow = true
		return
	}
	x.dirty = append(x.dirty, int32(s))
}

// trainLists trains centroids on a sample of the prefixes, assigns every
// record to its nearest, and installs the lists.
func (x *CPU) trainLists() {
	pw := x.cfg.PrefixWords
	x.mu.Lock()
	x.tracking, x.overflow, x.dirty = true, false, x.dirty[:0]
	x.assigned.Store(0)
	n, gen := x.n, x.gen
	x.mu.Unlock()

	nc := listCount(n)
	m := min(n, nc*trainSample)
	sample := make([]uint64, m*pw)
	s := trainRand(n)
	x.mu.RLock()
	m = min(m, x.n)
	for j, i := range pick(x.n, m, &s) {
		copy(sample[j*pw:], x.prefix.row(i))
	}
	x.mu.RUnlock()
	if m < nc {
		x.stopTracking(n)
		return
	}
	ls := &lists{pw: pw, cents: train(sample, m, pw, nc, uint64(n)), slots: make([][]int32, nc), pre: make([][]uint64, nc)}

	// Assign a chunk of records at a time, on every worker.
	assigned := 0
	of := make([]uint32, 0, n)
	for {
		x.mu.RLock()
		hi := min(assigned+chunkRows, x.n)
		if hi <= assigned || x.gen != gen {
			x.mu.RUnlock()
			break
		}
		of = x.assign(ls, assigned, hi, of)
		assigned = hi
		x.assigned.Store(int64(hi))
		x.mu.RUnlock()
	}
	filled := x.fillLists(ls, of[:assigned], gen)

	x.mu.Lock()
	defer x.mu.Unlock()
	if x.gen != gen {
		return // the records were replaced: take set all afresh
	}
	if x.overflow {
		x.tracking, x.dirty = false, nil
		x.nextTrain = x.n + x.n/4
		return
	}
	d := make([]uint16, nc)
	for i := x.n; i < filled; i++ { // deleted since
		ls.remove(i)
	}
	ls.truncate(min(filled, x.n))
	for _, i := range x.dirty {
		if int(i) < min(filled, x.n) {
			ls.remove(int(i))
			ls.add(int(i), ls.nearest(x.prefix.row(int(i)), d), x.prefix.row(int(i)))
		}
	}
	for i := filled; i < x.n; i++ { // added since, or not filled
		ls.add(i, ls.nearest(x.prefix.row(i), d), x.prefix.row(i))
	}
	ls.built = n
	x.ls = ls
	x.lsDist = d
	x.tracking, x.dirty = false, nil
	x.nextTrain = 2 * n
}

// fillLists puts slots 0 to len(of)-1 in the lists of assigns them to,
// each list allocated once at its size (and an eighth more, for the
// records to come) rather than grown by doubling, which would leave up to
// half of it unused. It reads a chunk at a time under the read lock, and
// stops at the index's end; it returns how many slots it filled. A slot
// changed since it was assigned is dirty, and moved at the install.
func (x *CPU) fillLists(ls *lists, of []uint32, gen int) int {
	ls.size(of)
	filled := 0
	for filled < len(of) {
		x.mu.RLock()
		hi := min(filled+chunkRows, len(of), x.n)
		if hi <= filled || x.gen != gen {
			x.mu.RUnlock()
			break
		}
		for i := filled; i < hi; i++ {
			ls.add(i, of[i], x.prefix.row(i))
		}
		filled = hi
		x.mu.RUnlock()
	}
	return filled
}

// size allocates the lists for the slots of assigns them to, each at its
// size and an eighth more, for the records to come.
func (ls *lists) size(of []uint32) {
	size := make([]int, ls.count())
	for _, c := range of {
		size[c]++
	}
	for c, k := range size {
		k += k/8 + 4
		ls.slots[c] = make([]int32, 0, k)
		ls.pre[c] = make([]uint64, 0, k*ls.pw)
	}
	ls.of = make([]uint32, 0, len(of)+len(of)/8)
	ls.at = make([]uint32, 0, len(of)+len(of)/8)
}

// stopTracking ends a training that did not install lists.
func (x *CPU) stopTracking(n int) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.tracking, x.dirty = false, nil
	x.nextTrain = 2 * n
}

// assign appends to of the nearest list of slots lo to hi-1, on every
// worker. The caller holds mu.
func (x *CPU) assign(ls *lists, lo, hi int, of []uint32) []uint32 {
	of = slices.Grow(of, hi-len(of))[:hi]
	workers := max(1, min(x.cfg.Workers, (hi-lo)/1024))
	per := (hi - lo + workers - 1) / workers
	var wg sync.WaitGroup
	for w := range workers {
		a, b := lo+w*per, min(lo+(w+1)*per, hi)
		wg.Add(1)
		go func() {
			defer wg.Done()
			d := make([]uint16, ls.count())
			for i := a; i < b; i++ {
				of[i] = ls.nearest(x.prefix.row(i), d)
			}
		}()
	}
	wg.Wait()
	return of
}

// Lists returns how many lists the index searches by, 0 while it scans
// every record.
func (x *CPU) Lists() int {
	x.mu.RLock()
	defer x.mu.RUnlock()
	if x.ls == nil {
		return 0
	}
	return x.ls.count()
}

// WaitLists waits for a training of lists in progress, if any, to end.
func (x *CPU) WaitLists() { x.trainWG.Wait() }

// stopLists drops the lists for good and trains none again: a GPU index
// takes x as its host mirror and changes its fields itself.
func (x *CPU) stopLists() {
	x.mu.Lock()
	x.cfg.ListsFrom = -1
	x.mu.Unlock()
	x.trainWG.Wait()
	x.mu.Lock()
	x.ls, x.lsDist = nil, nil
	x.mu.Unlock()
}
