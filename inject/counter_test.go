package inject

import (
	"strings"
	"sync"
	"testing"
)

func TestEncodingFor(t *testing.T) {
	tests := []struct{ model, want string }{
		{"gpt-4o", O200kBase},
		{"gpt-4o-mini-2024-07-18", O200kBase},
		{"openai/gpt-4.1-nano", O200kBase},
		{"GPT-5", O200kBase},
		{"o1-preview", O200kBase},
		{"o3-mini", O200kBase},
		{"o4-mini", O200kBase},
		{"gpt-oss-20b", O200kBase},
		{"gpt-4", Cl100kBase},
		{"gpt-4-turbo", Cl100kBase},
		{"gpt-3.5-turbo", Cl100kBase},
		{"azure/gpt-35-turbo", Cl100kBase},
		{"text-embedding-3-small", Cl100kBase},
		{"llama3.1:8b", ""},
		{"mistral", ""},
		{"qwen2.5-coder", ""},
		{"", ""},
	}
	for _, tt := range tests {
		if got := EncodingFor(tt.model); got != tt.want {
			t.Errorf("EncodingFor(%q) = %q; want %q", tt.model, got, tt.want)
		}
		_, isHeuristic := CounterFor(tt.model).(Heuristic)
		if isHeuristic != (tt.want == "") {
			t.Errorf("CounterFor(%q) heuristic = %v", tt.model, isHeuristic)
		}
	}
}

func TestBPECounts(t *testing.T) {
	// Reference counts from OpenAI's tiktoken.
	tests := []struct {
		model, text string
		want        int
	}{
		{"gpt-4", "hello world", 2},
		{"gpt-4", "tiktoken is great!", 6},
		{"gpt-4o", "hello world", 2},
		{"gpt-4", "", 0},
		{"gpt-4", "<|endoftext|>", 7}, // special-token text counts as plain text
	}
	for _, tt := range tests {
		if got := CounterFor(tt.model).Count(tt.text); got != tt.want {
			t.Errorf("CounterFor(%q).Count(%q) = %d; want %d", tt.model, tt.text, got, tt.want)
		}
	}
}

// corpus is varied text the heuristic must not undercount.
var corpus = []string{
	"Prefer table-driven tests, and name each case after the behaviour it checks.",
	"When a goroutine reads from a channel that is never closed, it leaks; close the channel in the sender.",
	`func (s *SQLite) Close() error { if s == nil { return nil }; return s.db.Close() }`,
	`{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"temperature":0.2}`,
	"Die Antwort sollte zuerst die Einheiten prüfen, dann die Größenordnung.",
	"Проверьте единицы измерения перед тем, как сравнивать результаты.",
	"在比较结果之前，先检查单位是否一致。",
	"東京の天気は晴れです。傘は不要です。",
	"x := map[string][]int{\"a\": {1, 2, 3}}\n\tfor k, v := range x {\n\t\tfmt.Println(k, v)\n\t}",
	"1234567890 3.14159 2026-11-25T11:02:08Z 0xdeadbeef",
	"🙂🚀 emoji and     many    spaces\n\n\nand newlines",
	"https://example.com/a/b?c=d&e=f#frag",
}

func TestHeuristicOvercounts(t *testing.T) {
	for _, model := range []string{"gpt-4", "gpt-4o"} {
		c := CounterFor(model)
		for _, s := range corpus {
			if h, b := (Heuristic{}).Count(s), c.Count(s); h < b {
				t.Errorf("Heuristic(%q) = %d < %s count %d", s, h, model, b)
			}
		}
	}
}

func TestHeuristic(t *testing.T) {
	tests := []struct {
		in   string
		want int
	}{
		{"", 0},
		{"a", 1},
		{"abc", 2},
		{"ab", 1},
		{"abcde", 2},
		{"abcd", 2},
		{"12", 1},
		{"123", 2},
		{"a1", 2},
		{"日本", 3},
		{"🙂", 3},
		{"a b", 2},
		{"a  b", 3},
		{"a.", 2},
		{"é", 1},
		{"\n\n", 2},
	}
	for _, tt := range tests {
		if got := (Heuristic{}).Count(tt.in); got != tt.want {
			t.Errorf("Heuristic.Count(%q) = %d; want %d", tt.in, got, tt.want)
		}
	}
}

func TestCounterConcurrent(t *testing.T) {
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			c := CounterFor([]string{"gpt-4o", "gpt-4"}[i%2])
			for _, s := range corpus {
				if c.Count(s) <= 0 {
					t.Errorf("Count(%q) <= 0", s)
				}
			}
		})
	}
	wg.Wait()
}

// Counts the BPE counters keep are the counts: the same on a second call,
// for texts kept and for texts too long to keep.
func TestBPECountsKept(t *testing.T) {
	for _, model := range []string{"gpt-4o", "gpt-4"} {
		c := CounterFor(model)
		bc, ok := c.(bpeCounter)
		if !ok {
			t.Fatalf("%s: counter %T", model, c)
		}
		for _, s := range []string{"", "Check the units first.", strings.Repeat("lesson text, ", maxCachedText/8)} {
			want := len(bc.enc.EncodeOrdinary(s))
			if a, b := c.Count(s), c.Count(s); a != want || b != want {
				t.Errorf("%s: %d bytes: counts %d then %d; want %d", model, len(s), a, b, want)
			}
		}
		if _, ok := bc.seen.Get("Check the units first."); !ok {
			t.Errorf("%s: a short text's count was not kept", model)
		}
	}
}

// ReadyCounterFor never waits for a tokenizer: before its tables are
// loaded it counts with the Heuristic (which counts high) and loads them in
// the background; once loaded it counts exactly. Models that are not
// OpenAI's never load them.
func TestReadyCounterFor(t *testing.T) {
	e := &lazyEncoding{name: Cl100kBase}
	if c, ok := e.ready(); ok || c != nil {
		t.Fatalf("ready before loading: %v, %v", c, ok)
	}
	exact := e.get() // waits for the background load started above
	if c, ok := e.ready(); !ok || c != exact {
		t.Fatalf("not ready after loading: %v, %v", c, ok)
	}
	if _, ok := ReadyCounterFor("llama3").(Heuristic); !ok {
		t.Error("a non-OpenAI model does not count with the Heuristic")
	}
	s := "Check the units before comparing two measurements."
	if h, x := (Heuristic{}).Count(s), exact.Count(s); h < x {
		t.Errorf("Heuristic counts %d, below the exact %d: the budget would not hold while loading", h, x)
	}
}
