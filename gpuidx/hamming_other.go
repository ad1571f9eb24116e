//go:build !amd64 || purego

package gpuidx

const hasAVX2 = false

func hamming(q []uint64, codes []uint64, n, words int, out []uint16) {
	hammingGo(q, codes, n, words, out)
}

func hammingGather(q []uint64, codes []uint64, slots []int32, out []uint16) {
	hammingGatherGo(q, codes, slots, out)
}

func hammingBelow(q []uint64, codes []uint64, n, words, limit int, out []uint16, below []uint8) bool {
	return false
}
