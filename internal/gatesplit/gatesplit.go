// Package gatesplit builds a test of the relevance gate from sentence
// pairs (STS-style, scored 0 to 5): a library to store, questions it
// answers (each with its stored answer) and questions of the same genre it
// holds no answer to. dso eval gate and the library's gate tests share it.
package gatesplit

import (
	"strings"
	"unicode"
)

// Paraphrase is the score from which a pair's sentences say the same
// thing (STS-B's 4: "mostly equivalent").
const Paraphrase = 4

// Pair is one sentence pair and its similarity judgement.
type Pair struct {
	S1, S2 string
	Score  float64
}

// Split is the library and the questions asked of it.
type Split struct {
	// Library is the texts to store.
	Library []string
	// Pos are the questions with a stored answer (Answer[q]); Neg those
	// with none.
	Pos, Neg []string
	Answer   map[string]string
}

// New splits ps. Sentences that the pairs call paraphrases of each other
// (a score of at least Paraphrase), directly or through a chain, and
// sentences equal once normalised, are one group: the same thing said. Of
// each group at most one paraphrase pair is asked, taken in file order:
// every other one stores its first sentence and asks its second (a
// positive), the rest ask their second with nothing of the group stored (a
// negative). The sentences of the other pairs are stored as the rest of
// the library, except those of a group already asked. So a negative has no
// stored sentence that the data says is a rewording of it, and a
// positive's answer is the one stored text of its group. (Files such as
// STS-B repeat one caption or headline across many pairs; without the
// groups, a "negative" was often asked with its own words stored.)
func New(ps []Pair) Split {
	g := groups{parent: map[string]string{}}
	for _, p := range ps {
		a, b := g.find(norm(p.S1)), g.find(norm(p.S2))
		if p.Score >= Paraphrase && a != b {
			g.parent[a] = b
		}
	}
	s := Split{Answer: map[string]string{}}
	asked := map[string]bool{} // groups with a question
	seen := map[string]bool{}
	k := 0
	for _, p := range ps {
		if p.Score < Paraphrase {
			continue
		}
		grp := g.find(norm(p.S1))
		if asked[grp] {
			continue
		}
		asked[grp] = true
		if k%2 == 0 {
			seen[p.S1] = true
			s.Library = append(s.Library, p.S1)
			s.Pos = append(s.Pos, p.S2)
			s.Answer[p.S2] = p.S1
		} else {
			s.Neg = append(s.Neg, p.S2)
		}
		k++
	}
	for _, p := range ps {
		if p.Score >= Paraphrase {
			continue
		}
		for _, t := range []string{p.S1, p.S2} {
			if !seen[t] && !asked[g.find(norm(t))] {
				seen[t] = true
				s.Library = append(s.Library, t)
			}
		}
	}
	return s
}

// groups is a union-find over normalised sentences.
type groups struct{ parent map[string]string }

func (g groups) find(x string) string {
	if _, ok := g.parent[x]; !ok {
		g.parent[x] = x
	}
	for g.parent[x] != x {
		g.parent[x] = g.parent[g.parent[x]]
		x = g.parent[x]
	}
	return x
}

// norm is s lowercased, its words (runs of letters and digits) joined by
// single spaces: punctuation, case and spacing do not make another
// sentence.
func norm(s string) string {
	return strings.Join(strings.FieldsFunc(strings.ToLower(s), func(r rune) bool {
		return !unicode.IsLetter(r) && !unicode.IsDigit(r)
	}), " ")
}
