package learn

import (
	"math"
	"regexp"
	"strings"
)

// FinalAnswer returns the part of a model's reply that states its final
// answer, where right and wrong answers differ: the content of the last
// \boxed{...} (braces balanced), else what follows the last "answer:" or
// "answer is" (final answer, the answer, ...) on its line, else the last
// non-empty line. Reasoning before it is ignored.
func FinalAnswer(s string) string {
	if b, ok := lastBoxed(s); ok {
		return strings.TrimSpace(b)
	}
	if locs := answerCueRE.FindAllStringIndex(s, -1); len(locs) > 0 {
		rest := s[locs[len(locs)-1][1]:]
		line, _, _ := strings.Cut(rest, "\n")
		if line = strings.Trim(strings.TrimSpace(line), "*`"); line != "" {
			return line
		}
	}
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Trim(strings.TrimSpace(lines[len(lines)-1]), "*`")
}

var answerCueRE = regexp.MustCompile(`(?i)\banswer(?:\s+is)?\s*[:=]|\banswer\s+is\b`)

// lastBoxed returns the content of the last \boxed{...} in s.
func lastBoxed(s string) (string, bool) {
	i := strings.LastIndex(s, `\boxed{`)
	if i < 0 {
		return "", false
	}
	start := i + len(`\boxed{`)
	depth := 1
	for j := start; j < len(s); j++ {
		switch s[j] {
		case '{':
			depth++
		case '}':
			depth--
			if depth == 0 {
				return s[start:j], true
			}
		}
	}
	return "", false
}

// sameFinal reports whether two final answers agree: as numbers within
// tol when the truth is a number (the answer's last number), else as
// normalised text, where the answer may lead up to the truth ("It is
// Paris." ends with "Paris") but not go on past it.
func sameFinal(got, want string, tol float64) bool {
	if w, ok := plainNumber(want); ok {
		g, ok := LastNumber(got)
		return ok && math.Abs(g-w) <= tol
	}
	g, w := NormalizeAnswer(got), NormalizeAnswer(want)
	return w != "" && (g == w || strings.HasSuffix(g, " "+w))
}

// plainNumber reads s as one number with at most a unit or a word beside
// it ("12.7", "12.7 cm", "$5", "40%"): the truth is numeric only then, not
// when a number is part of a word ("BLUE-7", "v2").
func plainNumber(s string) (float64, bool) {
	fields := strings.Fields(s)
	if len(fields) == 0 || len(fields) > 2 || len(numberRE.FindAllString(s, -1)) != 1 {
		return 0, false
	}
	for _, f := range fields {
		f = strings.Trim(f, "$€£%.,;:")
		if loc := numberRE.FindStringIndex(f); loc != nil && loc[0] == 0 && loc[1] == len(f) {
			return LastNumber(f)
		}
	}
	return 0, false
}

// Leaks reports whether a lesson states the item's ground truth: a lesson
// must carry the rule that finds the answer, never the answer, or gains on
// later questions prove only that the answer was copied. A numeric truth
// leaks when its number appears in the lesson; another truth when its
// normalised text appears as whole words. Truths shorter than four
// letters and not numbers ("yes", "B") are too common to check.
func Leaks(lesson, truth string) bool {
	truth = FinalAnswer(truth)
	if v, ok := plainNumber(truth); ok {
		for _, m := range numberRE.FindAllString(lesson, -1) {
			if x, ok := LastNumber(m); ok && math.Abs(x-v) <= 1e-9*max(1, math.Abs(v)) {
				return true
			}
		}
		return false
	}
	t := NormalizeAnswer(truth)
	if len([]rune(t)) < 4 {
		return false
	}
	re, err := regexp.Compile(`(?:^|\W)` + regexp.QuoteMeta(t) + `(?:\W|$)`)
	return err == nil && re.MatchString(NormalizeAnswer(lesson))
}

// clipEnds returns s cut to at most n runes by keeping its start and its
// end, marking the cut with "…": a model's final answer comes last, and
// right and wrong answers usually differ there.
func clipEnds(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	head := n / 3
	tail := n - head
	return string(r[:head]) + " … " + string(r[len(r)-tail:])
}
