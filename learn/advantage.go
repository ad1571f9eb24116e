package learn

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/dso-proxy/dso/inject"
	"github.com/dso-proxy/dso/library"
)

// Limits of the group step, as in Training-Free GRPO (arXiv 2510.08191):
// one group changes the library by at most two operations, and a lesson is
// at most 32 words, so the library stays a short list of rules.
const (
	// MaxGroupOps caps the add, modify and delete operations taken from
	// one group's reply (keeps are free); the rest are rejected.
	MaxGroupOps = 2
	// MaxLessonWords caps a lesson's words; longer ones are rejected.
	MaxLessonWords = 32
	// DefaultGroupLessons is Config.GroupLessons' default.
	DefaultGroupLessons = 50
)

// AdvantagePrompt is the system message of the group-advantage request.
// Its reply is parsed by ParseAdvantage.
const AdvantagePrompt = "You improve a library of short lessons that is shown to a model before it answers questions. " +
	"Nothing is trained: only the lessons change. You are given a question, its reference answer, the library's " +
	"lessons for this domain (labelled E1, E2, ...; those marked * were shown to the model) and a group of the " +
	"model's answers with their grades (0 wrong, 1 right). First summarise each answer in one short sentence. Then " +
	"state what separated the better answers from the worse ones. Then turn that into at most two operations on the " +
	"library: \"add\" a general, self-contained rule that would help on similar questions (the method, never this " +
	"question's answer) when no lesson says it yet; \"modify\" a lesson (id = its label) to a better text; \"delete\" " +
	"a lesson that misleads; \"keep\" a lesson that helped. Lessons are at most 32 words. " +
	"Reply with one JSON object and nothing else:\n" +
	`{"summaries": ["<one per answer>"], "advantage": "<what separated better from worse>", ` +
	`"operations": [{"op": "add", "text": "<lesson>"}, {"op": "modify", "id": "E1", "text": "<lesson>"}, ` +
	`{"op": "delete", "id": "E2"}, {"op": "keep", "id": "E3"}]}`

// groupLessons lists what the group step sees: the lessons the model was
// shown, then the rest of the domain's library, nearest to the question
// first, up to Config.GroupLessons in all (the whole library when it is
// small). Seeing the library, not only what was injected, the step can
// keep or mend a lesson that exists instead of adding a paraphrase.
func (r *run) groupLessons(ctx context.Context, it Item, shown []library.Result) ([]library.Result, error) {
	cfg := r.o.cfg
	c, err := cfg.Library.Vector(ctx, it.Query)
	if err != nil {
		return nil, fmt.Errorf("embedding the query: %w", err)
	}
	found, err := cfg.Library.Search(ctx, library.Query{Vector: c, K: cfg.GroupLessons, Domain: r.domain(it), MinRelevance: &library.NoGate})
	if errors.Is(err, library.ErrEmpty) {
		return shown, nil
	}
	if err != nil {
		return nil, err
	}
	listed := append([]library.Result(nil), shown...)
	in := make(map[string]bool, len(shown))
	for _, s := range shown {
		in[s.ID] = true
	}
	for _, f := range found {
		if len(listed) >= max(cfg.GroupLessons, len(shown)) {
			break
		}
		if !in[f.ID] {
			listed = append(listed, f)
		}
	}
	return listed, nil
}

// advantageRequest asks for the group advantage; the first nShown of
// listed were injected into the answers. Each of rollouts is an answer, or
// its summary when summarized.
func advantageRequest(model string, it Item, listed []library.Result, nShown int, rollouts []string, summarized bool, grades []float64) ChatRequest {
	var b strings.Builder
	fmt.Fprintf(&b, "Question:\n%s\n\nReference answer:\n%s\n\nLessons in the library:\n", clip(it.Query, maxShownRunes), clip(it.GroundTruth, maxShownRunes))
	if len(listed) == 0 {
		b.WriteString("(none)\n")
	}
	for i, s := range listed {
		mark := ""
		if i < nShown {
			mark = "*"
		}
		fmt.Fprintf(&b, "[E%d] %s%s\n", i+1, inject.Sanitize(s.Text, MaxLessonRunes), mark)
	}
	tag := "answer"
	if summarized {
		tag = "summary"
		b.WriteString("\nAnswers, each summarised with its grade:\n")
	} else {
		b.WriteString("\nAnswers:\n")
	}
	for i, a := range rollouts {
		fmt.Fprintf(&b, "<%s n=%d grade=%.2f>\n%s\n</%s>\n", tag, i+1, grades[i], clipEnds(a, maxShownRunes), tag)
	}
	zero := 0.0
	return ChatRequest{Model: model, Temperature: &zero, Messages: []Message{
		{Role: "system", Content: AdvantagePrompt},
		{Role: "user", Content: b.String()},
	}}
}
