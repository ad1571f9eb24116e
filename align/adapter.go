package align

import (
	"errors"
	"fmt"
	"math"
)

// Method names how an adapter was made.
type Method string

// Adapter methods. Ridge and Procrustes are fitted from anchor pairs; PCA and
// Pad are labelled fallbacks for models without an adapter.
const (
	MethodRidge      Method = "ridge"
	MethodProcrustes Method = "procrustes"
	MethodPCA        Method = "pca"
	MethodPad        Method = "pad" // zero-pad or truncate
)

// Fallback reports whether m is a fallback rather than a fitted map.
func (m Method) Fallback() bool { return m == MethodPCA || m == MethodPad }

// Sentinel errors.
var (
	ErrDim     = errors.New("align: dimension mismatch")
	ErrAnchors = errors.New("align: not enough anchor pairs")
	ErrMethod  = errors.New("align: unknown method")
)

// Adapter is an affine map from a source model's space (In dims) into the
// reference space (Out dims): y = W x + Bias.
type Adapter struct {
	Method Method
	In     int
	Out    int
	// W is the Out×In matrix, row-major. Nil means pad/truncate (Method
	// Pad): y[i] = x[i] for i < min(In, Out), 0 beyond.
	W []float32
	// Bias is added after W; nil means zero.
	Bias []float32
	// RefMean is the mean of the reference space as seen on the anchors (Out
	// dims), the centre to subtract before the lift; nil when unknown.
	RefMean []float32
}

// Apply maps src (In components) into dst (grown to Out) and returns dst[:Out].
func (a *Adapter) Apply(dst, src []float32) ([]float32, error) {
	if len(src) != a.In {
		return nil, fmt.Errorf("align: %s adapter input %d components, want %d: %w", a.Method, len(src), a.In, ErrDim)
	}
	if cap(dst) < a.Out {
		dst = make([]float32, a.Out)
	}
	dst = dst[:a.Out]
	if a.W == nil {
		n := copy(dst, src)
		clear(dst[n:])
	} else {
		for i := range dst {
			dst[i] = dot(a.W[i*a.In:(i+1)*a.In], src)
		}
	}
	if a.Bias != nil {
		for i := range dst {
			dst[i] += a.Bias[i]
		}
	}
	return dst, nil
}

// dot is the dot product of a and b[:len(a)], summed in four lanes.
func dot[T float32 | float64](a, b []T) T {
	b = b[:len(a)]
	var s0, s1, s2, s3 T
	i := 0
	for ; i+4 <= len(a); i += 4 {
		s0 += a[i] * b[i]
		s1 += a[i+1] * b[i+1]
		s2 += a[i+2] * b[i+2]
		s3 += a[i+3] * b[i+3]
	}
	for ; i < len(a); i++ {
		s0 += a[i] * b[i]
	}
	return (s0 + s1) + (s2 + s3)
}

// PadTruncate returns the pad/truncate fallback from in to out dims.
func PadTruncate(in, out int) *Adapter {
	return &Adapter{Method: MethodPad, In: in, Out: out}
}

// moments holds the sufficient statistics of anchor pairs for linear fits.
type moments struct {
	n       int
	in, out int
	mx, my  []float64 // means
	xx      []float64 // centred Xᵀ X, in×in
	xy      []float64 // centred Xᵀ Y, in×out
}

