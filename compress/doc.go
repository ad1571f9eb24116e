// Package compress owns the BitDelta codec: the sign bits of a centred
// canonical vector packed into 60 uint64 words plus one float32 scale, and the
// versioned 484-byte wire form with its checks on decode.
package compress
