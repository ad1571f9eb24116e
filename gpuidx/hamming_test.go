package gpuidx

import "testing"

func TestHammingKernelMatchesGo(t *testing.T) {
	s := splitmix64(1)
	for _, words := range []int{1, 3, 4, 8, 12, 32, 60} {
		for _, n := range []int{0, 1, 2, 7, 100} {
			q := make([]uint64, words)
			codes := make([]uint64, n*words)
			for i := range q {
				q[i] = s.next()
			}
			for i := range codes {
				codes[i] = s.next()
				if i%5 == 0 {
					codes[i] = q[i%words] // equal words, distance 0
				}
			}
			got := make([]uint16, n)
			want := make([]uint16, n)
			hamming(q, codes, n, words, got)
			hammingGo(q, codes, n, words, want)
			for i := range want {
				if got[i] != want[i] {
					t.Fatalf("words=%d n=%d code %d: %d; want %d (avx2 %v)", words, n, i, got[i], want[i], hasAVX2)
				}
			}
		}
	}
}
