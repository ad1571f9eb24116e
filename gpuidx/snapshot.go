package gpuidx

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"io/fs"
	"math"

	"github.com/dso-proxy/dso/compress"
)

// Snapshot format, version 3, integers little-endian:
//
//	magic    8 bytes "DSOGPUIX"
//	version  uint32  3
//	count    uint64  records
//	domains  uvarint number of domains, then each: uvarint length (0..maxString) + bytes
//	count records:
//	  id          byte 0 and the 32 bytes of an id of 64 lowercase hex digits (an
//	              experience id), or byte 1 and uvarint length (1..maxString) +
//	              bytes of any other id
//	  domain      uvarint index into domains
//	  confidence  float32
//	  retired     uint8 (0 or 1)
//	  code        compress wire form (compress.Size bytes, itself versioned)
//	lists    uvarint number of lists (0: the index kept none), then, if any:
//	  words       uvarint words of a prefix (1..compress.Words)
//	  built       uvarint the index's size when the centroids were trained
//	  centroids   lists × words uint64
//	  of          count uint32, each record's list
//	crc      uint32  CRC-32 (IEEE) of every byte before it
//
// Every value has one encoding (uvarints are minimal, an id that packs is
// packed), so a snapshot that loads saves again to the same bytes. Version
// 1 wrote every id and domain as a string; no version 1 snapshot was ever
// kept by dso. Version 2 is version 3 without the lists: it still loads,
// and the index trains its lists as it would have. The lists are kept
// because training them takes minutes at 10M records, during which every
// search scans. Records are laid out as
// the index holds them: a load reads them into storage sized once, from the
// count, and places each id in the slot table, allocating nothing for a
// record with an experience id.
const (
	snapMagic   = "DSOGPUIX"
	snapVersion = 3
	maxString   = 4096
	// snapNoLists is the last version without the lists section.
	snapNoLists = 2
)

// Id kinds in a snapshot record.
const (
	snapPacked = 0
	snapString = 1
)

// minSnapRecord is the fewest bytes a record takes: a packed id, a
// one-byte domain index, confidence, retired and code.
const minSnapRecord = 1 + idBytes + 1 + 5 + compress.Size

// Save writes a snapshot of the index to w. Searches may run meanwhile;
// changes wait until it is written.
func (x *CPU) Save(w io.Writer) error {
	x.mu.RLock()
	defer x.mu.RUnlock()
	h := crc32.NewIEEE()
	bw := bufio.NewWriterSize(io.MultiWriter(w, h), 1<<16)
	b := make([]byte, 0, 2*maxString+compress.Size+32)
	b = append(b, snapMagic...)
	b = binary.LittleEndian.AppendUint32(b, snapVersion)
	b = binary.LittleEndian.AppendUint64(b, uint64(x.n))
	b = binary.AppendUvarint(b, uint64(len(x.domains)))
	bw.Write(b)
	for _, d := range x.domains {
		bw.Write(binary.AppendUvarint(b[:0], uint64(len(d))))
		bw.WriteString(d)
	}
	for i := range x.n {
		b = b[:0]
		if x.unpacked(i) {
			id := x.other[i]
			b = append(b, snapString)
			b = binary.AppendUvarint(b, uint64(len(id)))
			b = append(b, id...)
		} else {
			b = append(b, snapPacked)
			b = append(b, x.keys.row(i)...)
		}
		b = binary.AppendUvarint(b, uint64(x.dom[i]))
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(x.conf[i]))
		r := byte(0)
		if x.flags[i]&flagRetired != 0 {
			r = 1
		}
		b = append(b, r)
		_, c := x.record(i)
		var err error
		if b, err = c.AppendBinary(b); err != nil {
			return fmt.Errorf("gpuidx: save record %d: %w", i, err)
		}
		bw.Write(b)
	}
	x.saveLists(bw, b)
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("gpuidx: save: %w", err)
	}
	if _, err := w.Write(binary.LittleEndian.AppendUint32(nil, h.Sum32())); err != nil {
		return fmt.Errorf("gpuidx: save: %w", err)
	}
	return nil
}

// Load reads a snapshot written by Save into a new index configured by cfg,
// checking magic, version, every record and the checksum. r holds the
// snapshot and nothing after it.
func Load(r io.Reader, cfg CPUConfig) (*CPU, error) {
	x := NewCPU(cfg)
	sl, err := x.read(r)
	if err != nil {
		return nil, err
	}
	x.useLists(x.listsOf(sl))
	return x, nil
}

