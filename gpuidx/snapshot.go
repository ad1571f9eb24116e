package gpuidx

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"math"

	"github.com/dso-proxy/dso/compress"
)

// Snapshot format, version 1, integers little-endian:
//
//	magic    8 bytes "DSOGPUIX"
//	version  uint32  1
//	count    uint64
//	count records:
//	  id          uvarint length (1..maxString) + bytes
//	  domain      uvarint length (0..maxString) + bytes
//	  confidence  float32
//	  retired     uint8 (0 or 1)
//	  code        compress wire form (compress.Size bytes, itself versioned)
//	crc      uint32  CRC-32 (IEEE) of every byte before it
const (
	snapMagic   = "DSOGPUIX"
	snapVersion = 1
	maxString   = 4096
)

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
	bw.Write(b)
	for i := range x.n {
		id := x.idAt(i)
		b = b[:0]
		dom := x.domains[x.dom[i]]
		b = binary.AppendUvarint(b, uint64(len(id)))
		b = append(b, id...)
		b = binary.AppendUvarint(b, uint64(len(dom)))
		b = append(b, dom...)
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
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("gpuidx: save: %w", err)
	}
	if _, err := w.Write(binary.LittleEndian.AppendUint32(nil, h.Sum32())); err != nil {
		return fmt.Errorf("gpuidx: save: %w", err)
	}
	return nil
}

// Load reads a snapshot written by Save into a new index configured by cfg,
// checking magic, version, every record and the checksum.
func Load(r io.Reader, cfg CPUConfig) (*CPU, error) {
	cr := &crcReader{r: bufio.NewReaderSize(r, 1<<16), h: crc32.NewIEEE()}
	var hdr [20]byte
	if _, err := io.ReadFull(cr, hdr[:]); err != nil {
		return nil, fmt.Errorf("gpuidx: load header: %w", ErrFormat)
	}
	if string(hdr[:8]) != snapMagic {
		return nil, fmt.Errorf("gpuidx: load: %w", ErrFormat)
	}
	if v := binary.LittleEndian.Uint32(hdr[8:]); v != snapVersion {
		return nil, fmt.Errorf("gpuidx: load version %d: %w", v, ErrVersion)
	}
	n := binary.LittleEndian.Uint64(hdr[12:])
	x := NewCPU(cfg) // grown as records arrive: the count may lie
	buf := make([]byte, compress.Size)
	readString := func(minLen int) (string, error) {
		l, err := binary.ReadUvarint(cr)
		if err != nil || l < uint64(minLen) || l > maxString {
			return "", fmt.Errorf("gpuidx: load string: %w", ErrFormat)
		}
		s := make([]byte, l)
		if _, err := io.ReadFull(cr, s); err != nil {
			return "", fmt.Errorf("gpuidx: load string: %w", ErrFormat)
		}
		return string(s), nil
	}
	for i := uint64(0); i < n; i++ {
		id, err := readString(1)
		if err != nil {
			return nil, err
		}
		dom, err := readString(0)
		if err != nil {
			return nil, err
		}
		if _, err := io.ReadFull(cr, buf[:5]); err != nil {
			return nil, fmt.Errorf("gpuidx: load record %d: %w", i, ErrFormat)
		}
		m := Meta{Domain: dom, Confidence: math.Float32frombits(binary.LittleEndian.Uint32(buf)), Retired: buf[4] == 1}
		if buf[4] > 1 || math.IsNaN(float64(m.Confidence)) {
			return nil, fmt.Errorf("gpuidx: load record %d: %w", i, ErrFormat)
		}
		if _, err := io.ReadFull(cr, buf); err != nil {
			return nil, fmt.Errorf("gpuidx: load record %d: %w", i, ErrFormat)
		}
		c, err := compress.Decode(buf)
		if err != nil {
			return nil, fmt.Errorf("gpuidx: load record %d: %w", i, err)
		}
		if _, dup := x.slotOf(id); dup {
			return nil, fmt.Errorf("gpuidx: load record %d: duplicate id: %w", i, ErrFormat)
		}
		if err := x.Upsert(id, m, c); err != nil {
			return nil, err
		}
	}
	sum := cr.h.Sum32()
	var crc [4]byte
	if _, err := io.ReadFull(cr, crc[:]); err != nil {
		return nil, fmt.Errorf("gpuidx: load checksum: %w", ErrFormat)
	}
	if binary.LittleEndian.Uint32(crc[:]) != sum {
		return nil, ErrChecksum
	}
	return x, nil
}

// crcReader hashes exactly the bytes its caller consumes.
type crcReader struct {
	r interface {
		io.Reader
		io.ByteReader
	}
	h interface {
		io.Writer
		Sum32() uint32
	}
}

func (c *crcReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.h.Write(p[:n])
	return n, err
}

func (c *crcReader) ReadByte() (byte, error) {
	b, err := c.r.ReadByte()
	if err == nil {
		c.h.Write([]byte{b})
	}
	return b, err
}
