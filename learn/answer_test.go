package learn

import (
	"context"
	"strings"
	"testing"
)

func TestFinalAnswer(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"Reasoning with 3 and 4.\n\\boxed{7}", "7"},
		{"First \\boxed{1}, then fixed: \\boxed{\\frac{1}{2}}", `\frac{1}{2}`},
		{"Steps: 2+2.\nThe final answer is: 4 apples\nThanks!", "4 apples"},
		{"Answer: Paris", "Paris"},
		{"long reasoning\n\n**42**\n", "42"},
		{"just one line", "just one line"},
	} {
		if got := FinalAnswer(tc.in); got != tc.want {
			t.Errorf("FinalAnswer(%q) = %q; want %q", tc.in, got, tc.want)
		}
	}
}

func TestFinalGrader(t *testing.T) {
	g, err := ParseGrader("final:0.01", nil, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		truth, answer string
		want          float64
	}{
		{"17.78", "7 times 2.54 is\n\\boxed{17.78}", 1},
		{"17.78", "about \\boxed{17.785}", 1},
		{"17.78", "17.78 is wrong; it is \\boxed{17.5}", 0}, // the end decides, not a number on the way
		{"17.78 cm", "The answer is 17.78", 1},
		{"Paris", "Thinking about France...\nAnswer: paris.", 1},
		{"Paris", "Paris? No.\nAnswer: Lyon", 0},
		{"RED-7", "Having checked, it is RED-7.", 1},
		{"RED-7", "RED-7 or BLUE-7", 0},
	} {
		got, _, err := g.Grade(context.Background(), "q", tc.truth, tc.answer)
		if err != nil || got != tc.want {
			t.Errorf("truth %q answer %q: %v, %v; want %v", tc.truth, tc.answer, got, err, tc.want)
		}
	}
	if spec := DefaultGraderSpec([]Item{{GroundTruth: "12.5"}, {GroundTruth: "Paris"}}); spec != "final" {
		t.Errorf("short truths get %q; want final", spec)
	}
	if spec := DefaultGraderSpec([]Item{{GroundTruth: "The treaty was signed because both sides were exhausted by the war"}}); spec != "llm" {
		t.Errorf("free-form truths get %q; want llm", spec)
	}
}

func TestLeaks(t *testing.T) {
	for _, tc := range []struct {
		lesson, truth string
		want          bool
	}{
		{"Multiply inches by 2.54.", "17.78", false},
		{"For this one the result is 17.78 cm.", "17.78", true},
		{"The capital of France is Paris.", "Paris", true},
		{"Look up the capital in an atlas.", "Paris", false},
		{"Answer yes or no after checking.", "yes", false}, // too short to tell
		{"Parisian streets are wide.", "Paris", false},     // not the word
		{"Codes are the name in capitals, then -7.", "BLUE-7", false},
		{"The code of Blue is BLUE-7.", "BLUE-7", true},
	} {
		if got := Leaks(tc.lesson, tc.truth); got != tc.want {
			t.Errorf("Leaks(%q, %q) = %v; want %v", tc.lesson, tc.truth, got, tc.want)
		}
	}
}

// The judge and the advantage prompt see the end of a long answer, where
// the final answer is.
func TestLongAnswersKeepTheirEnd(t *testing.T) {
	long := strings.Repeat("reasoning ", 2000) + "\\boxed{FINAL-42}"
	got := clipEnds(long, maxShownRunes)
	if !strings.HasSuffix(got, "\\boxed{FINAL-42}") || !strings.HasPrefix(got, "reasoning") || len([]rune(got)) > maxShownRunes+3 {
		t.Errorf("clipped to %d runes, ends %q", len([]rune(got)), got[len(got)-20:])
	}
	req := advantageRequest("m", Item{Query: "q", GroundTruth: "42"}, nil, 0, []string{long, "short"}, false, []float64{1, 0})
	if !strings.Contains(req.Messages[1].Content, "FINAL-42") {
		t.Error("the advantage prompt lost the answer's end")
	}
}