// Restore replaces the records of x with those of a snapshot written by
// Save (of either backend), checked as Load checks it. The snapshot is
// read into new storage while x goes on serving; on error x is unchanged.
func (x *CPU) Restore(r io.Reader) error {
	cfg := x.cfg
	cfg.ListsFrom = -1 // x keeps the snapshot's lists, or trains its own
	y := NewCPU(cfg)
	sl, err := y.read(r)
	if err != nil {
		return err
	}
	ls := y.listsOf(sl) // built while x goes on serving
	x.mu.Lock()
	defer x.mu.Unlock()
	x.take(y)
	x.useLists(ls)
	return nil
}

// take moves the records of y, which no one else holds, into x. The
// caller holds x.mu.
func (x *CPU) take(y *CPU) {
	x.seed, x.n = y.seed, y.n
	x.codes, x.prefix, x.keys, x.other, x.table = y.codes, y.prefix, y.keys, y.other, y.table
	x.scales, x.conf, x.flags, x.dom = y.scales, y.conf, y.flags, y.dom
	x.domains, x.domID = y.domains, y.domID
	// The lists were of the records replaced: train anew, and let a
	// training of the old ones see that it is void.
	x.ls, x.lsDist, x.tracking, x.dirty = nil, nil, false, nil
	x.gen++
	x.nextTrain, x.loadTo = max(x.cfg.ListsFrom, listMin), 0
}

// read fills x, a new index that no one else holds yet, from a snapshot,
// and returns the lists it holds (nil for none), not yet filled.
func (x *CPU) read(r io.Reader) (*snapLists, error) {
	sr := newSnapReader(r)
	hdr, err := sr.next(20)
	if err != nil {
		return nil, fmt.Errorf("gpuidx: load header: %w", ErrFormat)
	}
	if string(hdr[:8]) != snapMagic {
		return nil, fmt.Errorf("gpuidx: load: %w", ErrFormat)
	}
	v := binary.LittleEndian.Uint32(hdr[8:])
	if v != snapVersion && v != snapNoLists {
		return nil, fmt.Errorf("gpuidx: load: snapshot version %d, this build reads %d and %d: %w", v, snapNoLists, snapVersion, ErrVersion)
	}
	n := binary.LittleEndian.Uint64(hdr[12:])
	if err := x.readDomains(sr); err != nil {
		return nil, err
	}
	// The count may lie: room for no more records than the bytes can hold.
	x.Reserve(int(min(n, reserveBound(r))))
	for i := uint64(0); i < n; i++ {
		if err := x.readRecord(sr); err != nil {
			return nil, fmt.Errorf("gpuidx: load record %d: %w", i, err)
		}
	}
	var ls *snapLists
	if v != snapNoLists {
		if ls, err = readLists(sr, x.n); err != nil {
			return nil, fmt.Errorf("gpuidx: load lists: %w", err)
		}
	}
	sum := sr.sum()
	crc, err := sr.next(4)
	if err != nil {
		return nil, fmt.Errorf("gpuidx: load checksum: %w", ErrFormat)
	}
	if binary.LittleEndian.Uint32(crc) != sum {
		return nil, ErrChecksum
	}
	if !sr.atEOF() {
		return nil, fmt.Errorf("gpuidx: load: bytes after the checksum: %w", ErrFormat)
	}
	return ls, nil
}

// reserveBound is the most records the rest of r can hold, when r says
// its size (a file, a bytes.Reader), else a bound that keeps a lying
// count from allocating much before the records arrive.
func reserveBound(r io.Reader) uint64 {
	var size int64 = -1
	switch s := r.(type) {
	case interface{ Len() int }:
		size = int64(s.Len())
	case interface{ Stat() (fs.FileInfo, error) }:
		if fi, err := s.Stat(); err == nil && fi.Mode().IsRegular() {
			size = fi.Size()
		}
	}
	if size < 0 {
		return 1 << 16
	}
	return uint64(size/minSnapRecord) + 1
}

func (x *CPU) readDomains(sr *snapReader) error {
	nd, err := sr.uvarint()
	if err != nil || nd > math.MaxUint32 {
		return fmt.Errorf("gpuidx: load domains: %w", ErrFormat)
	}
	for range nd {
		d, err := sr.string(0)
		if err != nil {
			return fmt.Errorf("gpuidx: load domains: %w", err)
		}
		if _, dup := x.domID[d]; dup {
			return fmt.Errorf("gpuidx: load domains: %q twice: %w", d, ErrFormat)
		}
		x.domID[d] = uint32(len(x.domains))
		x.domains = append(x.domains, d)
	}
	return nil
}

