package learn

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/dso-proxy/dso/library"
	"github.com/dso-proxy/dso/store"
)

// DistillerVoter is the voter of the vote a lesson gets when feedback
// distils it again (a near-copy): "distiller:" and the voter whose grade
// was distilled. Voters named by the proxy always carry a "key:", "addr:"
// or "name:" prefix, so no client can speak as the distiller.
//
// Reinforcement is a vote, not a raise of the confidence, so that it lasts:
// the confidence is recomputed from the tally after every grade (Score),
// and a raise would be overwritten by the next one. Being one voter per
// grader, it is bounded as every vote is: one grader's many answers that
// distil the same lesson reinforce it once, and enough down-votes still
// retire it.
func DistillerVoter(voter string) string { return "distiller:" + voter }

// nearCandidates is how many lessons the near-copy check compares by text.
const nearCandidates = 5

// distill turns one graded answer into a lesson in the library, keyed by
// the question it answered (store.Experience.Key), or reinforces the
// lesson it nearly copies. A reply that CheckLesson rejects is logged with
// its reason and not stored: the feedback is skipped.
func (l *Learner) distill(ctx context.Context, fb store.Feedback) (store.FeedbackState, error) {
	if l.cfg.Chat == nil || (fb.Grade < l.cfg.Threshold && strings.TrimSpace(fb.Correction) == "") {
		return store.FeedbackSkipped, nil
	}
	tr, err := l.st.GetTrace(ctx, fb.TraceID)
	if errors.Is(err, store.ErrNotFound) {
		return store.FeedbackSkipped, nil // pruned since
	}
	if err != nil {
		return "", err
	}
	reply, _, err := l.cfg.Chat.Chat(ctx, ChatRequest{Model: tr.Model, Messages: DistillPrompt(tr, fb), Temperature: ptr(0.2), MaxTokens: 200})
	if err != nil {
		return "", fmt.Errorf("asking %s for a lesson: %w", tr.Model, err)
	}
	lesson := CleanLesson(reply)
	if err := CheckLesson(lesson, tr.Query); err != nil {
		// Not a lesson (an echo of the question, a question back, a
		// fragment): nothing to learn, and asking again would not help.
		var rej *RejectedLessonError
		errors.As(err, &rej)
		l.cfg.Logger.InfoContext(ctx, "distilled lesson rejected", "trace_id", tr.ID, "reason", string(rej.Reason))
		return store.FeedbackSkipped, nil
	}
	// The lesson has the domain of the question it came from: the trace's
	// (that of the request, or none).
	e := store.Experience{Text: lesson, Key: clipRunes(tr.Query, maxKeyRunes), Domain: tr.Domain, SourceModel: tr.Model, TraceID: tr.ID}
	near, err := l.nearCopy(ctx, e)
	if err != nil {
		return "", err
	}
	if near != "" {
		return store.FeedbackDone, l.reinforce(ctx, near, tr, fb)
	}
	e.Confidence = 0.5 + 0.3*fb.Grade
	if fb.Correction != "" {
		e.Confidence = 0.7
	}
	if _, _, err := l.cfg.Library.Add(ctx, e); err != nil {
		return "", err
	}
	return store.FeedbackDone, nil
}

// maxKeyRunes caps the question a distilled lesson is keyed by: its start
// says what kind of question it is, and the store caps a key's bytes.
const maxKeyRunes = 2000

// nearCopy returns the id of the lesson in e's domain whose text nearly
// copies e's, or "". Stored lessons are embedded with their keys, so the
// same lesson distilled from another question scores low against them as
// a code; candidates are found by both e's keyed text and its text alone,
// and judged by the cosine of the texts' own embeddings.
func (l *Learner) nearCopy(ctx context.Context, e store.Experience) (string, error) {
	lib := l.cfg.Library
	probes := []string{e.Text}
	if e.Key != "" {
		probes = append(probes, library.KeyedText(e))
	}
	vs, err := lib.Vectors(ctx, probes)
	if err != nil {
		return "", fmt.Errorf("embedding the lesson: %w", err)
	}
	var cands []library.Result
	for _, v := range vs {
		found, err := lib.Search(ctx, library.Query{Vector: v, K: nearCandidates, Domain: e.Domain, MinRelevance: &library.NoGate})
		if errors.Is(err, library.ErrEmpty) {
			return "", nil
		}
		if err != nil {
			return "", err
		}
		for _, f := range found {
			if !slices.ContainsFunc(cands, func(c library.Result) bool { return c.ID == f.ID }) {
				cands = append(cands, f)
			}
		}
	}
	if len(cands) == 0 {
		return "", nil
	}
	texts := make([]string, len(cands))
	for i, c := range cands {
		texts[i] = c.Text
	}
	cvs, err := lib.Vectors(ctx, texts)
	if err != nil {
		return "", fmt.Errorf("embedding the near lessons: %w", err)
	}
	best, bestScore := "", l.cfg.DedupeScore
	for i, cv := range cvs {
		if s := cosine(vs[0], cv); s >= bestScore {
			best, bestScore = cands[i].ID, s
		}
	}
	return best, nil
}

// reinforce counts a lesson distilled again as the distiller's up-vote
// (DistillerVoter) and rescores it. Where the lesson was injected into the
// graded answer, the grade has already voted on it, and the distiller does
// not vote again on the same evidence.
func (l *Learner) reinforce(ctx context.Context, id string, tr store.Trace, fb store.Feedback) error {
	if slices.Contains(tr.ExperienceIDs, id) {
		return nil
	}
	err := l.st.PutVote(ctx, store.Vote{ExperienceID: id, Voter: DistillerVoter(fb.Voter), TraceID: tr.ID, Up: true})
	if errors.Is(err, store.ErrNotFound) {
		return nil // deleted since the search
	}
	if err != nil {
		return fmt.Errorf("reinforcing %s: %w", id, err)
	}
	if err := l.rescore(ctx, id); err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	return nil
}

func cosine(a, b []float32) float32 {
	var ab, aa, bb float64
	for i := range min(len(a), len(b)) {
		ab += float64(a[i]) * float64(b[i])
		aa += float64(a[i]) * float64(a[i])
		bb += float64(b[i]) * float64(b[i])
	}
	if aa == 0 || bb == 0 {
		return 0
	}
	return float32(ab / math.Sqrt(aa*bb))
}
