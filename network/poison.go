package network

import (
	"context"

	"github.com/dso-proxy/dso/compress"
)

// PoisonedCode is the outcome of an experience whose code, in the
// receiving library's own space, is far from that library's code of its
// text: a code made to surface the text for questions it does not answer.
// The record is refused (not quarantined) and counted against its log.
const PoisonedCode = "poisoned_code"

// MaxCodeDistance is how many of a code's compress.Dim sign bits may
// differ from the local code of the record's text. The same text in the
// same space and seed gives the same code (0 bits; a few where an
// embedding model is not bit-exact across machines), while the sign bits
// estimate the angle between vectors (θ/π of them differ), so a quarter
// of the bits is 45°: far beyond noise, well short of unrelated texts
// (about half).
const MaxCodeDistance = compress.Dim / 4

// poisoned reports whether e carries a code in lib's space that is not a
// code of its text: one that does not decode, or is more than
// MaxCodeDistance bits from lib's code of the text. Codes of other spaces
// are not comparable and pass: the text is re-embedded anyway. It
// assumes the network's one seed (config retrieval.seed), as every code
// comparison across nodes does.
func poisoned(ctx context.Context, lib Library, e *Experience) (bool, error) {
	if len(e.Code) == 0 {
		return false, nil
	}
	local, ok, err := lib.Code(ctx, e.Space, e.Text)
	if err != nil || !ok {
		return false, err
	}
	c, err := compress.Decode(e.Code)
	if err != nil {
		return true, nil
	}
	return compress.Hamming(&c, &local) > MaxCodeDistance, nil
}