// anchorMoments computes means and centred cross products of rows x (source
// model) and y (reference model) of the anchors. Zeros in x are skipped, so
// sparse embeddings (hashed n-grams) are cheap.
func anchorMoments(x, y [][]float32, wantXX bool) (*moments, error) {
	if len(x) != len(y) {
		return nil, fmt.Errorf("align: %d source and %d reference anchors: %w", len(x), len(y), ErrAnchors)
	}
	if len(x) < 2 {
		return nil, fmt.Errorf("align: %d anchors: %w", len(x), ErrAnchors)
	}
	m := &moments{n: len(x), in: len(x[0]), out: len(y[0])}
	m.mx, m.my = make([]float64, m.in), make([]float64, m.out)
	m.xy = make([]float64, m.in*m.out)
	if wantXX {
		m.xx = make([]float64, m.in*m.in)
	}
	idx := make([]int, 0, m.in)
	val := make([]float64, 0, m.in)
	for r := range x {
		if len(x[r]) != m.in || len(y[r]) != m.out {
			return nil, fmt.Errorf("align: anchor %d has %d/%d dims, want %d/%d: %w", r, len(x[r]), len(y[r]), m.in, m.out, ErrDim)
		}
		idx, val = idx[:0], val[:0]
		for i, v := range x[r] {
			if v != 0 {
				idx = append(idx, i)
				val = append(val, float64(v))
				m.mx[i] += float64(v)
			}
		}
		yr := y[r]
		for j, v := range yr {
			m.my[j] += float64(v)
		}
		for k, i := range idx {
			vi := val[k]
			row := m.xy[i*m.out : (i+1)*m.out]
			for j, v := range yr {
				row[j] += vi * float64(v)
			}
			if wantXX {
				xrow := m.xx[i*m.in : (i+1)*m.in]
				for k2, i2 := range idx {
					xrow[i2] += vi * val[k2]
				}
			}
		}
	}
	n := float64(m.n)
	for i := range m.mx {
		m.mx[i] /= n
	}
	for j := range m.my {
		m.my[j] /= n
	}
	for i, mi := range m.mx {
		row := m.xy[i*m.out : (i+1)*m.out]
		for j, mj := range m.my {
			row[j] -= n * mi * mj
		}
		if wantXX {
			xrow := m.xx[i*m.in : (i+1)*m.in]
			for j, mj := range m.mx {
				xrow[j] -= n * mi * mj
			}
		}
	}
	return m, nil
}

func (m *moments) refMean() []float32 { return to32(m.my) }

func to32(v []float64) []float32 {
	out := make([]float32, len(v))
	for i, x := range v {
		out[i] = float32(x)
	}
	return out
}

// FitRidge fits y ≈ W x + b by ridge regression on anchor pairs: row r of x
// is anchor r embedded by the source model, row r of y the same anchor in the
// reference space. lambda is relative: the penalty added to the centred Gram
// matrix is lambda × its mean diagonal, so one value suits models of any
// scale; 0.01 to 0.3 is typical, [SelectLambda] picks one on held-out anchors.
func FitRidge(x, y [][]float32, lambda float64) (*Adapter, error) {
	m, err := anchorMoments(x, y, true)
	if err != nil {
		return nil, err
	}
	return m.ridge(lambda)
}

func (m *moments) ridge(lambda float64) (*Adapter, error) {
	if lambda < 0 || math.IsNaN(lambda) {
		return nil, fmt.Errorf("align: ridge lambda %v must be >= 0", lambda)
	}
	a := append([]float64(nil), m.xx...)
	var tr float64
	for i := range m.in {
		tr += a[i*m.in+i]
	}
	pen := lambda*tr/float64(m.in) + 1e-9*tr/float64(m.in) + 1e-12
	for i := range m.in {
		a[i*m.in+i] += pen
	}
	if err := cholesky(a, m.in); err != nil {
		return nil, fmt.Errorf("align: ridge fit: %w", err)
	}
	w := make([]float32, m.out*m.in)
	col := make([]float64, m.in)
	for j := range m.out {
		for i := range m.in {
			col[i] = m.xy[i*m.out+j]
		}
		cholSolve(a, m.in, col)
		for i, v := range col {
			w[j*m.in+i] = float32(v)
		}
	}
	return m.finish(MethodRidge, w, 1), nil
}

