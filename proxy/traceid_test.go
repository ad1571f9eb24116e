package proxy

import (
	"regexp"
	"testing"
	"time"
)

// Trace ids a node makes sort in the order they were made (a store's index
// of them grows at its end), and stay distinct and unguessable: 64 random
// bits after the time.
func TestTraceIDsSortByTime(t *testing.T) {
	form := regexp.MustCompile(`^tr_[0-9a-f]{32}$`)
	seen := map[string]bool{}
	prev := ""
	for range 1000 {
		id := newTraceID()
		if !form.MatchString(id) {
			t.Fatalf("trace id %q; want tr_ and 32 hex digits", id)
		}
		if seen[id] {
			t.Fatalf("trace id %q made twice", id)
		}
		seen[id] = true
		if id[:19] < prev[:min(19, len(prev))] {
			t.Fatalf("trace id %q made after %q sorts before it", id, prev)
		}
		prev = id
	}
}

// A trace id tells when it was made; ids of another shape tell nothing.
func TestTraceTime(t *testing.T) {
	before := time.Now()
	got, ok := traceTime(newTraceID())
	if !ok || got.Before(before) || got.After(time.Now()) {
		t.Errorf("traceTime of a fresh id: %v, %v; want a time within its making", got, ok)
	}
	for _, id := range []string{"", "tr_", "tr_zz", "xx_" + newTraceID()[3:], newTraceID() + "0"} {
		if _, ok := traceTime(id); ok {
			t.Errorf("traceTime(%q) ok; want false", id)
		}
	}
}
