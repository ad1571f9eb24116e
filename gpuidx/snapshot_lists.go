package gpuidx

import (
	"bufio"
	"encoding/binary"
	"fmt"

	"github.com/dso-proxy/dso/compress"
)

// maxLists is the most lists a snapshot may hold: listCount's most.
const maxLists = 8192

// snapLists is a snapshot's lists section as read: the centroids and each
// record's list, to be filled from the records once they are in place.
type snapLists struct {
	pw, built int
	cents     []uint64
	of        []uint32
}

// saveLists writes the lists section of a snapshot; b is scratch. The
// caller holds mu.
func (x *CPU) saveLists(w *bufio.Writer, b []byte) {
	ls := x.ls
	if ls == nil || len(ls.of) != x.n {
		w.WriteByte(0)
		return
	}
	b = binary.AppendUvarint(b[:0], uint64(ls.count()))
	b = binary.AppendUvarint(b, uint64(ls.pw))
	b = binary.AppendUvarint(b, uint64(ls.built))
	w.Write(b)
	for _, c := range ls.cents {
		w.Write(binary.LittleEndian.AppendUint64(b[:0], c))
	}
	for lo := 0; lo < x.n; lo += 1024 {
		b = b[:0]
		for _, c := range ls.of[lo:min(x.n, lo+1024)] {
			b = binary.LittleEndian.AppendUint32(b, c)
		}
		w.Write(b)
	}
}

// readLists reads the lists section of a snapshot of n records.
func readLists(sr *snapReader, n int) (*snapLists, error) {
	nc, err := sr.uvarint()
	if err != nil || nc > maxLists {
		return nil, ErrFormat
	}
	if nc == 0 {
		return nil, nil
	}
	pw, err := sr.uvarint()
	if err != nil || pw < 1 || pw > compress.Words {
		return nil, fmt.Errorf("prefix words: %w", ErrFormat)
	}
	built, err := sr.uvarint()
	if err != nil || built > 1<<32 {
		return nil, fmt.Errorf("built: %w", ErrFormat)
	}
	sl := &snapLists{pw: int(pw), built: int(built), cents: make([]uint64, nc*pw), of: make([]uint32, n)}
	for i := range sl.cents {
		b, err := sr.next(8)
		if err != nil {
			return nil, err
		}
		sl.cents[i] = binary.LittleEndian.Uint64(b)
	}
	for lo := 0; lo < n; lo += 1024 {
		hi := min(n, lo+1024)
		b, err := sr.next(4 * (hi - lo))
		if err != nil {
			return nil, err
		}
		for i := lo; i < hi; i++ {
			if sl.of[i] = binary.LittleEndian.Uint32(b[4*(i-lo):]); sl.of[i] >= uint32(nc) {
				return nil, fmt.Errorf("record %d in list %d of %d: %w", i, sl.of[i], nc, ErrFormat)
			}
		}
	}
	return sl, nil
}

// listsOf builds the lists sl describes over the records of x, which no
// one else holds yet: nil where there are none, or where x's prefixes
// are not as wide as those the centroids were trained on.
func (x *CPU) listsOf(sl *snapLists) *lists {
	if sl == nil || sl.pw != x.cfg.PrefixWords || len(sl.of) != x.n {
		return nil
	}
	nc := len(sl.cents) / sl.pw
	ls := &lists{pw: sl.pw, cents: sl.cents, slots: make([][]int32, nc), pre: make([][]uint64, nc), built: sl.built}
	ls.size(sl.of)
	for i, c := range sl.of {
		ls.add(i, c, x.prefix.row(i))
	}
	return ls
}

// useLists installs lists read from a snapshot, where x keeps lists (a
// GPU's host mirror does not); the next training comes when a training
// of them would have brought it. The caller holds mu, or holds x alone.
func (x *CPU) useLists(ls *lists) {
	if ls == nil || x.cfg.ListsFrom <= 0 {
		return
	}
	x.ls, x.lsDist = ls, make([]uint16, ls.count())
	x.nextTrain = max(2*ls.built, x.nextTrain)
}