// finish sets the bias so the map sends the source mean to the reference mean.
func (m *moments) finish(method Method, w []float32, scale float64) *Adapter {
	bias := make([]float32, m.out)
	for j := range m.out {
		var s float64
		for i := range m.in {
			s += float64(w[j*m.in+i]) * m.mx[i]
		}
		bias[j] = float32(m.my[j] - s)
	}
	return &Adapter{Method: method, In: m.in, Out: m.out, W: w, Bias: bias, RefMean: m.refMean()}
}

// FitProcrustes fits y ≈ s R x + b where R is orthogonal (semi-orthogonal
// when the dimensions differ) and s a single scale, on centred anchor pairs
// (orthogonal Procrustes: R = V Uᵀ from the SVD Xᵀ Y = U Σ Vᵀ). It keeps the
// source geometry intact and needs fewer anchors than ridge.
func FitProcrustes(x, y [][]float32) (*Adapter, error) {
	m, err := anchorMoments(x, y, false)
	if err != nil {
		return nil, err
	}
	var xnorm float64 // ||Xc||²
	for r := range x {
		for i, v := range x[r] {
			d := float64(v) - m.mx[i]
			xnorm += d * d
		}
	}
	in, out := m.in, m.out
	r := make([]float64, out*in) // R, out×in
	if in >= out {
		// R = (MᵀM)^(-1/2) Mᵀ with M = Xcᵀ Yc (in×out).
		mtm := make([]float64, out*out)
		for i := range in {
			row := m.xy[i*out : (i+1)*out]
			for a, va := range row {
				for b, vb := range row {
					mtm[a*out+b] += va * vb
				}
			}
		}
		s := invSqrtPSD(mtm, out)
		for a := range out {
			for b := range out {
				sab := s[a*out+b]
				for i := range in {
					r[a*in+i] += sab * m.xy[i*out+b]
				}
			}
		}
	} else {
		// R = Mᵀ (M Mᵀ)^(-1/2).
		mmt := make([]float64, in*in)
		for i := range in {
			for k := range in {
				mmt[i*in+k] = dot(m.xy[i*out:(i+1)*out], m.xy[k*out:(k+1)*out])
			}
		}
		s := invSqrtPSD(mmt, in)
		for a := range out {
			for i := range in {
				var v float64
				for k := range in {
					v += m.xy[k*out+a] * s[k*in+i]
				}
				r[a*in+i] = v
			}
		}
	}
	// Scale: s = tr(Rᵀ... ) = sum(R ∘ Mᵀ) / ||Xc||² (trace of Σ over ||Xc||²).
	var tr float64
	for a := range out {
		for i := range in {
			tr += r[a*in+i] * m.xy[i*out+a]
		}
	}
	scale := 1.0
	if xnorm > 0 {
		scale = tr / xnorm
	}
	w := make([]float32, out*in)
	for i, v := range r {
		w[i] = float32(scale * v)
	}
	return m.finish(MethodProcrustes, w, scale), nil
}

