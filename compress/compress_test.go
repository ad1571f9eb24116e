package compress

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"testing"
)

// rng is a tiny deterministic generator for tests (splitmix64).
type rng uint64

func (r *rng) next() uint64 {
	*r += 0x9e3779b97f4a7c15
	z := uint64(*r)
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	return z ^ z>>31
}

// normal returns an approximately standard normal value.
func (r *rng) normal() float32 {
	var s float64
	for range 12 {
		s += float64(r.next()>>11) / (1 << 53)
	}
	return float32(s - 6)
}

func randVec(r *rng) []float32 {
	v := make([]float32, Dim)
	for i := range v {
		v[i] = r.normal()
	}
	return v
}

// naiveEncode is the reference encoder the fast one is checked against.
func naiveEncode(v []float32) Code {
	var c Code
	var sum float64
	for i, f := range v {
		if !math.Signbit(float64(f)) {
			c.Bits[i/64] |= 1 << uint(i%64)
		}
		sum += math.Abs(float64(f))
	}
	c.Scale = roundScale(float32(sum / Dim))
	return c
}

func TestEncodeMatchesNaive(t *testing.T) {
	r := rng(1)
	for range 20 {
		v := randVec(&r)
		got, err := Encode(v)
		if err != nil {
			t.Fatal(err)
		}
		want := naiveEncode(v)
		if got.Bits != want.Bits {
			t.Fatalf("bits differ from the naive encoder")
		}
		if d := math.Abs(float64(got.Scale-want.Scale)) / float64(want.Scale); d > 1e-5 {
			t.Fatalf("scale %v, naive %v", got.Scale, want.Scale)
		}
	}
}

func TestEncodeErrors(t *testing.T) {
	nan := make([]float32, Dim)
	nan[7] = float32(math.NaN())
	inf := make([]float32, Dim)
	inf[9] = float32(math.Inf(-1))
	tests := []struct {
		name string
		v    []float32
		want error
	}{
		{"short", make([]float32, Dim-1), ErrDim},
		{"long", make([]float32, Dim+1), ErrDim},
		{"nan", nan, ErrBadScale},
		{"inf", inf, ErrBadScale},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Encode(tt.v); !errors.Is(err, tt.want) {
				t.Fatalf("Encode: got %v; want %v", err, tt.want)
			}
		})
	}
}

func TestRoundTrip(t *testing.T) {
	r := rng(2)
	for range 50 {
		c, err := Encode(randVec(&r))
		if err != nil {
			t.Fatal(err)
		}
		b, err := c.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		if len(b) != Size {
			t.Fatalf("wire form %d bytes; want %d", len(b), Size)
		}
		d, err := Decode(b)
		if err != nil {
			t.Fatal(err)
		}
		if d != c {
			t.Fatalf("round trip changed the code: scale %v -> %v", c.Scale, d.Scale)
		}
	}
	if Size != 484 {
		t.Fatalf("Size = %d; want 484", Size)
	}
}

func validWire(t testing.TB) []byte {
	r := rng(3)
	c, err := Encode(randVec(&r))
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func withScale(b []byte, f float32) []byte {
	b = bytes.Clone(b)
	u := math.Float32bits(f) >> 8
	b[Size-3], b[Size-2], b[Size-1] = byte(u), byte(u>>8), byte(u>>16)
	return b
}

func TestDecodeRejects(t *testing.T) {
	good := validWire(t)
	badVersion := bytes.Clone(good)
	badVersion[0] = 2
	zeroVersion := bytes.Clone(good)
	zeroVersion[0] = 0
	tests := []struct {
		name string
		b    []byte
		want error
	}{
		{"empty", nil, ErrShortCode},
		{"short", good[:Size-1], ErrShortCode},
		{"long", append(bytes.Clone(good), 0), ErrLongCode},
		{"version2", badVersion, ErrVersion},
		{"version0", zeroVersion, ErrVersion},
		{"nan", withScale(good, float32(math.NaN())), ErrBadScale},
		{"inf", withScale(good, float32(math.Inf(1))), ErrBadScale},
		{"negative", withScale(good, -1), ErrBadScale},
		{"negative-zero", withScale(good, float32(math.Copysign(0, -1))), ErrBadScale},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Decode(tt.b); !errors.Is(err, tt.want) {
				t.Fatalf("Decode: got %v; want %v", err, tt.want)
			}
		})
	}
}

