package gpuidx

import (
	"encoding/hex"
	"hash/maphash"
)

// How the CPU index holds ids. An experience id (store.ExperienceID: 64
// lowercase hex digits, a SHA-256) is held as its 32 bytes, in rows beside
// the codes; any other id (tests, a library's anchors) is held as a string
// in a per-slot list made only once there is one. A slot table (open
// addressing, linear probing over a power-of-two array of slot+1, at most
// 3/4 full) finds a record's slot: 5 to 11 bytes a record where a
// map[string]int took 40 to 60, and no string per record at all.

// idBytes is the size of a packed id.
const idBytes = 32

// key is an id as the index looks it up.
type key struct {
	packed bool
	bin    [idBytes]byte // when packed
	s      string        // when not
}

// parseKey packs id when it is 64 lowercase hex digits: exactly the ids
// that unpack to themselves.
func parseKey(id string) key {
	if len(id) != 2*idBytes {
		return key{s: id}
	}
	var k key
	for i := range idBytes {
		hi, ok1 := lowerHex(id[2*i])
		lo, ok2 := lowerHex(id[2*i+1])
		if !ok1 || !ok2 {
			return key{s: id}
		}
		k.bin[i] = hi<<4 | lo
	}
	k.packed = true
	return k
}

func lowerHex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}

func (x *CPU) hashKey(k *key) uint64 {
	if k.packed {
		return maphash.Bytes(x.seed, k.bin[:])
	}
	return maphash.String(x.seed, k.s)
}

// unpacked reports whether record i's id is held as a string.
func (x *CPU) unpacked(i int) bool { return x.other != nil && x.other[i] != "" }

// hashSlot is the hash of record i's id.
func (x *CPU) hashSlot(i int) uint64 {
	if x.unpacked(i) {
		return maphash.String(x.seed, x.other[i])
	}
	return maphash.Bytes(x.seed, x.keys.row(i))
}

// idAt returns record i's id.
func (x *CPU) idAt(i int) string {
	if x.unpacked(i) {
		return x.other[i]
	}
	var b [2 * idBytes]byte
	hex.Encode(b[:], x.keys.row(i))
	return string(b[:])
}

// matches reports whether record i has id k.
func (x *CPU) matches(i int, k *key) bool {
	if x.unpacked(i) {
		return !k.packed && x.other[i] == k.s
	}
	return k.packed && [idBytes]byte(x.keys.row(i)) == k.bin
}

// find returns the slot of k, whose hash is h, and its place in the table;
// when k is absent, ok is false and pos is the empty place it would take.
func (x *CPU) find(k *key, h uint64) (slot, pos int, ok bool) {
	t := x.table
	if len(t) == 0 {
		return 0, 0, false
	}
	mask := len(t) - 1
	for pos = int(h) & mask; t[pos] != 0; pos = (pos + 1) & mask {
		if s := int(t[pos] - 1); x.matches(s, k) {
			return s, pos, true
		}
	}
	return 0, pos, false
}

// placeOf returns where the table holds slot.
func (x *CPU) placeOf(slot int) int {
	mask := len(x.table) - 1
	pos := int(x.hashSlot(slot)) & mask
	for x.table[pos] != uint32(slot+1) {
		pos = (pos + 1) & mask
	}
	return pos
}

// tableFits reports whether the table has room for n records.
func (x *CPU) tableFits(n int) bool { return n <= len(x.table)/4*3 }

// sizeTable makes the table hold n records at most 3/4 full, rehashing
// the records held.
func (x *CPU) sizeTable(n int) {
	size := 8
	for size/4*3 < n {
		size *= 2
	}
	if size == len(x.table) {
		return
	}
	x.table = make([]uint32, size)
	mask := size - 1
	for i := range x.n {
		pos := int(x.hashSlot(i)) & mask
		for x.table[pos] != 0 {
			pos = (pos + 1) & mask
		}
		x.table[pos] = uint32(i + 1)
	}
}

// unplace empties place pos of the table, moving up the entries after it
// that would no longer be found (deletion without tombstones).
func (x *CPU) unplace(pos int) {
	t := x.table
	mask := len(t) - 1
	for {
		t[pos] = 0
		j := pos
		for {
			j = (j + 1) & mask
			if t[j] == 0 {
				return
			}
			home := int(x.hashSlot(int(t[j]-1))) & mask
			// The entry at j stays when its home lies cyclically in (pos, j].
			if pos <= j && pos < home && home <= j || j < pos && (pos < home || home <= j) {
				continue
			}
			t[pos] = t[j]
			pos = j
			break
		}
	}
}
