package learn

import (
	"context"
	"errors"
	"math"
	"strconv"
	"strings"
	"testing"
)

func TestGraders(t *testing.T) {
	tests := []struct {
		name   string
		g      Grader
		truth  string
		answer string
		want   float64
	}{
		{"exact same", Exact{}, "ALPHA-731", "ALPHA-731", 1},
		{"exact case and space", Exact{}, "Paris  France", "  paris\tfrance. ", 1},
		{"exact differs", Exact{}, "ALPHA-731", "The code is ALPHA-731", 0},
		{"exact empty answer", Exact{}, "x", "", 0},
		{"contains", Contains{}, "ALPHA-731", "The code is alpha-731.", 1},
		{"contains missing", Contains{}, "ALPHA-731", "The code is ALPHA-000.", 0},
		{"contains empty truth", Contains{}, "", "anything", 0},
		{"numeric last number", Numeric{Tolerance: 1e-6}, "42", "6 times 7 is 42.", 1},
		{"numeric wrong", Numeric{Tolerance: 1e-6}, "42", "42 is wrong, it is 41", 0},
		{"numeric tolerance", Numeric{Tolerance: 0.001}, "3.14159", "about 3.14", 0},
		{"numeric within tolerance", Numeric{Tolerance: 0.01}, "3.14159", "about 3.142", 1},
		{"numeric thousands", Numeric{}, "1234567", "It is 1,234,567", 1},
		{"numeric truth with words", Numeric{}, "The answer is 12", "12", 1},
		{"numeric no number", Numeric{}, "12", "twelve", 0},
		{"numeric negative", Numeric{}, "-5", "x = -5", 1},
		{"regex matches", &Regex{}, `(?i)^alpha-7\d\d$`, "alpha-731", 1},
		{"regex no match", &Regex{}, `^ALPHA-731$`, "code ALPHA-731", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, u, err := tt.g.Grade(context.Background(), "q", tt.truth, tt.answer)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want || u != (Usage{}) {
				t.Errorf("Grade(%q, %q) = %v, %+v; want %v", tt.truth, tt.answer, got, u, tt.want)
			}
		})
	}
}

func TestGraderErrors(t *testing.T) {
	if _, _, err := (&Regex{}).Grade(context.Background(), "q", "(", "x"); err == nil {
		t.Error("a bad regex graded")
	}
	if _, _, err := (Numeric{}).Grade(context.Background(), "q", "none", "1"); err == nil {
		t.Error("a truth without a number graded")
	}
}