func TestVectorAndDot(t *testing.T) {
	r := rng(4)
	v := randVec(&r)
	c, err := Encode(v)
	if err != nil {
		t.Fatal(err)
	}
	rec := c.Vector(nil)
	q := randVec(&r)
	var want float64
	for i := range q {
		if math.Abs(float64(rec[i])) != float64(c.Scale) {
			t.Fatalf("component %d = %v; want ±%v", i, rec[i], c.Scale)
		}
		if (rec[i] > 0) != !math.Signbit(float64(v[i])) {
			t.Fatalf("component %d has the wrong sign", i)
		}
		want += float64(q[i]) * float64(rec[i])
	}
	got := Dot(q, c.Bits[:], c.Scale)
	if math.Abs(float64(got)-want) > 1e-3*math.Abs(want)+1e-3 {
		t.Fatalf("Dot = %v; want %v", got, want)
	}
}

// TestHammingTracksAngle checks the property the index relies on: for
// vectors whose components are i.i.d. normal (as after the lift), the
// Hamming distance divided by Dim estimates angle/pi.
func TestHammingTracksAngle(t *testing.T) {
	r := rng(5)
	a := randVec(&r)
	for _, mix := range []float64{0.1, 0.5, 1, 2, 10} {
		noise := randVec(&r)
		b := make([]float32, Dim)
		var dot, na, nb float64
		for i := range b {
			b[i] = a[i] + float32(mix)*noise[i]
			dot += float64(a[i]) * float64(b[i])
			na += float64(a[i]) * float64(a[i])
			nb += float64(b[i]) * float64(b[i])
		}
		angle := math.Acos(dot/math.Sqrt(na*nb)) / math.Pi
		ca, _ := Encode(a)
		cb, _ := Encode(b)
		got := float64(Hamming(&ca, &cb)) / Dim
		// Standard error of the estimate is at most sqrt(0.25/Dim) ~ 0.008.
		if math.Abs(got-angle) > 0.03 {
			t.Errorf("mix %v: Hamming/Dim = %.3f; angle/pi = %.3f", mix, got, angle)
		}
	}
}

func FuzzDecode(f *testing.F) {
	good := validWire(f)
	f.Add(good)
	f.Add(good[:10])
	f.Add([]byte{})
	f.Add(withScale(good, float32(math.NaN())))
	f.Add(append(bytes.Clone(good), 1))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := Decode(b)
		if err != nil {
			if c != (Code{}) {
				t.Fatalf("Decode returned a non-zero code with error %v", err)
			}
			return
		}
		if len(b) != Size || b[0] != Version {
			t.Fatalf("Decode accepted %d bytes, version %d", len(b), b[0])
		}
		if !validScale(c.Scale) {
			t.Fatalf("Decode accepted scale %v", c.Scale)
		}
		for i, w := range c.Bits {
			if w != binary.LittleEndian.Uint64(b[1+8*i:]) {
				t.Fatalf("word %d differs from the wire", i)
			}
		}
		// Round trip: re-encoding a decoded code gives the same bytes.
		out, err := c.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out, b) {
			t.Fatalf("re-encoding changed the wire form")
		}
	})
}

func BenchmarkEncode(b *testing.B) {
	r := rng(6)
	v := randVec(&r)
	b.ReportAllocs()
	b.SetBytes(Dim * 4)
	for b.Loop() {
		if _, err := Encode(v); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecode(b *testing.B) {
	w := validWire(b)
	b.ReportAllocs()
	b.SetBytes(Size)
	for b.Loop() {
		if _, err := Decode(w); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDot(b *testing.B) {
	r := rng(7)
	c, _ := Encode(randVec(&r))
	q := randVec(&r)
	b.ReportAllocs()
	for b.Loop() {
		Dot(q, c.Bits[:], c.Scale)
	}
}

// TestDotTableMatchesDot checks that the table gives Dot's float32 bit for
// bit (the GPU index's kernel reproduces the same order), on queries with
// mixed magnitudes where a different summation order would round
// differently.
func TestDotTableMatchesDot(t *testing.T) {
	r := rng(9)
	var tab DotTable
	for i := range 50 {
		q := randVec(&r)
		for j := range q {
			if j%7 == i%7 {
				q[j] *= 1e4
			}
		}
		tab.Reset(q)
		for range 20 {
			c, err := Encode(randVec(&r))
			if err != nil {
				t.Fatal(err)
			}
			want := Dot(q, c.Bits[:], c.Scale)
			if got := tab.Dot(c.Bits[:], c.Scale); math.Float32bits(got) != math.Float32bits(want) {
				t.Fatalf("query %d: table %v, Dot %v", i, got, want)
			}
		}
	}
}

func BenchmarkDotTable(b *testing.B) {
	r := rng(7)
	c, _ := Encode(randVec(&r))
	q := randVec(&r)
	var tab DotTable
	b.Run("reset", func(b *testing.B) {
		for b.Loop() {
			tab.Reset(q)
		}
	})
	tab.Reset(q)
	b.Run("dot", func(b *testing.B) {
		for b.Loop() {
			tab.Dot(c.Bits[:], c.Scale)
		}
	})
}
