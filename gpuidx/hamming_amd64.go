//go:build amd64 && !purego

package gpuidx

// hammingAVX2 is hammingGo for words a multiple of 4 from 4 to 60, using
// AVX2 nibble-table popcounts. n must be >= 0.
//
//go:noescape
func hammingAVX2(q *uint64, codes *uint64, n int, words int, out *uint16)

// hamming60AVX2 is hammingAVX2 for words = 60, unrolled.
//
//go:noescape
func hamming60AVX2(q *uint64, codes *uint64, n int, out *uint16)

func cpuid(eaxArg, ecxArg uint32) (eax, ebx, ecx, edx uint32)

func xgetbv() (eax, edx uint32)

var hasAVX2 = func() bool {
	maxID, _, _, _ := cpuid(0, 0)
	if maxID < 7 {
		return false
	}
	_, _, ecx1, _ := cpuid(1, 0)
	const osxsave, avx = 1 << 27, 1 << 28
	if ecx1&osxsave == 0 || ecx1&avx == 0 {
		return false
	}
	if xcr0, _ := xgetbv(); xcr0&6 != 6 { // XMM and YMM state enabled by the OS
		return false
	}
	_, ebx7, _, _ := cpuid(7, 0)
	return ebx7&(1<<5) != 0
}()

// hasAVX512 says whether the CPU and OS support the 512-bit kernels:
// AVX-512 F, BW and VL with the VPOPCNTQ extension, ZMM state enabled.
var hasAVX512 = func() bool {
	if !hasAVX2 {
		return false
	}
	_, ebx7, ecx7, _ := cpuid(7, 0)
	const f, bw, vl, vpopcntdq = 1 << 16, 1 << 30, 1 << 31, 1 << 14
	if ebx7&f == 0 || ebx7&bw == 0 || ebx7&vl == 0 || ecx7&vpopcntdq == 0 {
		return false
	}
	xcr0, _ := xgetbv()
	return xcr0&0xe6 == 0xe6 // SSE, AVX, opmask, ZMM 0-15 high halves, ZMM 16-31
}()

// hamming8AVX512 is hammingAVX2 for words = 8 and n a positive multiple of
// 8, eight codes at a time with VPOPCNTQ; it also sets bit j of below[i]
// when code 8i+j is at a distance below limit.
//
//go:noescape
func hamming8AVX512(q *uint64, codes *uint64, n int, limit int, out *uint16, below *uint8)

// hammingBelow is hamming for the 8-word prefix scan where the CPU has
// AVX-512, with below as hamming8AVX512 fills it; it reports false, doing
// nothing, where it has not (or n is not a multiple of 8).
func hammingBelow(q []uint64, codes []uint64, n, words, limit int, out []uint16, below []uint8) bool {
	if !hasAVX512 || words != 8 || n == 0 || n%8 != 0 {
		return false
	}
	_ = q[words-1]
	_ = codes[n*words-1]
	_ = out[n-1]
	_ = below[n/8-1]
	hamming8AVX512(&q[0], &codes[0], n, min(limit, 1<<16-1), &out[0], &below[0])
	return true
}

// hamming is the kernel the index uses: AVX-512 or AVX2 where the CPU has
// them.
func hamming(q []uint64, codes []uint64, n, words int, out []uint16) {
	if n == 0 {
		return
	}
	if hasAVX2 && words%4 == 0 && words >= 4 && words <= 60 {
		_ = q[words-1]
		_ = codes[n*words-1]
		_ = out[n-1]
		switch {
		case words == 60:
			hamming60AVX2(&q[0], &codes[0], n, &out[0])
		case words == 8:
			n4 := n &^ 3
			if n4 > 0 {
				hamming8AVX2(&q[0], &codes[0], n4, &out[0])
			}
			if n4 < n {
				hammingAVX2(&q[0], &codes[n4*8], n-n4, 8, &out[n4])
			}
		default:
			hammingAVX2(&q[0], &codes[0], n, words, &out[0])
		}
		return
	}
	hammingGo(q, codes, n, words, out)
}

// hamming8AVX2 is hammingAVX2 for words = 8 and n a positive multiple of 4,
// four codes at a time.
//
//go:noescape
func hamming8AVX2(q *uint64, codes *uint64, n int, out *uint16)

// hamming60GatherAVX2 writes to out[i] the distance between the 60-word q
// and code slots[i] of codes, for i < n, prefetching the codes ahead.
//
//go:noescape
func hamming60GatherAVX2(q *uint64, codes *uint64, slots *int32, n int, out *uint16)

// hammingGather writes to out[i] the Hamming distance between the 60-word q
// and code slots[i] of codes.
func hammingGather(q []uint64, codes []uint64, slots []int32, out []uint16) {
	if len(slots) == 0 {
		return
	}
	if !hasAVX2 {
		hammingGatherGo(q, codes, slots, out)
		return
	}
	_ = q[words-1]
	_ = out[len(slots)-1]
	for _, s := range slots {
		if s < 0 || int(s) >= len(codes)/words {
			panic("gpuidx: gather slot out of range")
		}
	}
	hamming60GatherAVX2(&q[0], &codes[0], &slots[0], len(slots), &out[0])
}
