package learn

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/dso-proxy/dso/store"
)

func TestParseAdvantage(t *testing.T) {
	reply, err := os.ReadFile(filepath.Join("testdata", "grpo", "advantage_reply.txt"))
	if err != nil {
		t.Fatal(err)
	}
	a, err := ParseAdvantage(string(reply))
	if err != nil {
		t.Fatal(err)
	}
	want := []Op{
		{Kind: OpModify, ID: "E1", Text: "The secret code of project Alpha is ALPHA-731."},
		{Kind: OpDelete, ID: "E2"},
		{Kind: OpKeep, ID: "E3"},
		{Kind: OpAdd, Text: "Quote a project's code exactly as recorded, letters and digits."},
		{Kind: OpDelete, ID: "E99"},
	}
	if !reflect.DeepEqual(a.Ops, want) || len(a.Rejected) != 2 || len(a.Summaries) != 2 || a.Advantage == "" {
		t.Errorf("ParseAdvantage = %+v", a)
	}

	long := strings.Repeat("x", MaxLessonRunes+1)
	tests := []struct {
		name     string
		in       string
		ops      int
		rejected int
		ok       bool
	}{
		{"bare", `{"operations":[{"op":"add","text":"t"}]}`, 1, 0, true},
		{"after a stray brace", `I think {this} is it: {"operations":[{"op":"keep","id":"E1"}]}`, 1, 0, true},
		{"empty operations", `{"summaries":[],"advantage":"none","operations":[]}`, 0, 0, true},
		{"case and space", `{"operations":[{"op":" ADD ","text":"  t  "}]}`, 1, 0, true},
		{"too long", `{"operations":[{"op":"add","text":"` + long + `"}]}`, 0, 1, true},
		{"unknown field", `{"operations":[{"op":"add","text":"t","why":"x"}]}`, 0, 1, true},
		{"missing id", `{"operations":[{"op":"delete"},{"op":"modify","text":"t"}]}`, 0, 2, true},
		{"missing text", `{"operations":[{"op":"modify","id":"E1"},{"op":"add"}]}`, 0, 2, true},
		{"extra text", `{"operations":[{"op":"delete","id":"E1","text":"t"}]}`, 0, 1, true},
		{"not an object", `{"operations":[1,"add",null]}`, 0, 3, true},
		{"too many", `{"operations":[` + strings.Repeat(`{"op":"keep","id":"E1"},`, MaxOps) + `{"op":"keep","id":"E1"}]}`, MaxOps, 1, true},
		{"no operations key", `{"summaries":["a"]}`, 0, 0, false},
		{"operations not an array", `{"operations":{"op":"add"}}`, 0, 0, false},
		{"truncated", `{"operations":[{"op":"add","text":"t"}`, 0, 0, false},
		{"prose", `Add a lesson about codes.`, 0, 0, false},
		{"empty", ``, 0, 0, false},
	}
	for _, tt := range tests {
		a, err := ParseAdvantage(tt.in)
		if (err == nil) != tt.ok || len(a.Ops) != tt.ops || len(a.Rejected) != tt.rejected {
			t.Errorf("%s: %d ops, %d rejected (%v), %v; want %d, %d, ok %v", tt.name, len(a.Ops), len(a.Rejected), a.Rejected, err, tt.ops, tt.rejected, tt.ok)
		}
		if err != nil && !errors.Is(err, ErrBadAdvantage) {
			t.Errorf("%s: %v does not wrap ErrBadAdvantage", tt.name, err)
		}
	}
}

func FuzzParseAdvantage(f *testing.F) {
	reply, err := os.ReadFile(filepath.Join("testdata", "grpo", "advantage_reply.txt"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(string(reply))
	f.Add(`{"operations":[{"op":"add","text":"t"},{"op":"delete","id":"E1"}]}`)
	f.Add(`x {"operations":[{"op":"modify","id":"E1","text":"t"}]} y`)
	f.Add(`{"operations":[{"op":"keep"}]`)
	f.Fuzz(func(t *testing.T, s string) {
		a, err := ParseAdvantage(s)
		if err != nil {
			if len(a.Ops) != 0 {
				t.Fatalf("ops with an error: %+v", a)
			}
			return
		}
		if len(a.Ops) > MaxOps {
			t.Fatalf("%d ops", len(a.Ops))
		}
		for _, op := range a.Ops {
			switch op.Kind {
			case OpAdd:
				if op.ID != "" || op.Text == "" {
					t.Fatalf("bad add %+v", op)
				}
			case OpModify:
				if op.ID == "" || op.Text == "" {
					t.Fatalf("bad modify %+v", op)
				}
			case OpDelete, OpKeep:
				if op.ID == "" || op.Text != "" {
					t.Fatalf("bad %s %+v", op.Kind, op)
				}
			default:
				t.Fatalf("unknown kind in %+v", op)
			}
			if len([]rune(op.Text)) > MaxLessonRunes || op.Text != store.NormalizeText(op.Text) {
				t.Fatalf("text not capped or normalised: %q", op.Text)
			}
		}
	})
}
