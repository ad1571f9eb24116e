package providers

import (
	"bufio"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
	"unicode"
)

// ErrWordVectors reports a malformed word-vector file.
var ErrWordVectors = errors.New("providers: malformed word-vector file")

// WordVectorOptions configures LoadWordVectors. The zero value loads every
// word and embeds with a plain mean.
type WordVectorOptions struct {
	// MaxWords keeps only the first MaxWords words of the file (files list
	// the most frequent first); 0 keeps all.
	MaxWords int
	// SIF weights each word by a/(a+p(w)) (Arora et al. 2017), where p(w)
	// is the word's probability; 0 means a plain mean. 1e-3 is typical.
	SIF float64
}

// WordVectors is a local embedder over pretrained word vectors: a sentence's
// embedding is the (optionally SIF-weighted) mean of its words' vectors.
// Words without a vector are skipped; a sentence with none embeds to zeros.
// It is safe for concurrent use.
type WordVectors struct {
	dim    int
	index  map[string]int32
	vecs   []float32 // len(index)*dim
	weight []float32 // SIF weight per word; 1 when SIF is off
}

// LoadWordVectors reads a word-vector file in the standard text format: one
// "word v1 ... vd" line per word (GloVe), optionally after word2vec's
// "count dim" header line, plain or gzip-compressed (detected by content).
// Words are expected in decreasing frequency; without counts, p(w) for SIF
// comes from the rank by Zipf's law, p(rank r) = 1/(r·H(n)).
func LoadWordVectors(path string, opts WordVectorOptions) (*WordVectors, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("providers: load word vectors: %w", err)
	}
	defer f.Close()
	return ReadWordVectors(f, opts)
}

// ReadWordVectors is LoadWordVectors on a reader.
func ReadWordVectors(r io.Reader, opts WordVectorOptions) (*WordVectors, error) {
	br := bufio.NewReaderSize(r, 1<<16)
	if magic, err := br.Peek(2); err == nil && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("providers: load word vectors: %w", err)
		}
		defer zr.Close()
		br = bufio.NewReaderSize(zr, 1<<16)
	}
	sc := bufio.NewScanner(br)
	sc.Buffer(make([]byte, 1<<16), 1<<22)
	wv := &WordVectors{index: map[string]int32{}}
	line := 0
	for sc.Scan() {
		line++
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 {
			continue
		}
		if line == 1 && len(fields) == 2 {
			if _, err := strconv.Atoi(fields[0]); err == nil {
				d, err := strconv.Atoi(fields[1])
				if err != nil || d <= 0 {
					return nil, fmt.Errorf("providers: word vectors line 1: bad header: %w", ErrWordVectors)
				}
				wv.dim = d
				continue
			}
		}
		if wv.dim == 0 {
			wv.dim = len(fields) - 1
			if wv.dim <= 0 {
				return nil, fmt.Errorf("providers: word vectors line %d: no values: %w", line, ErrWordVectors)
			}
		}
		if len(fields) != wv.dim+1 {
			return nil, fmt.Errorf("providers: word vectors line %d: %d values, want %d: %w", line, len(fields)-1, wv.dim, ErrWordVectors)
		}
		word := strings.ToLower(fields[0])
		if _, dup := wv.index[word]; dup {
			continue // keep the more frequent (earlier) entry
		}
		for _, s := range fields[1:] {
			v, err := strconv.ParseFloat(s, 32)
			if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
				return nil, fmt.Errorf("providers: word vectors line %d: bad value %q: %w", line, s, ErrWordVectors)
			}
			wv.vecs = append(wv.vecs, float32(v))
		}
		wv.index[word] = int32(len(wv.index))
		if opts.MaxWords > 0 && len(wv.index) >= opts.MaxWords {
			break
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("providers: load word vectors: %w", err)
	}
	if len(wv.index) == 0 {
		return nil, fmt.Errorf("providers: load word vectors: no words: %w", ErrWordVectors)
	}
	n := len(wv.index)
	wv.weight = make([]float32, n)
	var h float64 // harmonic number H(n)
	for r := 1; r <= n; r++ {
		h += 1 / float64(r)
	}
	for i := range wv.weight {
		wv.weight[i] = 1
		if opts.SIF > 0 {
			p := 1 / (float64(i+1) * h)
			wv.weight[i] = float32(opts.SIF / (opts.SIF + p))
		}
	}
	return wv, nil
}

// Dim returns the embedding dimension.
func (wv *WordVectors) Dim() int { return wv.dim }

// Len returns the vocabulary size.
func (wv *WordVectors) Len() int { return len(wv.index) }

// Embed returns one embedding per text.
func (wv *WordVectors) Embed(ctx context.Context, texts []string) ([][]float32, error) {
	out := make([][]float32, len(texts))
	for i, t := range texts {
		if i%256 == 0 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		v := make([]float32, wv.dim)
		var wsum float32
		for _, tok := range Tokenize(t) {
			j, ok := wv.index[tok]
			if !ok {
				continue
			}
			w := wv.weight[j]
			wsum += w
			for k, x := range wv.vecs[int(j)*wv.dim : int(j+1)*wv.dim] {
				v[k] += w * x
			}
		}
		if wsum > 0 {
			for k := range v {
				v[k] /= wsum
			}
		}
		out[i] = v
	}
	return out, nil
}

// Tokenize lowercases s and splits it into words and single punctuation
// marks, as GloVe's corpus was tokenised: "Don't stop." gives
// ["don't", "stop", "."]. Apostrophes inside words stay; other symbols stand
// alone.
func Tokenize(s string) []string {
	var toks []string
	s = strings.ToLower(s)
	start := -1
	rs := []rune(s)
	flush := func(i int) {
		if start >= 0 {
			toks = append(toks, string(rs[start:i]))
			start = -1
		}
	}
	for i, r := range rs {
		switch {
		case unicode.IsLetter(r) || unicode.IsDigit(r):
			if start < 0 {
				start = i
			}
		case r == '\'' && start >= 0 && i+1 < len(rs) && (unicode.IsLetter(rs[i+1])):
			// inside a word: don't, it's
		case unicode.IsSpace(r):
			flush(i)
		default:
			flush(i)
			toks = append(toks, string(r))
		}
	}
	flush(len(rs))
	return toks
}
