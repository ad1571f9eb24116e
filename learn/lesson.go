package learn

import (
	"errors"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Bounds of a distilled lesson (CheckLesson).
const (
	// MinLessonWords: a shorter reply ("Paris.", "Use 2.54.") says a fact
	// or an answer, not something to do.
	MinLessonWords = 4
	// maxLessonRunes: the distillation prompt asks for one to three
	// sentences; a longer reply is an answer or an essay, not a note.
	maxLessonRunes = 600
	// EchoOverlap: a lesson whose words overlap the question's this much
	// (Jaccard index of the two sets of words) restates it.
	EchoOverlap = 0.8
)

// ErrRejectedLesson: a distilled reply is not a lesson to keep. CheckLesson
// returns it inside a *RejectedLessonError, which says why.
var ErrRejectedLesson = errors.New("learn: not a lesson")

// RejectReason says why a distilled reply was not kept, from a closed
// vocabulary (fit for a log field or a metric label).
type RejectReason string

// Why a reply is not a lesson.
const (
	RejectEmpty    RejectReason = "empty"     // nothing left without quotes, labels and markdown
	RejectTooLong  RejectReason = "too_long"  // over maxLessonRunes
	RejectEcho     RejectReason = "echo"      // restates the question it was distilled from
	RejectQuestion RejectReason = "question"  // asks instead of saying what to do
	RejectTooShort RejectReason = "too_short" // fewer than MinLessonWords words
)

// RejectedLessonError is CheckLesson's verdict on a reply that is not a
// lesson; errors.Is(err, ErrRejectedLesson) holds for it.
type RejectedLessonError struct {
	Reason RejectReason
}

func (e *RejectedLessonError) Error() string {
	return ErrRejectedLesson.Error() + ": " + string(e.Reason)
}

func (e *RejectedLessonError) Unwrap() error { return ErrRejectedLesson }

// CheckLesson says whether lesson, a model's reply as CleanLesson returns
// it, is a self-contained instruction worth keeping for question, the
// question it was distilled from. It is rejected (a *RejectedLessonError)
// when, in this order, it is:
//   - empty;
//   - longer than a note (600 characters);
//   - an echo of the question: the same words, one run of the question's
//     words, or a set of words overlapping the question's by EchoOverlap
//     or more (Jaccard index);
//   - a question (it ends with "?");
//   - shorter than MinLessonWords words.
func CheckLesson(lesson, question string) error {
	words := lessonWords(lesson)
	switch {
	case len(words) == 0:
		return &RejectedLessonError{RejectEmpty}
	case utf8.RuneCountInString(lesson) > maxLessonRunes:
		return &RejectedLessonError{RejectTooLong}
	case echoes(words, lessonWords(question)):
		return &RejectedLessonError{RejectEcho}
	case strings.HasSuffix(strings.TrimRight(lesson, `"'”’)]* `), "?"):
		return &RejectedLessonError{RejectQuestion}
	case len(words) < MinLessonWords:
		return &RejectedLessonError{RejectTooShort}
	}
	return nil
}

// echoes reports whether a lesson's words restate a question's: the
// lesson is a run of the question's words (the whole question among
// them), or the two sets of words overlap by EchoOverlap or more.
func echoes(lesson, question []string) bool {
	if len(question) == 0 {
		return false
	}
	if strings.Contains(" "+strings.Join(question, " ")+" ", " "+strings.Join(lesson, " ")+" ") {
		return true
	}
	set := func(ws []string) map[string]bool {
		m := make(map[string]bool, len(ws))
		for _, w := range ws {
			m[w] = true
		}
		return m
	}
	l, q := set(lesson), set(question)
	both := 0
	for w := range l {
		if q[w] {
			both++
		}
	}
	return float64(both) >= EchoOverlap*float64(len(l)+len(q)-both)
}

// lessonWords is s lower-cased and cut into runs of letters and digits.
func lessonWords(s string) []string {
	return strings.FieldsFunc(strings.ToLower(s), func(r rune) bool {
		return !unicode.IsLetter(r) && !unicode.IsDigit(r)
	})
}

// lessonMark matches a markdown heading, quote or list mark.
var lessonMark = regexp.MustCompile(`^(?:#{1,6}|>|[-*•+]|\d{1,2}[.)])\s+`)

// lessonLabel matches a label a model puts before its lesson.
var lessonLabel = regexp.MustCompile(`(?i)^(?:the\s+)?(?:key\s+)?(?:lesson(?:\s+learned)?|takeaway|rule|tip)\s*[:：\-–—]\s*`)

// CleanLesson trims a model's reply to the lesson it holds: without a code
// fence, bold marks, a heading, quote or list mark, surrounding
// quotes, or a "Lesson:" label; one paragraph. CheckLesson then judges it.
func CleanLesson(s string) string {
	s = strings.ReplaceAll(s, "**", "")
	for {
		before := s
		s = strings.TrimSpace(s)
		if strings.HasPrefix(s, "```") {
			// A fenced block: drop the fence and its info string.
			s = strings.TrimSuffix(strings.TrimSpace(s), "```")
			if i := strings.IndexByte(s, '\n'); i >= 0 {
				s = s[i+1:]
			} else {
				s = strings.TrimLeft(s, "`")
			}
		}
		s = lessonMark.ReplaceAllString(s, "")
		s = lessonLabel.ReplaceAllString(s, "")
		s = strings.Trim(s, "\"'`“”‘’* \t\r\n")
		if s == before {
			break
		}
	}
	return strings.Join(strings.Fields(s), " ")
}
