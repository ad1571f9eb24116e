package learn

import (
	"errors"
	"strings"
	"testing"
)

// lessonCases are replies models gave (or give) to DistillPrompt, with the
// question they were distilled from.
var lessonCases = []struct {
	name, question, reply string
	want                  string       // CleanLesson's text
	reason                RejectReason // "" keeps it
}{
	{
		name:     "labelled",
		question: "How many centimetres long is a 7 inch pencil?",
		reply:    "Lesson: Multiply by 2.54 to turn an imperial length in inches into centimetres.",
		want:     "Multiply by 2.54 to turn an imperial length in inches into centimetres.",
	},
	{
		name:     "bold label, quoted",
		question: "How many centimetres long is a 7 inch pencil?",
		reply:    "**Lesson:** \"Multiply by 2.54 to turn inches into centimetres.\"",
		want:     "Multiply by 2.54 to turn inches into centimetres.",
	},
	{
		name:     "fenced, two sentences over lines",
		question: "What is 100 degrees Fahrenheit in Celsius?",
		reply:    "```text\nSubtract 32 from a Fahrenheit temperature,\nthen multiply by 5/9 to get Celsius.\n```",
		want:     "Subtract 32 from a Fahrenheit temperature, then multiply by 5/9 to get Celsius.",
	},
	{
		name:     "bullet and key-lesson label",
		question: "Which port does the Zorblax service listen on?",
		reply:    "- Key lesson: The Zorblax service listens on port 7431, not the default 8080.",
		want:     "The Zorblax service listens on port 7431, not the default 8080.",
	},
	{
		name:     "a fact that shares the question's words",
		question: "What is the capital city of Atlantis?",
		reply:    "The capital city of Atlantis is Poseidonia.",
		want:     "The capital city of Atlantis is Poseidonia.",
	},
	{
		// Issue 26: the model answered the distillation prompt with the
		// question itself, and it became an active lesson.
		name:     "echo",
		question: "How many centimetres long is a 7 inch pencil?",
		reply:    "How many centimetres long is a 7 inch pencil?",
		want:     "How many centimetres long is a 7 inch pencil?",
		reason:   RejectEcho,
	},
	{
		name:     "echo, labelled and reworded a little",
		question: "How many centimetres long is a 7 inch pencil?",
		reply:    "Lesson: how many centimetres long is a 7-inch pencil",
		want:     "how many centimetres long is a 7-inch pencil",
		reason:   RejectEcho,
	},
	{
		name:     "echo with the answer",
		question: "What is the capital city of Atlantis?",
		reply:    "What is the capital city of Atlantis? Poseidonia.",
		want:     "What is the capital city of Atlantis? Poseidonia.",
		reason:   RejectEcho,
	},
	{
		name:     "a piece of the question",
		question: "Answer in one word. Which planet has the shortest day in the solar system?",
		reply:    "Which planet has the shortest day in the solar system",
		want:     "Which planet has the shortest day in the solar system",
		reason:   RejectEcho,
	},
	{
		name:     "a question back",
		question: "Convert 12 inches to centimetres.",
		reply:    "Did you multiply the inches by 2.54 before rounding?",
		want:     "Did you multiply the inches by 2.54 before rounding?",
		reason:   RejectQuestion,
	},
	{
		name:     "a quoted question",
		question: "Convert 12 inches to centimetres.",
		reply:    "\"Should the inches be multiplied by 2.54?\"",
		want:     "Should the inches be multiplied by 2.54?",
		reason:   RejectQuestion,
	},
	{
		name:     "the answer alone",
		question: "What is the capital city of Atlantis?",
		reply:    "Poseidonia.",
		want:     "Poseidonia.",
		reason:   RejectTooShort,
	},
	{
		name:     "three words",
		question: "Convert 12 inches to centimetres.",
		reply:    "Lesson: use 2.54",
		want:     "use 2.54",
		reason:   RejectTooShort,
	},
	{
		name:     "empty",
		question: "Convert 12 inches to centimetres.",
		reply:    "  \n",
		reason:   RejectEmpty,
	},
	{
		name:     "label and markdown only",
		question: "Convert 12 inches to centimetres.",
		reply:    "**Lesson:** \"\"",
		reason:   RejectEmpty,
	},
	{
		name:     "punctuation only",
		question: "Convert 12 inches to centimetres.",
		reply:    "...",
		want:     "...",
		reason:   RejectEmpty,
	},
	{
		name:     "an essay",
		question: "Convert 12 inches to centimetres.",
		reply:    strings.Repeat("Multiply the length in inches by 2.54 to get centimetres. ", 12),
		want:     strings.TrimSpace(strings.Repeat("Multiply the length in inches by 2.54 to get centimetres. ", 12)),
		reason:   RejectTooLong,
	},
}

func TestCheckLesson(t *testing.T) {
	for _, tt := range lessonCases {
		t.Run(tt.name, func(t *testing.T) {
			got := CleanLesson(tt.reply)
			if got != tt.want {
				t.Errorf("CleanLesson(%q) = %q; want %q", tt.reply, got, tt.want)
			}
			err := CheckLesson(got, tt.question)
			if tt.reason == "" {
				if err != nil {
					t.Fatalf("CheckLesson(%q) = %v; want it kept", got, err)
				}
				return
			}
			var rej *RejectedLessonError
			if !errors.Is(err, ErrRejectedLesson) || !errors.As(err, &rej) || rej.Reason != tt.reason {
				t.Fatalf("CheckLesson(%q) = %v; want rejected as %q", got, err, tt.reason)
			}
		})
	}
}

// CleanLesson is idempotent and never panics; CheckLesson never panics.
func FuzzCleanLesson(f *testing.F) {
	for _, tt := range lessonCases {
		f.Add(tt.reply, tt.question)
	}
	f.Fuzz(func(t *testing.T, reply, question string) {
		once := CleanLesson(reply)
		if twice := CleanLesson(once); twice != once {
			t.Fatalf("CleanLesson(%q) = %q, and again %q", reply, once, twice)
		}
		_ = CheckLesson(once, question)
	})
}
