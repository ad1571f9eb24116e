package align

import "golang.org/x/sys/cpu"

//go:noescape
func butterfliesAVX2(x *float32, n, h int)

func init() {
	if cpu.X86.HasAVX2 {
		butterflies = func(x []float32) {
			if len(x) >= 16 {
				butterfliesAVX2(&x[0], len(x), 8)
			}
		}
	}
}
