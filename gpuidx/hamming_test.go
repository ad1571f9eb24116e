package gpuidx

import "testing"

func TestHammingKernelMatchesGo(t *testing.T) {
	s := splitmix64(1)
	for _, words := range []int{1, 3, 4, 8, 12, 32, 60} {
		for _, n := range []int{0, 1, 2, 3, 4, 5, 7, 8, 100, 515} {
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

func TestHammingGatherMatchesGo(t *testing.T) {
	s := splitmix64(2)
	const n = 300
	q := make([]uint64, words)
	codes := make([]uint64, n*words)
	for i := range q {
		q[i] = s.next()
	}
	for i := range codes {
		codes[i] = s.next()
	}
	copy(codes[7*words:], q) // distance 0
	for _, m := range []int{0, 1, 5, 8, 9, 100, 1000} {
		slots := make([]int32, m)
		for i := range slots {
			slots[i] = int32(s.next() % n)
		}
		if m > 1 {
			slots[1] = 7
			slots[0] = n - 1
		}
		got := make([]uint16, m)
		want := make([]uint16, m)
		hammingGather(q, codes, slots, got)
		hammingGatherGo(q, codes, slots, want)
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("m=%d slot %d: %d; want %d (avx2 %v)", m, slots[i], got[i], want[i], hasAVX2)
			}
		}
	}
}
