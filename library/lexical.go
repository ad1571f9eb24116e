package library

import (
	"math"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/dso-proxy/dso/gpuidx"
)

// Relevance is a hybrid: half how far the embedding score stands out from
// the query's background, half how far a lexical score does. The lexical
// score is the cosine of the two texts' word vectors weighted by IDF, the
// IDF taken from a sample of the library's own texts at each calibration,
// so that the words every text of this library shares ("a man is", "how
// do I") count for little and the rare ones that say what a text is about
// count for much. An embedding alone scores a text that shares a
// library's common phrasing close to many unrelated ones; the lexical part
// is what separates them. The weight was chosen on STS-B train among 0,
// 0.25, 0.5, 0.75 and 1 (by the share of questions answered at false
// injection <= 0.2, per slice): 0.5 was best or close to it for GloVe and
// the hash embedder alike (docs/retrieval.md).
const lexicalWeight = 0.5

// lexicon weighs words by their inverse document frequency in a sample of
// the library's texts. It is immutable once built.
type lexicon struct {
	n  float64 // texts sampled
	df map[string]int32
	// anchors are the anchors' word vectors under these weights, and
	// postings the anchors each word occurs in (with its weight there), so
	// that scoring a query against every anchor touches only its words.
	anchors  []termVec
	postings map[string][]posting
}

type posting struct {
	anchor int
	w      float32
}

// termVec is a text's unit-length IDF-weighted word vector, its words in
// order (short texts: a sorted slice beats a map).
type termVec []term

type term struct {
	w string
	f float32
}

// newLexicon counts the words of texts and weighs the anchors by them.
func newLexicon(texts, anchors []string) *lexicon {
	x := &lexicon{n: float64(len(texts)), df: make(map[string]int32)}
	for _, t := range texts {
		ws := words(t)
		slices.Sort(ws)
		for _, w := range slices.Compact(ws) {
			x.df[strings.Clone(w)]++ // not a slice of the whole text
		}
	}
	x.anchors = make([]termVec, len(anchors))
	x.postings = make(map[string][]posting)
	for i, a := range anchors {
		v := x.vec(a)
		x.anchors[i] = v
		for _, t := range v {
			x.postings[t.w] = append(x.postings[t.w], posting{i, t.f})
		}
	}
	return x
}

func (x *lexicon) idf(w string) float64 {
	return math.Log((x.n + 1) / (float64(x.df[w]) + 0.5))
}

// vec is text's word vector: term frequency times IDF, unit length.
func (x *lexicon) vec(text string) termVec {
	ws := words(text)
	slices.Sort(ws)
	v := make(termVec, 0, len(ws))
	var n float64
	for i := 0; i < len(ws); {
		j := i + 1
		for j < len(ws) && ws[j] == ws[i] {
			j++
		}
		f := float64(j-i) * x.idf(ws[i])
		v = append(v, term{ws[i], float32(f)})
		n += f * f
		i = j
	}
	if n > 0 {
		inv := float32(1 / math.Sqrt(n))
		for i := range v {
			v[i].f *= inv
		}
	}
	return v
}

func (a termVec) cos(b termVec) float32 {
	var s float32
	for i, j := 0, 0; i < len(a) && j < len(b); {
		switch {
		case a[i].w < b[j].w:
			i++
		case a[i].w > b[j].w:
			j++
		default:
			s += a[i].f * b[j].f
			i++
			j++
		}
	}
	return s
}

// anchorScores returns q's lexical score against every anchor it shares a
// word with but the anchor skip (-1 for none), best first (the others
// score 0).
func (x *lexicon) anchorScores(q termVec, skip int) []float32 {
	by := make([]float32, len(x.anchors))
	for _, t := range q {
		for _, p := range x.postings[t.w] {
			by[p.anchor] += t.f * p.w
		}
	}
	out := by[:0]
	for i, s := range by {
		if s != 0 && i != skip {
			out = append(out, s)
		}
	}
	sortDesc(out)
	return out
}

// relevances returns the relevance of each of hits (score-sorted, with
// texts[i] the text of hits[i]) to the query of text qt: the embedding's
// part against the background of hits and the anchors' hits ahits, the
// lexical part against the background of the hits' and the anchors'
// lexical scores. With no lexicon the relevance is the embedding's alone
// (and texts is not read).
func (x *lexicon) relevances(qt string, hits, ahits []gpuidx.Hit, texts []string) []float32 {
	bg := background(hits, ahits, "")
	rel := make([]float32, len(hits))
	for i, h := range hits {
		rel[i] = h.Score - bg
	}
	if x == nil {
		return rel
	}
	q := x.vec(qt)
	lex := make([]float32, len(hits))
	for i := range hits {
		lex[i] = q.cos(x.vec(texts[i]))
	}
	own := slices.Clone(lex)
	sortDesc(own)
	lbg := mergedMean(own, x.anchorScores(q, -1), len(x.anchors))
	for i := range rel {
		rel[i] = hybrid(rel[i], lex[i]-lbg)
	}
	return rel
}

// hybrid is the relevance of a match from its embedding's and its lexical
// score's standing out from their backgrounds.
func hybrid(emb, lex float32) float32 {
	return lexicalWeight*emb + (1-lexicalWeight)*lex
}

// mergedMean is the mean of ranks bgFrom..bgTo-1 of two descending lists,
// the second padded with zeros to pad entries (anchors sharing no word
// with the query score 0 lexically) and cut there.
func mergedMean(a, b []float32, pad int) float32 {
	var sum float32
	n, i, j := 0, 0, 0
	for rank := 0; rank < bgTo && (i < len(a) || j < pad); rank++ {
		var s float32
		switch {
		case i < len(a) && (j >= pad || j >= len(b) || a[i] >= b[j]):
			s = a[i]
			i++
		case j < len(b):
			s = b[j]
			j++
		default:
			j++ // a zero-scoring anchor
		}
		if rank >= bgFrom {
			sum += s
			n++
		}
	}
	if n == 0 {
		return 0
	}
	return sum / float32(n)
}

func sortDesc(xs []float32) {
	slices.Sort(xs)
	slices.Reverse(xs)
}

// words splits text into lowercase words: runs of letters and digits, an
// apostrophe inside a word kept ("don't"). The words are slices of one
// lowercased copy of text.
func words(text string) []string {
	low := strings.ToLower(text)
	out := make([]string, 0, 16)
	start := -1
	for i, r := range low {
		inWord := unicode.IsLetter(r) || unicode.IsDigit(r)
		if !inWord && r == '\'' && start >= 0 {
			next, _ := utf8.DecodeRuneInString(low[i+1:])
			inWord = unicode.IsLetter(next)
		}
		switch {
		case inWord && start < 0:
			start = i
		case !inWord && start >= 0:
			out = append(out, low[start:i])
			start = -1
		}
	}
	if start >= 0 {
		out = append(out, low[start:])
	}
	return out
}
