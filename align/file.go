package align

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"os"
)

// Adapter file format, version 1, all integers little-endian:
//
//	magic    8 bytes  "DSOALIGN"
//	version  uint32   1
//	method   uint8 length + bytes
//	in, out  uint32 each (1..65536, in·out <= 2^26)
//	flags    uint8    bit 0: W present, bit 1: Bias, bit 2: RefMean
//	W        out·in float32 (if present)
//	Bias     out float32 (if present)
//	RefMean  out float32 (if present)
//	crc      uint32   CRC-32 (IEEE) of every byte before it
const (
	fileMagic   = "DSOALIGN"
	fileVersion = 1
	maxDim      = 1 << 16
	maxWeights  = 1 << 26
)

// Errors returned (wrapped) when reading an adapter file.
var (
	ErrFormat   = errors.New("align: not an adapter file")
	ErrVersion  = errors.New("align: unsupported adapter file version")
	ErrChecksum = errors.New("align: adapter file checksum mismatch")
)

// WriteTo writes a in the versioned adapter file format.
func (a *Adapter) WriteTo(w io.Writer) (int64, error) {
	if err := a.validate(); err != nil {
		return 0, err
	}
	h := crc32.NewIEEE()
	bw := bufio.NewWriter(io.MultiWriter(w, h))
	var n int64
	put := func(b []byte) {
		k, _ := bw.Write(b)
		n += int64(k)
	}
	put([]byte(fileMagic))
	put(binary.LittleEndian.AppendUint32(nil, fileVersion))
	put(append([]byte{byte(len(a.Method))}, a.Method...))
	put(binary.LittleEndian.AppendUint32(nil, uint32(a.In)))
	put(binary.LittleEndian.AppendUint32(nil, uint32(a.Out)))
	var flags byte
	for i, v := range [][]float32{a.W, a.Bias, a.RefMean} {
		if v != nil {
			flags |= 1 << i
		}
	}
	put([]byte{flags})
	buf := make([]byte, 0, 4096)
	for _, v := range [][]float32{a.W, a.Bias, a.RefMean} {
		for _, f := range v {
			buf = binary.LittleEndian.AppendUint32(buf, math.Float32bits(f))
			if len(buf) == cap(buf) {
				put(buf)
				buf = buf[:0]
			}
		}
		put(buf)
		buf = buf[:0]
	}
	if err := bw.Flush(); err != nil {
		return n, fmt.Errorf("align: write adapter: %w", err)
	}
	k, err := w.Write(binary.LittleEndian.AppendUint32(nil, h.Sum32()))
	n += int64(k)
	if err != nil {
		return n, fmt.Errorf("align: write adapter: %w", err)
	}
	return n, nil
}

func (a *Adapter) validate() error {
	switch a.Method {
	case MethodRidge, MethodProcrustes, MethodPCA, MethodPad:
	default:
		return fmt.Errorf("align: method %q: %w", a.Method, ErrMethod)
	}
	if a.In < 1 || a.Out < 1 || a.In > maxDim || a.Out > maxDim || a.In*a.Out > maxWeights {
		return fmt.Errorf("align: adapter %d→%d dims out of range: %w", a.In, a.Out, ErrDim)
	}
	if a.W != nil && len(a.W) != a.In*a.Out ||
		a.Bias != nil && len(a.Bias) != a.Out ||
		a.RefMean != nil && len(a.RefMean) != a.Out {
		return fmt.Errorf("align: adapter %d→%d has wrongly sized fields: %w", a.In, a.Out, ErrDim)
	}
	if a.W == nil && a.Method != MethodPad {
		return fmt.Errorf("align: %s adapter without weights: %w", a.Method, ErrFormat)
	}
	for _, v := range [][]float32{a.W, a.Bias, a.RefMean} {
		for _, f := range v {
			if math.IsNaN(float64(f)) || math.IsInf(float64(f), 0) {
				return fmt.Errorf("align: adapter has a NaN or infinite value: %w", ErrFormat)
			}
		}
	}
	return nil
}

// ReadAdapter reads an adapter written by [Adapter.WriteTo], checking the
// magic, version, sizes, values and checksum.
func ReadAdapter(r io.Reader) (*Adapter, error) {
	h := crc32.NewIEEE()
	br := io.TeeReader(bufio.NewReader(r), h)
	var hdr [12]byte
	if _, err := io.ReadFull(br, hdr[:]); err != nil {
		return nil, fmt.Errorf("align: read adapter header: %w", ErrFormat)
	}
	if string(hdr[:8]) != fileMagic {
		return nil, fmt.Errorf("align: read adapter: %w", ErrFormat)
	}
	if v := binary.LittleEndian.Uint32(hdr[8:]); v != fileVersion {
		return nil, fmt.Errorf("align: adapter file version %d: %w", v, ErrVersion)
	}
	var ml [1]byte
	if _, err := io.ReadFull(br, ml[:]); err != nil {
		return nil, fmt.Errorf("align: read adapter method: %w", ErrFormat)
	}
	rest := make([]byte, int(ml[0])+9)
	if _, err := io.ReadFull(br, rest); err != nil {
		return nil, fmt.Errorf("align: read adapter header: %w", ErrFormat)
	}
	a := &Adapter{Method: Method(rest[:ml[0]])}
	rest = rest[ml[0]:]
	in, out := binary.LittleEndian.Uint32(rest), binary.LittleEndian.Uint32(rest[4:])
	if in < 1 || out < 1 || in > maxDim || out > maxDim || uint64(in)*uint64(out) > maxWeights {
		return nil, fmt.Errorf("align: adapter %d→%d dims out of range: %w", in, out, ErrDim)
	}
	a.In, a.Out = int(in), int(out)
	flags := rest[8]
	if flags&^7 != 0 {
		return nil, fmt.Errorf("align: adapter flags %#x: %w", flags, ErrFormat)
	}
	sizes := []int{a.In * a.Out, a.Out, a.Out}
	dsts := []*[]float32{&a.W, &a.Bias, &a.RefMean}
	for i, size := range sizes {
		if flags&(1<<i) == 0 {
			continue
		}
		b := make([]byte, 4*size)
		if _, err := io.ReadFull(br, b); err != nil {
			return nil, fmt.Errorf("align: read adapter values: %w", ErrFormat)
		}
		v := make([]float32, size)
		for j := range v {
			v[j] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*j:]))
		}
		*dsts[i] = v
	}
	sum := h.Sum32()
	var crc [4]byte
	if _, err := io.ReadFull(br, crc[:]); err != nil {
		return nil, fmt.Errorf("align: read adapter checksum: %w", ErrFormat)
	}
	if binary.LittleEndian.Uint32(crc[:]) != sum {
		return nil, ErrChecksum
	}
	if err := a.validate(); err != nil {
		return nil, err
	}
	return a, nil
}

// SaveAdapter writes a to the file at path.
func SaveAdapter(path string, a *Adapter) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("align: save adapter: %w", err)
	}
	if _, err := a.WriteTo(f); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("align: save adapter: %w", err)
	}
	return nil
}

// LoadAdapter reads the adapter file at path.
func LoadAdapter(path string) (*Adapter, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("align: load adapter: %w", err)
	}
	defer f.Close()
	return ReadAdapter(f)
}
