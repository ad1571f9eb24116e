package compress

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/bits"
)

const (
	// Dim is the number of components of a canonical vector.
	Dim = 3840
	// Words is the number of 64-bit words holding a code's sign bits.
	Words = Dim / 64
	// Size is the length of a code's wire form in bytes.
	Size = 1 + Words*8 + 3
	// Version is the wire-form version written by [Code.AppendBinary].
	Version = 1
)

// Sentinel errors returned (wrapped) by [Decode] and [Encode].
var (
	ErrShortCode = errors.New("compress: code too short")
	ErrLongCode  = errors.New("compress: code too long")
	ErrVersion   = errors.New("compress: unknown code version")
	ErrBadScale  = errors.New("compress: scale is negative, NaN or infinite")
	ErrDim       = errors.New("compress: vector has wrong dimension")
)

// Code is a BitDelta code: the sign bits of a canonical vector and its scale.
// The zero Code decodes to the all -0 vector (every bit clear, scale 0).
type Code struct {
	Bits  [Words]uint64
	Scale float32
}

// Encode returns the code of the centred canonical vector v, which must have
// [Dim] components. Component i sets bit i when its sign bit is clear (v[i]
// is positive or +0). The scale is the
// mean absolute value, rounded to the 16 significant bits the wire form keeps.
func Encode(v []float32) (Code, error) {
	var c Code
	if len(v) != Dim {
		return c, fmt.Errorf("compress: encode %d components, want %d: %w", len(v), Dim, ErrDim)
	}
	var sum float64
	for w := range Words {
		x := (*[64]float32)(v[w*64 : w*64+64])
		var word uint64
		var s float32
		for i, f := range x {
			u := math.Float32bits(f)
			word |= uint64(^u>>31) << uint(i)
			s += math.Float32frombits(u &^ (1 << 31))
		}
		c.Bits[w] = word
		sum += float64(s)
	}
	scale := roundScale(float32(sum / Dim))
	if !validScale(scale) {
		return Code{}, fmt.Errorf("compress: encode: %w", ErrBadScale)
	}
	c.Scale = scale
	return c, nil
}

// roundScale rounds f to the nearest float32 whose low 8 bits are zero.
func roundScale(f float32) float32 {
	u := math.Float32bits(f)
	if u&0x7f800000 == 0x7f800000 { // NaN or Inf: leave for validScale.
		return f
	}
	u = (u + 0x80) &^ 0xff
	return math.Float32frombits(u)
}

func validScale(f float32) bool {
	u := math.Float32bits(f)
	return u>>31 == 0 && u&0x7f800000 != 0x7f800000 // sign clear, finite
}

// AppendBinary appends the 484-byte wire form of c to b.
func (c *Code) AppendBinary(b []byte) ([]byte, error) {
	if !validScale(c.Scale) {
		return b, fmt.Errorf("compress: append: %w", ErrBadScale)
	}
	b = append(b, Version)
	for _, w := range c.Bits {
		b = binary.LittleEndian.AppendUint64(b, w)
	}
	u := math.Float32bits(roundScale(c.Scale)) >> 8
	return append(b, byte(u), byte(u>>8), byte(u>>16)), nil
}

// MarshalBinary returns the 484-byte wire form of c.
func (c *Code) MarshalBinary() ([]byte, error) {
	return c.AppendBinary(make([]byte, 0, Size))
}

// UnmarshalBinary sets c from its wire form; see [Decode].
func (c *Code) UnmarshalBinary(b []byte) error {
	d, err := Decode(b)
	if err != nil {
		return err
	}
	*c = d
	return nil
}

// Decode parses a code's wire form. It checks the length, the version and the
// scale, returning [ErrShortCode], [ErrLongCode], [ErrVersion] or
// [ErrBadScale] (wrapped).
func Decode(b []byte) (Code, error) {
	var c Code
	switch {
	case len(b) < Size:
		return c, fmt.Errorf("compress: decode %d bytes: %w", len(b), ErrShortCode)
	case len(b) > Size:
		return c, fmt.Errorf("compress: decode %d bytes: %w", len(b), ErrLongCode)
	case b[0] != Version:
		return c, fmt.Errorf("compress: decode version %d: %w", b[0], ErrVersion)
	}
	for i := range c.Bits {
		c.Bits[i] = binary.LittleEndian.Uint64(b[1+8*i:])
	}
	t := b[Size-3:]
	u := uint32(t[0])<<8 | uint32(t[1])<<16 | uint32(t[2])<<24
	c.Scale = math.Float32frombits(u)
	if !validScale(c.Scale) {
		return Code{}, fmt.Errorf("compress: decode: %w", ErrBadScale)
	}
	return c, nil
}

// Vector writes the ±scale reconstruction of c into dst, growing it to [Dim]
// components if needed, and returns it.
func (c *Code) Vector(dst []float32) []float32 {
	if cap(dst) < Dim {
		dst = make([]float32, Dim)
	}
	dst = dst[:Dim]
	for w, word := range c.Bits {
		x := (*[64]float32)(dst[w*64 : w*64+64])
		for i := range x {
			if word>>uint(i)&1 != 0 {
				x[i] = c.Scale
			} else {
				x[i] = -c.Scale
			}
		}
	}
	return dst
}

// Hamming returns the number of sign bits in which a and b differ, 0 to [Dim].
func Hamming(a, b *Code) int {
	n := 0
	for i := range a.Bits {
		n += bits.OnesCount64(a.Bits[i] ^ b.Bits[i])
	}
	return n
}

// Majority returns the per-bit majority of codes (a bit is set when more
// than half of them set it) with the median of their scales: what several
// independent encoders of one vector agree on, which a minority of them
// cannot move. It returns the zero Code for none.
func Majority(codes []Code) Code {
	var m Code
	n := len(codes)
	if n == 0 {
		return m
	}
	for w := range Words {
		var word uint64
		for b := range 64 {
			set := 0
			for i := range codes {
				set += int(codes[i].Bits[w] >> uint(b) & 1)
			}
			if 2*set > n {
				word |= 1 << uint(b)
			}
		}
		m.Bits[w] = word
	}
	scales := make([]float32, n)
	for i, c := range codes {
		scales[i] = c.Scale
	}
	for i := 1; i < n; i++ { // insertion sort: a handful of codes
		for j := i; j > 0 && scales[j] < scales[j-1]; j-- {
			scales[j], scales[j-1] = scales[j-1], scales[j]
		}
	}
	m.Scale = scales[n/2]
	if n%2 == 0 {
		m.Scale = roundScale((scales[n/2-1] + scales[n/2]) / 2)
	}
	return m
}
