package learn

import (
	"context"
	"fmt"
	"strings"
	"sync"
)

// SummaryPrompt is the system message of a per-rollout summary request:
// as in Training-Free GRPO (arXiv 2510.08191), each answer of a group is
// summarised in its own call, with its grade, the grader's critique where
// it gives one (Critic) and the reference answer, so
// the comparison sees every answer whole, however long, and not clipped.
const SummaryPrompt = "You summarise one answer a model gave, for someone who will compare it with other answers to the " +
	"same question. You are given the question, its reference answer, the answer, the grade it got (0 wrong, 1 right) " +
	"and sometimes the grader's critique. " +
	"In at most five sentences, state the steps the answer took and its final answer; then critique it: where it went " +
	"wrong and why, or what made it right, and which of the lessons it was shown, if any, it used. Reply with the summary only."

// DefaultSummarizeOver is Config.SummarizeOver's default: the length past
// which the comparison would see an answer only clipped.
const DefaultSummarizeOver = maxShownRunes

// maxSummarizedRunes caps the answer a summary call is shown; past it the
// answer keeps its start and end (clipEnds).
const maxSummarizedRunes = 16000

// summarizing reports whether a group's answers are summarised before the
// comparison: when the longest is over Config.SummarizeOver runes.
func (r *run) summarizing(answers []string) bool {
	over := r.o.cfg.SummarizeOver
	if over < 0 {
		return false
	}
	for _, a := range answers {
		if len([]rune(a)) > over {
			return true
		}
	}
	return false
}

// rollouts returns what the comparison is shown of each answer: the
// answers themselves, or, for a group of long answers, their summaries,
// each made in its own call (concurrently), whose cost is added to tokens.
func (r *run) rollouts(ctx context.Context, it Item, answers []string, grades []float64, critiques []string, tokens *Tokens) ([]string, bool, error) {
	if !r.summarizing(answers) {
		return answers, false, nil
	}
	cfg := r.o.cfg
	out := make([]string, len(answers))
	usages := make([]Usage, len(answers))
	errs := make([]error, len(answers))
	var wg sync.WaitGroup
	for k := range answers {
		wg.Go(func() {
			out[k], usages[k], errs[k] = cfg.Chat.Chat(ctx, summaryRequest(cfg.Model, it, answers[k], grades[k], critiques[k]))
		})
	}
	wg.Wait()
	for k := range answers {
		tokens.call(usages[k])
		if errs[k] != nil {
			return nil, false, fmt.Errorf("summarising answer %d: %w", k+1, errs[k])
		}
		out[k] = strings.TrimSpace(out[k])
	}
	return out, true, nil
}

func summaryRequest(model string, it Item, answer string, grade float64, critique string) ChatRequest {
	zero := 0.0
	var b strings.Builder
	fmt.Fprintf(&b, "Question:\n%s\n\nReference answer:\n%s\n\nGrade: %.2f\n", clip(it.Query, maxShownRunes), clip(it.GroundTruth, maxShownRunes), grade)
	if critique != "" {
		fmt.Fprintf(&b, "\nGrader's critique:\n%s\n", clip(critique, maxShownRunes))
	}
	fmt.Fprintf(&b, "\nAnswer:\n%s", clipEnds(answer, maxSummarizedRunes))
	return ChatRequest{Model: model, Temperature: &zero, Messages: []Message{
		{Role: "system", Content: SummaryPrompt},
		{Role: "user", Content: b.String()},
	}}
}
