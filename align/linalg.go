package align

import (
	"errors"
	"math"
)

// Small dense routines on row-major float64 matrices, enough for fitting
// adapters of a few thousand dimensions.

var errNotPD = errors.New("matrix is not positive definite")

// cholesky factors the n×n symmetric positive-definite a in place into its
// lower triangle L (a = L Lᵀ); the upper triangle is left as is.
func cholesky(a []float64, n int) error {
	for j := range n {
		rj := a[j*n : j*n+j]
		d := a[j*n+j] - dot(rj, rj)
		if !(d > 0) {
			return errNotPD
		}
		d = math.Sqrt(d)
		a[j*n+j] = d
		for i := j + 1; i < n; i++ {
			ri := a[i*n : i*n+j]
			a[i*n+j] = (a[i*n+j] - dot(ri, rj)) / d
		}
	}
	return nil
}

// cholSolve solves (L Lᵀ) x = b in place for one right-hand side b.
func cholSolve(l []float64, n int, b []float64) {
	for i := range n {
		b[i] = (b[i] - dot(l[i*n:i*n+i], b[:i])) / l[i*n+i]
	}
	for i := n - 1; i >= 0; i-- {
		s := b[i]
		for k := i + 1; k < n; k++ {
			s -= l[k*n+i] * b[k]
		}
		b[i] = s / l[i*n+i]
	}
}

// symEigen returns the eigenvalues and eigenvectors (columns of v, row-major
// n×n) of the symmetric n×n matrix a, by cyclic Jacobi rotations. a is
// destroyed.
func symEigen(a []float64, n int) (vals, v []float64) {
	v = make([]float64, n*n)
	for i := range n {
		v[i*n+i] = 1
	}
	for sweep := 0; sweep < 100; sweep++ {
		var off float64
		for p := range n {
			for q := p + 1; q < n; q++ {
				off += a[p*n+q] * a[p*n+q]
			}
		}
		if off < 1e-22 {
			break
		}
		for p := range n {
			for q := p + 1; q < n; q++ {
				apq := a[p*n+q]
				if math.Abs(apq) < 1e-300 {
					continue
				}
				theta := (a[q*n+q] - a[p*n+p]) / (2 * apq)
				t := 1 / (math.Abs(theta) + math.Sqrt(theta*theta+1))
				if theta < 0 {
					t = -t
				}
				c := 1 / math.Sqrt(t*t+1)
				s := t * c
				for k := range n {
					akp, akq := a[k*n+p], a[k*n+q]
					a[k*n+p], a[k*n+q] = c*akp-s*akq, s*akp+c*akq
				}
				for k := range n {
					apk, aqk := a[p*n+k], a[q*n+k]
					a[p*n+k], a[q*n+k] = c*apk-s*aqk, s*apk+c*aqk
				}
				for k := range n {
					vkp, vkq := v[k*n+p], v[k*n+q]
					v[k*n+p], v[k*n+q] = c*vkp-s*vkq, s*vkp+c*vkq
				}
			}
		}
	}
	vals = make([]float64, n)
	for i := range n {
		vals[i] = a[i*n+i]
	}
	return vals, v
}

// invSqrtPSD returns a^(-1/2) for the symmetric positive semi-definite n×n a,
// treating eigenvalues below eps·max as zero (pseudo-inverse).
func invSqrtPSD(a []float64, n int) []float64 {
	vals, v := symEigen(append([]float64(nil), a...), n)
	maxv := 0.0
	for _, x := range vals {
		maxv = math.Max(maxv, x)
	}
	out := make([]float64, n*n)
	for k, x := range vals {
		if x <= 1e-12*maxv || x <= 0 {
			continue
		}
		f := 1 / math.Sqrt(x)
		for i := range n {
			vik := v[i*n+k] * f
			if vik == 0 {
				continue
			}
			row := out[i*n : i*n+n]
			for j := range n {
				row[j] += vik * v[j*n+k]
			}
		}
	}
	return out
}
