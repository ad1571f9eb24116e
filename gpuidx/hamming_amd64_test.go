//go:build amd64 && !purego

package gpuidx

func init() {
	if hasAVX2 {
		genericKernel = func(q, codes []uint64, n, w int, out []uint16) {
			hammingAVX2(&q[0], &codes[0], n, w, &out[0])
		}
	}
}
