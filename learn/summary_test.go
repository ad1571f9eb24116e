package learn

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// rolloutLLM answers at length, each answer numbered ("rollout-N") and
// every other one right; it summarises an answer as the number and grade
// it was shown, and records the comparison prompts it gets.
type rolloutLLM struct {
	mu         sync.Mutex
	answers    int
	summaries  int
	judged     int
	comparison []string
}

var (
	rolloutRE      = regexp.MustCompile(`rollout-\d+`)
	summaryBlockRE = regexp.MustCompile(`<summary n=(\d+) grade=([\d.]+)>\nSUMMARY of rollout-(\d+), graded ([\d.]+)( \(critique seen\))?:`)
)

func (f *rolloutLLM) reply(msgs []Message) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	user := msgs[len(msgs)-1].Content
	switch msgs[0].Content {
	case SummaryPrompt:
		f.summaries++
		_, grade, _ := strings.Cut(user, "Grade: ")
		grade, _, _ = strings.Cut(grade, "\n")
		r := rolloutRE.FindString(user)
		seen := ""
		if strings.Contains(user, "Grader's critique:\nCRITIQUE of "+r+".") {
			seen = " (critique seen)"
		}
		return fmt.Sprintf("SUMMARY of %s, graded %s%s: it added, then boxed its result.", r, grade, seen)
	case JudgePrompt:
		f.judged++
		grade := "0"
		if strings.HasSuffix(user, "\\boxed{42}") {
			grade = "1"
		}
		return fmt.Sprintf("CRITIQUE of %s.\nGRADE: %s", rolloutRE.FindString(user), grade)
	case AdvantagePrompt:
		f.comparison = append(f.comparison, user)
		b, _ := json.Marshal(Advantage{Advantage: "the right answers carried the one", Ops: []Op{{Kind: OpAdd, Text: "Carry the one when adding columns."}}})
		return string(b)
	case MergePrompt:
		return identityMerge(user)
	}
	f.answers++
	final := "41"
	if f.answers%2 == 1 {
		final = "42"
	}
	return strings.Repeat("working it out step by step ", 200) + fmt.Sprintf("rollout-%d \\boxed{%s}", f.answers, final)
}

// With long answers the group step summarises each in its own call, with
// its grade and, from a judge, its critique, and the comparison is shown every summary instead of the
// answers; switched off, it is shown the answers, clipped.
func TestGroupStepSummarisesLongRollouts(t *testing.T) {
	for _, tc := range []struct {
		over  int
		judge bool
	}{{0, false}, {-1, false}, {0, true}} {
		t.Run(fmt.Sprintf("summarize_over=%d,judge=%v", tc.over, tc.judge), func(t *testing.T) {
			over := tc.over
			fake := &rolloutLLM{}
			lib := openLib(t, t.TempDir())
			chat := wireChat(t, fake.reply)
			var grader Grader = Final{}
			if tc.judge {
				grader = Judge{Chat: chat, Model: "fake-1"}
			}
			o, err := NewOptimizer(Config{
				Chat: chat, Library: lib, Model: "fake-1", Grader: grader,
				Group: 4, Batch: 1, Epochs: 1, Domain: "sums", SummarizeOver: over,
			})
			if err != nil {
				t.Fatal(err)
			}
			rep, err := o.Run(context.Background(), []Item{{Query: "What is 19 + 23?", GroundTruth: "42"}}, nil)
			if err != nil {
				t.Fatal(err)
			}
			if len(fake.comparison) != 1 {
				t.Fatalf("%d comparisons; want 1", len(fake.comparison))
			}
			cmp := fake.comparison[0]
			if want := fake.answers + fake.judged + fake.summaries + 1; rep.Tokens.Calls != want {
				t.Errorf("%d calls reported; the model served %d", rep.Tokens.Calls, want)
			}
			if over < 0 {
				if fake.summaries != 0 || !strings.Contains(cmp, "<answer n=1") || !strings.Contains(cmp, "working it out") {
					t.Errorf("switched off: %d summary calls; the comparison:\n%.300s", fake.summaries, cmp)
				}
				return
			}
			if fake.summaries != 4 {
				t.Errorf("%d summary calls; want one per answer (4)", fake.summaries)
			}
			// Answers are sampled concurrently: which rollout is answer n
			// varies, but each appears once, with its own grade.
			blocks := summaryBlockRE.FindAllStringSubmatch(cmp, -1)
			seen := map[string]bool{}
			for i, b := range blocks {
				n, _ := strconv.Atoi(b[3])
				right := map[bool]string{true: "1.00", false: "0.00"}[n%2 == 1]
				if b[1] != strconv.Itoa(i+1) || b[2] != right || b[4] != right || seen[b[3]] {
					t.Errorf("summary block %q: want answer %d, rollout %d's summary once, graded %s", b[0], i+1, n, right)
				}
				if critiqued := b[5] != ""; critiqued != tc.judge {
					t.Errorf("summary block %q: critique shown %v; want %v (a judge's critique goes to its summary)", b[0], critiqued, tc.judge)
				}
				seen[b[3]] = true
			}
			if len(seen) != 4 {
				t.Errorf("the comparison shows %d summaries; want 4:\n%s", len(seen), cmp)
			}
			if strings.Contains(cmp, "working it out") {
				t.Error("the comparison was shown an answer, not its summary")
			}
			if n := len(lessons(t, lib)); n != 1 {
				t.Errorf("%d lessons; want the comparison's one", n)
			}
		})
	}
}
