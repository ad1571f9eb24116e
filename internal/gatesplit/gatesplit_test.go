package gatesplit

import (
	"slices"
	"testing"
)

func TestNew(t *testing.T) {
	ps := []Pair{
		{"A man plays a guitar.", "A man is playing a guitar.", 4.8}, // asked, stored: a positive
		{"A dog runs.", "A dog is running.", 4.6},                    // asked, not stored: a negative
		{"A dog is running!", "The dog sprints.", 4.2},               // the negative's group again (equal once normalised)
		{"A man is playing a guitar", "A man strums a guitar.", 5},   // the positive's group again
		{"A cat sleeps.", "A cat is sleeping.", 4.0},                 // a positive
		{"The dog sprints.", "A horse gallops.", 1.0},                // a sentence of the negative's group: not stored
		{"A woman sings.", "A man is playing guitar.", 2.0},          // stored as the rest of the library
		{"A cat is sleeping.", "A kitten naps.", 3.0},                // the positive's question: not stored
		{"A plane takes off.", "A plane is taking off.", 3.9},        // below a paraphrase: the rest
	}
	s := New(ps)
	if want := []string{"A man is playing a guitar.", "A cat is sleeping."}; !slices.Equal(s.Pos, want) {
		t.Errorf("positives %q; want %q", s.Pos, want)
	}
	if want := []string{"A dog is running."}; !slices.Equal(s.Neg, want) {
		t.Errorf("negatives %q; want %q", s.Neg, want)
	}
	if s.Answer["A man is playing a guitar."] != "A man plays a guitar." || s.Answer["A cat is sleeping."] != "A cat sleeps." {
		t.Errorf("answers %q", s.Answer)
	}
	want := []string{"A man plays a guitar.", "A cat sleeps.", "A horse gallops.", "A woman sings.", "A man is playing guitar.",
		"A kitten naps.", "A plane takes off.", "A plane is taking off."}
	if !slices.Equal(s.Library, want) {
		t.Errorf("library %q;\nwant %q", s.Library, want)
	}
	// Nothing of a negative's group is stored, and a positive's answer is
	// the one stored text of its group.
	for _, txt := range s.Library {
		switch norm(txt) {
		case "a dog runs", "a dog is running", "the dog sprints":
			t.Errorf("%q of the negative's group is stored", txt)
		case "a man is playing a guitar", "a man strums a guitar":
			t.Errorf("%q of a positive's group is stored beside its answer", txt)
		}
	}
}

func TestNorm(t *testing.T) {
	for in, want := range map[string]string{
		"A dog is running!":     "a dog is running",
		"  A   dog, is running": "a dog is running",
		"":                      "",
		"‘Glee’ star":           "glee star",
	} {
		if got := norm(in); got != want {
			t.Errorf("norm(%q) = %q; want %q", in, got, want)
		}
	}
}