// FitPCA returns the PCA fallback: the projection of centred source vectors
// onto their top out principal directions (by subspace iteration), ordered
// by variance. It needs no reference embeddings, so it does not make spaces
// comparable; it only reduces dimension.
func FitPCA(x [][]float32, out int) (*Adapter, error) {
	if len(x) < 2 {
		return nil, fmt.Errorf("align: pca on %d vectors: %w", len(x), ErrAnchors)
	}
	in := len(x[0])
	if out <= 0 || out > in {
		return nil, fmt.Errorf("align: pca to %d dims from %d: %w", out, in, ErrDim)
	}
	m, err := anchorMoments(x, x, true)
	if err != nil {
		return nil, err
	}
	// Subspace iteration on the covariance C (in×in) for out directions.
	q := make([]float64, in*out) // column-major: q[k*in+i]
	s := splitmix64(1)
	for i := range q {
		q[i] = float64(int64(s.next()>>11)-(1<<52)) / (1 << 52)
	}
	orthonormalise(q, in, out)
	z := make([]float64, in*out)
	for it := 0; it < 60; it++ {
		for k := range out {
			qk := q[k*in : (k+1)*in]
			for i := range in {
				z[k*in+i] = dot(m.xx[i*in:(i+1)*in], qk)
			}
		}
		q, z = z, q
		orthonormalise(q, in, out)
	}
	// Order by Rayleigh quotient.
	type dir struct {
		v        []float64
		variance float64
	}
	dirs := make([]dir, out)
	for k := range out {
		qk := q[k*in : (k+1)*in]
		var rq float64
		for i := range in {
			rq += qk[i] * dot(m.xx[i*in:(i+1)*in], qk)
		}
		dirs[k] = dir{qk, rq}
	}
	for i := 1; i < len(dirs); i++ {
		for j := i; j > 0 && dirs[j].variance > dirs[j-1].variance; j-- {
			dirs[j], dirs[j-1] = dirs[j-1], dirs[j]
		}
	}
	w := make([]float32, out*in)
	bias := make([]float32, out)
	for k, d := range dirs {
		var b float64
		for i, v := range d.v {
			w[k*in+i] = float32(v)
			b -= v * m.mx[i]
		}
		bias[k] = float32(b)
	}
	return &Adapter{Method: MethodPCA, In: in, Out: out, W: w, Bias: bias}, nil
}

// orthonormalise applies modified Gram–Schmidt to the k column vectors
// (length n, stored one after another) in q.
func orthonormalise(q []float64, n, k int) {
	for a := range k {
		qa := q[a*n : (a+1)*n]
		for b := range a {
			qb := q[b*n : (b+1)*n]
			d := dot(qa, qb)
			for i := range qa {
				qa[i] -= d * qb[i]
			}
		}
		nrm := math.Sqrt(dot(qa, qa))
		if nrm == 0 {
			qa[a%n] = 1
			continue
		}
		for i := range qa {
			qa[i] /= nrm
		}
	}
}

// SelectLambda picks the ridge regulariser from grid (nil: a default grid)
// that maximises the mean cosine between mapped and true reference vectors
// on held-out anchors (every fifth pair), fitting on the rest.
func SelectLambda(x, y [][]float32, grid []float64) (float64, error) {
	if len(grid) == 0 {
		grid = []float64{0.003, 0.01, 0.03, 0.1, 0.3, 1}
	}
	if len(x) != len(y) || len(x) < 10 {
		return 0, fmt.Errorf("align: select lambda on %d anchors: %w", len(x), ErrAnchors)
	}
	var tx, ty, hx, hy [][]float32
	for i := range x {
		if i%5 == 4 {
			hx, hy = append(hx, x[i]), append(hy, y[i])
		} else {
			tx, ty = append(tx, x[i]), append(ty, y[i])
		}
	}
	m, err := anchorMoments(tx, ty, true)
	if err != nil {
		return 0, err
	}
	best, bestScore := grid[0], math.Inf(-1)
	var buf []float32
	for _, l := range grid {
		a, err := m.ridge(l)
		if err != nil {
			continue
		}
		var score float64
		for i := range hx {
			buf, _ = a.Apply(buf, hx[i])
			score += cosineCentred(buf, hy[i], a.RefMean)
		}
		if score > bestScore {
			best, bestScore = l, score
		}
	}
	if math.IsInf(bestScore, -1) {
		return 0, fmt.Errorf("align: select lambda: no value in %v gives a fit", grid)
	}
	return best, nil
}

func cosineCentred(a, b, mean []float32) float64 {
	var ab, aa, bb float64
	for i := range a {
		x, y := float64(a[i]-mean[i]), float64(b[i]-mean[i])
		ab += x * y
		aa += x * x
		bb += y * y
	}
	if aa == 0 || bb == 0 {
		return 0
	}
	return ab / math.Sqrt(aa*bb)
}
