package providers

import (
	"context"
	"fmt"
	"math"
	"unicode/utf8"
)

// HashEmbedder is a local embedder with no model file: each word and each
// character n-gram (3 to 5 runes, of the word padded with "<" and ">") is
// hashed with a seed to one of dim buckets and a sign, and a text's embedding
// is the mean of its features' signed one-hot vectors, words weighted more
// than n-grams. Texts sharing words or word pieces get similar vectors. It is
// a stand-in for a second, different embedding model. It is safe for
// concurrent use.
type HashEmbedder struct {
	dim  int
	seed uint64
}

// NewHashEmbedder returns a hashed word and character n-gram embedder of dim
// dimensions. It panics if dim < 1.
func NewHashEmbedder(dim int, seed uint64) *HashEmbedder {
	if dim < 1 {
		panic(fmt.Sprintf("providers: NewHashEmbedder: dim %d < 1", dim))
	}
	return &HashEmbedder{dim: dim, seed: seed}
}

// Dim returns the embedding dimension.
func (h *HashEmbedder) Dim() int { return h.dim }

const wordWeight = 2

// Embed returns one embedding per text.
func (h *HashEmbedder) Embed(ctx context.Context, texts []string) ([][]float32, error) {
	out := make([][]float32, len(texts))
	var rs []rune // a token's runes, padded, reused
	for i, t := range texts {
		if i%256 == 0 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		v := make([]float32, h.dim)
		var total float32
		add := func(x uint64, w float32) {
			b := int(x % uint64(h.dim))
			if x>>63 != 0 {
				w = -w
			}
			v[b] += w
			total += float32(math.Abs(float64(w)))
		}
		for _, tok := range Tokenize(t) {
			add(newFNV(h.seed).str("w:").str(tok).sum(), wordWeight)
			rs = append(rs[:0], '<')
			for _, r := range tok {
				rs = append(rs, r)
			}
			rs = append(rs, '>')
			for n := 3; n <= 5; n++ {
				for j := 0; j+n <= len(rs); j++ {
					add(newFNV(h.seed).runes(rs[j:j+n]).sum(), 1)
				}
			}
		}
		if total > 0 {
			for k := range v {
				v[k] /= total
			}
		}
		out[i] = v
	}
	return out, nil
}

// hash64 is FNV-1a over s, seeded, finished with a splitmix64 mix so every
// bit (the sign bit included) is well mixed.
func hash64(seed uint64, s string) uint64 { return newFNV(seed).str(s).sum() }

// fnv is hash64's running state, so that a feature is hashed from its
// parts (a prefix and a word, a run of runes) without building its
// string: the strings were most of Embed's time.
type fnv uint64

func newFNV(seed uint64) fnv { return fnv(14695981039346656037 ^ seed) }

func (x fnv) str(s string) fnv {
	for i := 0; i < len(s); i++ {
		x ^= fnv(s[i])
		x *= 1099511628211
	}
	return x
}

// runes hashes the UTF-8 of rs, as string(rs) would encode it.
func (x fnv) runes(rs []rune) fnv {
	var b [utf8.UTFMax]byte
	for _, r := range rs {
		n := utf8.EncodeRune(b[:], r)
		for _, c := range b[:n] {
			x ^= fnv(c)
			x *= 1099511628211
		}
	}
	return x
}

func (x fnv) sum() uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return uint64(x ^ x>>31)
}