// readRecord appends the next record of sr to x, as Upsert would add it.
func (x *CPU) readRecord(sr *snapReader) error {
	var k key
	kind, err := sr.next(1)
	if err != nil {
		return err
	}
	switch kind[0] {
	case snapPacked:
		b, err := sr.next(idBytes)
		if err != nil {
			return err
		}
		k = key{packed: true, bin: [idBytes]byte(b)}
	case snapString:
		id, err := sr.string(1)
		if err != nil {
			return err
		}
		if k = parseKey(id); k.packed {
			return fmt.Errorf("id %q held as a string: %w", id, ErrFormat)
		}
	default:
		return fmt.Errorf("id kind %d: %w", kind[0], ErrFormat)
	}
	d, err := sr.uvarint()
	if err != nil || d >= uint64(len(x.domains)) {
		return fmt.Errorf("domain: %w", ErrFormat)
	}
	b, err := sr.next(5 + compress.Size)
	if err != nil {
		return err
	}
	conf := math.Float32frombits(binary.LittleEndian.Uint32(b))
	if b[4] > 1 || math.IsNaN(float64(conf)) {
		return ErrFormat
	}
	c, err := compress.Decode(b[5:])
	if err != nil {
		return err
	}
	return x.appendRecord(&k, Meta{Confidence: conf, Retired: b[4] == 1}, uint32(d), &c)
}

// appendRecord adds record k, new to x, in the next slot: Upsert's work
// for a new id, without its lock and domain lookup. x is not shared yet.
func (x *CPU) appendRecord(k *key, m Meta, d uint32, c *compress.Code) error {
	i := x.n
	if i == math.MaxUint32-1 {
		return fmt.Errorf("more than %d records: %w", i, ErrFormat)
	}
	if !x.tableFits(i + 1) {
		x.sizeTable(i + 1)
	}
	_, pos, dup := x.find(k, x.hashKey(k))
	if dup {
		return fmt.Errorf("duplicate id: %w", ErrFormat)
	}
	x.newSlot(k, pos)
	copy(x.codes.row(i), c.Bits[:])
	copy(x.prefix.row(i), c.Bits[:x.cfg.PrefixWords])
	m.Domain = x.domains[d]
	x.scales = append(x.scales, c.Scale)
	x.conf = append(x.conf, m.Confidence)
	x.flags = append(x.flags, flagsOf(m))
	x.dom = append(x.dom, d)
	return nil
}

// snapReader reads a snapshot through a buffer of its own, hashing the
// bytes its caller consumes (the checksum covers those and no more) a
// buffer at a time.
type snapReader struct {
	r        io.Reader
	h        hash.Hash32
	buf      []byte
	pos, end int // buf[pos:end] is read and not yet consumed
	hashed   int // buf[:hashed] is in h
}

func newSnapReader(r io.Reader) *snapReader {
	return &snapReader{r: r, h: crc32.NewIEEE(), buf: make([]byte, 1<<16)}
}

// next consumes the next n bytes (at most the buffer's size), returned in
// a slice valid until the next call; ErrFormat when the snapshot ends
// first.
func (s *snapReader) next(n int) ([]byte, error) {
	if s.end-s.pos < n {
		s.h.Write(s.buf[s.hashed:s.pos])
		s.end = copy(s.buf, s.buf[s.pos:s.end])
		s.pos, s.hashed = 0, 0
		k, err := io.ReadAtLeast(s.r, s.buf[s.end:], n-s.end)
		s.end += k
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, ErrFormat // cut short
		}
		if err != nil {
			return nil, fmt.Errorf("gpuidx: load: %w", err)
		}
	}
	b := s.buf[s.pos : s.pos+n : s.pos+n]
	s.pos += n
	return b, nil
}

// sum returns the checksum of the bytes consumed so far.
func (s *snapReader) sum() uint32 {
	s.h.Write(s.buf[s.hashed:s.pos])
	s.hashed = s.pos
	return s.h.Sum32()
}

// atEOF reports whether nothing follows what was consumed.
func (s *snapReader) atEOF() bool {
	if s.pos < s.end {
		return false
	}
	var b [1]byte
	n, _ := io.ReadFull(s.r, b[:])
	return n == 0
}

// uvarint consumes a minimally encoded uvarint.
func (s *snapReader) uvarint() (uint64, error) {
	var v uint64
	for i := range binary.MaxVarintLen64 {
		b, err := s.next(1)
		if err != nil {
			return 0, err
		}
		c := b[0]
		if i == binary.MaxVarintLen64-1 && c > 1 || i > 0 && c == 0 {
			return 0, ErrFormat // overflow, or not minimal
		}
		v |= uint64(c&0x7f) << (7 * i)
		if c < 0x80 {
			return v, nil
		}
	}
	return 0, ErrFormat
}

// string consumes a uvarint length, at least minLen and at most
// maxString, and that many bytes.
func (s *snapReader) string(minLen int) (string, error) {
	l, err := s.uvarint()
	if err != nil || l < uint64(minLen) || l > maxString {
		return "", fmt.Errorf("gpuidx: load string: %w", ErrFormat)
	}
	b, err := s.next(int(l))
	if err != nil {
		return "", err
	}
	return string(b), nil
}
