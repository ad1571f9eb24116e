// Package learn turns grades into a better library, without training: votes
// on the experiences used in graded answers (retiring the ones voters reject),
// lessons distilled from well-graded or corrected answers through a durable
// queue, and the offline training-free GRPO optimizer behind `dso learn`.
//
// It talks to models only through the small Chat interface and to the
// library through *library.Library; it owns no HTTP surface.
package learn
