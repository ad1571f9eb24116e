package align

import (
	"math"
	"testing"
)

// TestLiftSameBitsOnEveryMachine holds the lift to the pure-Go transform
// bit for bit: a node whose CPU has the vector version must make the very
// codes a node without it makes.
func TestLiftSameBitsOnEveryMachine(t *testing.T) {
	fast := butterflies
	defer func() { butterflies = fast }()
	goOnly := func(x []float32) { fwhtFrom(x, 8) }
	l := NewLift(5)
	s := splitmix64(12)
	for _, n := range []int{1, 3, 7, 8, 9, 100, 384, 768, 1024, 2048, 3000, 4096} {
		for k := range 20 {
			v := randVec(&s, n)
			if k == 0 {
				v[0] = 0 // zeros and tiny values keep their signs too
				v[n-1] = float32(math.SmallestNonzeroFloat32)
			}
			butterflies = fast
			a, err := l.Apply(nil, v)
			if err != nil {
				t.Fatal(err)
			}
			butterflies = goOnly
			b, _ := l.Apply(nil, v)
			for i := range a {
				if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
					t.Fatalf("dim %d: component %d = %v with this CPU's transform, %v with Go's", n, i, a[i], b[i])
				}
			}
		}
	}
}

func TestButterfliesMatchNaive(t *testing.T) {
	s := splitmix64(13)
	for _, n := range []int{8, 16, 32, 64, 128, 256, 512} {
		x := randVec(&s, n)
		want := naiveFWHT(x)
		firstPass(x)
		butterflies(x)
		for i := range x {
			if math.Abs(float64(x[i]-want[i])) > 1e-3*math.Sqrt(float64(n)) {
				t.Fatalf("n=%d: component %d = %v; want %v", n, i, x[i], want[i])
			}
		}
	}
}
