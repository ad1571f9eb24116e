package library

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"unicode"

	"github.com/dso-proxy/dso/gpuidx"
)

func TestWords(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{"", nil},
		{"A man is playing a Flute.", []string{"a", "man", "is", "playing", "a", "flute"}},
		{"Don't stop -- it's 37°C!", []string{"don't", "stop", "it's", "37", "c"}},
		{"'quoted' x'", []string{"quoted", "x"}},
		{"Zürich, 2024: naïve", []string{"zürich", "2024", "naïve"}},
		{"...", nil},
	} {
		if got := words(tc.in); !slices.Equal(got, tc.want) {
			t.Errorf("words(%q) = %q; want %q", tc.in, got, tc.want)
		}
	}
}

func FuzzWords(f *testing.F) {
	for _, s := range []string{"A man is playing a flute.", "don't'", "'''", "x\u00a0y", "\xff\xfe"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		low := strings.ToLower(s)
		for _, w := range words(s) {
			if w == "" || !strings.Contains(low, w) {
				t.Fatalf("words(%q): %q is not a piece of the lowercased text", s, w)
			}
			r := []rune(w)
			if !unicode.IsLetter(r[0]) && !unicode.IsDigit(r[0]) {
				t.Fatalf("words(%q): %q starts with neither a letter nor a digit", s, w)
			}
		}
	})
}

// The lexicon weighs a word by how rare it is among the library's texts:
// a question shares more with a text that has its rare word than with one
// that has only the library's common phrasing, though the latter shares
// more words.
func TestLexiconWeighsRareWords(t *testing.T) {
	lib := []string{
		"A man is playing a guitar.", "A man is playing a piano.", "A man is playing a drum.",
		"A man is cutting an onion.", "A man is riding a horse.", "A woman is slicing a potato.",
		"A man plays the flute.", "A woman is dancing.", "A man is running.", "A cat is playing.",
	}
	x := newLexicon(lib, Anchors())
	if a, flute := x.idf("a"), x.idf("flute"); a >= flute {
		t.Fatalf("idf: a %.3f, flute %.3f; want the rare word weighed more", a, flute)
	}
	q := x.vec("A man is playing a flute.")
	rare, common := q.cos(x.vec("A man plays the flute.")), q.cos(x.vec("A man is playing a guitar."))
	if rare <= common {
		t.Errorf("lexical score: %.3f with the flute, %.3f with only the common words; want the rare word to count more", rare, common)
	}
	if s := q.cos(x.vec("Zebras graze.")); s != 0 {
		t.Errorf("lexical score %.3f with a text sharing no word; want 0", s)
	}
}

// Without a lexicon (a small library, or a query with no text) relevance is
// the embedding's alone: the score less the background.
func TestRelevancesWithoutLexicon(t *testing.T) {
	var hits, ahits []gpuidx.Hit
	for i := range 9 {
		hits = append(hits, gpuidx.Hit{ID: string(rune('a' + i)), Score: 0.9 - 0.1*float32(i)})
		ahits = append(ahits, gpuidx.Hit{ID: anchorID(i), Score: 0.05})
	}
	bg := background(hits, ahits, "")
	rel := (*lexicon)(nil).relevances("anything", hits, ahits, nil)
	for i, h := range hits {
		if rel[i] != h.Score-bg {
			t.Errorf("hit %d: relevance %.4f; want %.4f", i, rel[i], h.Score-bg)
		}
	}
}

// The lexical background pads the anchors that share no word with the
// query with zeros, and reads ranks bgFrom..bgTo-1 of the merged lists.
func TestMergedMean(t *testing.T) {
	for _, tc := range []struct {
		a, b []float32
		pad  int
		want float32
	}{
		{[]float32{0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1}, nil, 0, (0.5 + 0.4 + 0.3 + 0.2 + 0.1) / 5},
		{[]float32{0.9, 0.8}, []float32{0.85, 0.7, 0.6, 0.5}, 100, (0.6 + 0.5) / 5},
		{nil, []float32{1, 1, 1, 1, 1, 1}, 3, 0},
		{nil, nil, 0, 0},
	} {
		if got := mergedMean(tc.a, tc.b, tc.pad); got < tc.want-1e-6 || got > tc.want+1e-6 {
			t.Errorf("mergedMean(%v, %v, %d) = %.4f; want %.4f", tc.a, tc.b, tc.pad, got, tc.want)
		}
	}
}

// BenchmarkLexicalRelevances times the lexical half of one search's
// relevance: nine matches' texts against a question, with the anchors'
// background.
//
//	go test -run xxx -bench LexicalRelevances ./library
func BenchmarkLexicalRelevances(b *testing.B) {
	var lib []string
	for i := range 2000 {
		lib = append(lib, fmt.Sprintf("Lesson %d: when the task looks like case %d, check the inputs first and state the assumptions.", i, i%97))
	}
	x := newLexicon(lib, Anchors())
	hits := make([]gpuidx.Hit, 9)
	texts := make([]string, 9)
	for i := range hits {
		hits[i] = gpuidx.Hit{ID: fmt.Sprint(i), Score: 0.9 - 0.05*float32(i)}
		texts[i] = lib[i*7]
	}
	b.ReportAllocs()
	for b.Loop() {
		x.relevances("How should I approach a task like case 17?", hits, nil, texts)
	}
}
