// Package compress owns the BitDelta codec: the sign bits of a centred
// canonical vector packed into 60 uint64 words plus one float32 scale, and the
// versioned 484-byte wire form with its checks on decode.
//
// # Codes
//
// A [Code] holds the 3840 sign bits of a canonical vector (bit i%64 of word i/64
// is set when component i is positive or +0) and a scale, the mean absolute value of the
// components, which minimises the squared error of the ±scale reconstruction.
// The caller centres the vector first (package align does, before the lift);
// [Encode] takes the signs as they are.
//
// # Wire form
//
// 3840 bits fill 480 bytes exactly, so the version cannot hide in the bits.
// The wire form spends one byte on it and stores the scale in the other three:
//
//	byte 0        version (currently 1)
//	bytes 1..480  the 60 words, little-endian, word 0 first
//	bytes 481..483 the scale: the high 24 bits of its IEEE-754 float32 form
//	              (sign, exponent, 15 mantissa bits), little-endian
//
// The scale therefore keeps 16 significant bits (relative error below 2^-16),
// ample for a mean absolute value. [Encode] rounds the scale to that precision
// up front, so encode, [Code.AppendBinary] and [Decode] round-trip exactly.
// Decode rejects a wrong length, an unknown version, and a scale that is
// negative, NaN or infinite, each with its own sentinel error.
//
// # Scoring
//
// [Hamming] counts differing bits; [Dot] is the asymmetric score of a float
// query against the ±scale reconstruction, used to re-rank candidates.
package compress