func TestLastNumber(t *testing.T) {
	tests := []struct {
		in   string
		want float64
		ok   bool
	}{
		{"42", 42, true},
		{"first 1 then 2", 2, true},
		{"1,234.5 dollars", 1234.5, true},
		{"1234,567", 567, true},
		{"pages 3-5", 5, true},
		{"minus -3", -3, true},
		{"+7", 7, true},
		{".5 of it", 0.5, true},
		{"2e3", 2000, true},
		{"1e999 is too big", 0, false},
		{"ALPHA-731", 731, true},
		{"no numbers", 0, false},
		{"", 0, false},
	}
	for _, tt := range tests {
		got, ok := LastNumber(tt.in)
		if got != tt.want || ok != tt.ok {
			t.Errorf("LastNumber(%q) = %v, %v; want %v, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}

func FuzzLastNumber(f *testing.F) {
	for _, s := range []string{"42", "1,234.5", "pages 3-5", "-.5e-3", "x1e999", "ALPHA-731", "", "٣"} {
		f.Add(s, int64(7))
	}
	f.Fuzz(func(t *testing.T, s string, n int64) {
		if v, ok := LastNumber(s); ok && (math.IsNaN(v) || math.IsInf(v, 0)) {
			t.Fatalf("LastNumber(%q) = %v", s, v)
		}
		// A number written last, after a space, is the one found.
		n %= 1 << 50
		in := s + " " + strconv.FormatInt(n, 10)
		if v, ok := LastNumber(in); !ok || v != float64(n) {
			t.Fatalf("LastNumber(%q) = %v, %v; want %d", in, v, ok, n)
		}
	})
}

func TestParseJudgeReply(t *testing.T) {
	tests := []struct {
		in   string
		want float64
		ok   bool
	}{
		{"GRADE: 1.0", 1, true},
		{"GRADE: 0", 0, true},
		{"The answer names the right city.\nGRADE: 0.75\n", 0.75, true},
		{"grade:.5", 0.5, true},
		{"**GRADE: 0.9**", 0.9, true},
		{"GRADE: 1.", 1, true},
		{"GRADE: 1.5", 0, false},
		{"GRADE: -0.1", 0, false},
		{"GRADE: 0.8 because", 0, false},
		{"GRADE: 0.8\nmore text", 0, false},
		{"GRADE: NaN", 0, false},
		{"GRADE: 1e0", 0, false},
		{"SCORE: 1", 0, false},
		{"", 0, false},
	}
	for _, tt := range tests {
		got, err := ParseJudgeReply(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParseJudgeReply(%q) = %v, %v; want %v, ok %v", tt.in, got, err, tt.want, tt.ok)
		}
		if err != nil && !errors.Is(err, ErrBadJudgeReply) {
			t.Errorf("ParseJudgeReply(%q): %v does not wrap ErrBadJudgeReply", tt.in, err)
		}
	}
}

func FuzzParseJudgeReply(f *testing.F) {
	for _, s := range []string{"GRADE: 1.0", "x\nGRADE: 0.25", "GRADE: 2", "grade:.5", "**GRADE: 0**", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		g, err := ParseJudgeReply(s)
		if err != nil {
			if !errors.Is(err, ErrBadJudgeReply) || g != 0 {
				t.Fatalf("ParseJudgeReply(%q) = %v, %v", s, g, err)
			}
			return
		}
		if !(g >= 0 && g <= 1) {
			t.Fatalf("ParseJudgeReply(%q) = %v out of [0,1]", s, g)
		}
		// The grade line is the last line: anything after it is refused.
		if _, err := ParseJudgeReply(s + "\nthen more"); err == nil {
			t.Fatalf("ParseJudgeReply accepted text after the grade in %q", s)
		}
	})
}

// chatFunc adapts a function to Chatter.
type chatFunc func(ctx context.Context, req ChatRequest) (string, Usage, error)

func (f chatFunc) Chat(ctx context.Context, req ChatRequest) (string, Usage, error) {
	return f(ctx, req)
}

func TestJudge(t *testing.T) {
	var seen ChatRequest
	reply := "It matches.\nGRADE: 0.8"
	chat := chatFunc(func(_ context.Context, req ChatRequest) (string, Usage, error) {
		seen = req
		return reply, Usage{PromptTokens: 10, CompletionTokens: 3}, nil
	})
	g, err := ParseGrader("llm:judge-1", chat, "m")
	if err != nil {
		t.Fatal(err)
	}
	got, u, err := g.Grade(context.Background(), "What is 6x7?", "42", "It is 42.")
	if err != nil || got != 0.8 || u.PromptTokens != 10 {
		t.Fatalf("Grade = %v, %+v, %v", got, u, err)
	}
	if seen.Model != "judge-1" || *seen.Temperature != 0 || len(seen.Messages) != 2 ||
		!strings.Contains(seen.Messages[1].Content, "Reference answer:\n42") {
		t.Errorf("judge request %+v", seen)
	}
	reply = "I think it is fine."
	if _, u, err := g.Grade(context.Background(), "q", "t", "a"); !errors.Is(err, ErrBadJudgeReply) || u.CompletionTokens != 3 {
		t.Errorf("bad reply: %v, %+v", err, u)
	}
}

func TestParseGrader(t *testing.T) {
	chat := chatFunc(func(context.Context, ChatRequest) (string, Usage, error) { return "", Usage{}, nil })
	tests := []struct {
		spec string
		want string // %T-ish description, "" for an error
	}{
		{"", "exact"},
		{"exact", "exact"},
		{"contains", "contains"},
		{"regex", "regex"},
		{"numeric", "numeric 1e-06"},
		{"numeric:0.5", "numeric 0.5"},
		{"llm", "llm m"},
		{"llm:judge", "llm judge"},
		{"numeric:x", ""},
		{"numeric:-1", ""},
		{"exact:1", ""},
		{"llm:", ""},
		{"fuzzy", ""},
	}
	for _, tt := range tests {
		g, err := ParseGrader(tt.spec, chat, "m")
		var got string
		switch g := g.(type) {
		case Exact:
			got = "exact"
		case Contains:
			got = "contains"
		case *Regex:
			got = "regex"
		case Numeric:
			got = "numeric " + strconv.FormatFloat(g.Tolerance, 'g', -1, 64)
		case Judge:
			got = "llm " + g.Model
		}
		if got != tt.want || (err == nil) != (tt.want != "") {
			t.Errorf("ParseGrader(%q) = %q, %v; want %q", tt.spec, got, err, tt.want)
		}
	}
}
