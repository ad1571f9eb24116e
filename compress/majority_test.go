package compress

import (
	"math/rand/v2"
	"testing"
)

func TestMajority(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	random := func() Code {
		var c Code
		for w := range c.Bits {
			c.Bits[w] = r.Uint64()
		}
		c.Scale = roundScale(r.Float32())
		return c
	}
	truth, a, b := random(), random(), random()
	if got := Majority(nil); got != (Code{}) {
		t.Errorf("majority of none: %+v", got)
	}
	if got := Majority([]Code{truth}); got != truth {
		t.Error("majority of one is not that code")
	}
	// Two honest copies outvote any one other, bit for bit; three honest
	// outvote two.
	if got := Majority([]Code{truth, a, truth}); got.Bits != truth.Bits || got.Scale != truth.Scale {
		t.Error("two of three do not decide")
	}
	if got := Majority([]Code{a, truth, b, truth, truth}); got.Bits != truth.Bits || got.Scale != truth.Scale {
		t.Error("three of five do not decide")
	}
	// A tie clears the bit.
	var ones Code
	for w := range ones.Bits {
		ones.Bits[w] = ^uint64(0)
	}
	if got := Majority([]Code{ones, {}}); got.Bits != (Code{}).Bits {
		t.Error("a tie set bits")
	}
}
