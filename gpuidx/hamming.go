package gpuidx

import "math/bits"

// hammingGo writes to out[i] the Hamming distance between the words-long q
// and code i of codes (n codes of words words each). It is the portable
// kernel and the reference the assembly kernel is tested against.
func hammingGo(q []uint64, codes []uint64, n, words int, out []uint16) {
	q = q[:words]
	out = out[:n]
	for i := range out {
		c := codes[i*words : i*words+words]
		c = c[:len(q)]
		d := 0
		for j, w := range q {
			d += bits.OnesCount64(w ^ c[j])
		}
		out[i] = uint16(d)
	}
}

// hammingGatherGo is hammingGather's portable kernel.
func hammingGatherGo(q []uint64, codes []uint64, slots []int32, out []uint16) {
	out = out[:len(slots)]
	for i, s := range slots {
		hammingGo(q, codes[int(s)*words:int(s)*words+words], 1, words, out[i:i+1])
	}
}
