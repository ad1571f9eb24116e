// Package learn turns grades into a better library, without training: votes
// on the experiences used in graded answers (retiring the ones voters reject),
// lessons distilled from well-graded or corrected answers through a durable
// queue, and the offline training-free GRPO optimizer behind `dso learn`.
//
// The optimizer follows the published method (arXiv 2510.08191): a group
// step that sees the domain's library and proposes at most two changes,
// and a batch merge that folds similar additions. Lessons state rules,
// never answers (Leaks), and are keyed by the questions they came from.
// Grading reads the final answer (FinalAnswer, the Final grader).
//
// It talks to models only through the small Chat interface and to the
// library through *library.Library; it owns no HTTP surface.
package learn
