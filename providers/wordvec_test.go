package providers

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/dso-proxy/dso/internal/shareddata"
)

const tinyGloVe = `the 1 0 0
cat 0 1 0
dog 0 0.8 0.2
sat 0 0 1
. 0.5 0.5 0
`

func TestTokenize(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{"A man is playing a guitar.", []string{"a", "man", "is", "playing", "a", "guitar", "."}},
		{"Don't stop, U2!", []string{"don't", "stop", ",", "u2", "!"}},
		{`"quoted"  words`, []string{`"`, "quoted", `"`, "words"}},
		{"", nil},
	}
	for _, tt := range tests {
		if got := Tokenize(tt.in); !slices.Equal(got, tt.want) {
			t.Errorf("Tokenize(%q) = %q; want %q", tt.in, got, tt.want)
		}
	}
}

func TestReadWordVectors(t *testing.T) {
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write([]byte(tinyGloVe))
	zw.Close()
	tests := []struct {
		name string
		data []byte
	}{
		{"glove", []byte(tinyGloVe)},
		{"word2vec-header", []byte("5 3\n" + tinyGloVe)},
		{"gzip", gz.Bytes()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wv, err := ReadWordVectors(bytes.NewReader(tt.data), WordVectorOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if wv.Dim() != 3 || wv.Len() != 5 {
				t.Fatalf("dim %d, len %d; want 3, 5", wv.Dim(), wv.Len())
			}
			got, err := wv.Embed(context.Background(), []string{"The cat sat", "zzz", "Cat"})
			if err != nil {
				t.Fatal(err)
			}
			want := [][]float32{{1.0 / 3, 1.0 / 3, 1.0 / 3}, {0, 0, 0}, {0, 1, 0}}
			for i := range want {
				for k := range want[i] {
					if math.Abs(float64(got[i][k]-want[i][k])) > 1e-6 {
						t.Fatalf("embedding %d = %v; want %v", i, got[i], want[i])
					}
				}
			}
		})
	}
}

func TestReadWordVectorsErrors(t *testing.T) {
	for _, bad := range []string{"", "a 1 2\nb 1\n", "a 1 x\n", "a NaN 1\n", "3 0\n", "word\n"} {
		if _, err := ReadWordVectors(strings.NewReader(bad), WordVectorOptions{}); !errors.Is(err, ErrWordVectors) {
			t.Errorf("ReadWordVectors(%q): got %v; want ErrWordVectors", bad, err)
		}
	}
}

func TestSIFDownweightsFrequentWords(t *testing.T) {
	wv, err := ReadWordVectors(strings.NewReader(tinyGloVe), WordVectorOptions{SIF: 1e-3})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := wv.Embed(context.Background(), []string{"the sat"})
	// "the" (rank 1) weighs less than "sat" (rank 4).
	if !(got[0][0] < got[0][2]) {
		t.Fatalf("SIF embedding %v: the frequent word dominates", got[0])
	}
}

func FuzzReadWordVectors(f *testing.F) {
	f.Add([]byte(tinyGloVe))
	f.Add([]byte("2 2\na 1 2\nb 3 4\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		wv, err := ReadWordVectors(bytes.NewReader(b), WordVectorOptions{})
		if err != nil {
			return
		}
		out, err := wv.Embed(context.Background(), []string{string(b)})
		if err != nil || len(out[0]) != wv.Dim() {
			t.Fatalf("embed after load: %v", err)
		}
	})
}

func TestGloVeFile(t *testing.T) {
	path := shareddata.GloVe(t)
	wv, err := LoadWordVectors(path, WordVectorOptions{MaxWords: 20000})
	if err != nil {
		t.Fatal(err)
	}
	if wv.Dim() != 100 || wv.Len() != 20000 {
		t.Fatalf("dim %d len %d", wv.Dim(), wv.Len())
	}
	v, _ := wv.Embed(context.Background(), []string{"a man plays the guitar", "a person playing a guitar", "stocks fell sharply today"})
	if !(cos(v[0], v[1]) > cos(v[0], v[2])) {
		t.Fatalf("paraphrase cosine %.3f not above unrelated %.3f", cos(v[0], v[1]), cos(v[0], v[2]))
	}
}

func cos(a, b []float32) float64 {
	var ab, aa, bb float64
	for i := range a {
		ab += float64(a[i]) * float64(b[i])
		aa += float64(a[i]) * float64(a[i])
		bb += float64(b[i]) * float64(b[i])
	}
	return ab / math.Sqrt(aa*bb)
}

func BenchmarkWordVectorsEmbed(b *testing.B) {
	wv, _ := ReadWordVectors(strings.NewReader(tinyGloVe), WordVectorOptions{SIF: 1e-3})
	texts := []string{"The cat sat. The dog sat."}
	b.ReportAllocs()
	for b.Loop() {
		wv.Embed(context.Background(), texts)
	}
}
