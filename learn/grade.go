package learn

import (
	"context"
	"errors"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"unicode"
)

// Grader scores an answer to query against the ground truth, from 0
// (wrong) to 1 (right). Usage is what grading itself cost (an LLM judge's
// tokens); local graders report none. Graders are safe for concurrent use.
type Grader interface {
	Grade(ctx context.Context, query, truth, answer string) (float64, Usage, error)
}

// ErrBadJudgeReply reports a judge reply that does not end in the strict
// "GRADE: x" form. The optimizer scores such an answer 0 and goes on.
var ErrBadJudgeReply = errors.New("learn: judge reply has no GRADE line")

// ParseGrader builds a grader from its command-line spec:
//
//	exact            the answer equals the truth, after NormalizeAnswer
//	numeric[:TOL]    the last number in the answer is within TOL of the
//	                 truth's (absolute; default 1e-6)
//	final[:TOL]      the answer's final answer (FinalAnswer: \boxed{}, an
//	                 "answer:" line or the last line) equals the truth's,
//	                 numbers within TOL (default 1e-6)
//	contains         the normalised answer contains the normalised truth
//	regex            the truth is a regular expression the answer matches
//	llm[:MODEL]      a judge model (default model) grades through chat
//
// An empty spec means exact.
func ParseGrader(spec string, chat Chatter, model string) (Grader, error) {
	kind, arg, hasArg := strings.Cut(spec, ":")
	switch kind {
	case "", "exact", "contains", "regex":
		if hasArg {
			return nil, fmt.Errorf("grader %q takes no argument", kind)
		}
		switch kind {
		case "contains":
			return Contains{}, nil
		case "regex":
			return &Regex{}, nil
		}
		return Exact{}, nil
	case "numeric", "final":
		tol := DefaultTolerance
		if hasArg {
			t, err := strconv.ParseFloat(arg, 64)
			if err != nil || t < 0 || math.IsInf(t, 0) || math.IsNaN(t) {
				return nil, fmt.Errorf("grader %q: tolerance must be a number >= 0", spec)
			}
			tol = t
		}
		if kind == "final" {
			return Final{Tolerance: tol}, nil
		}
		return Numeric{Tolerance: tol}, nil
	case "llm":
		if chat == nil {
			return nil, errors.New("grader llm: no chat backend")
		}
		if hasArg {
			if arg == "" {
				return nil, fmt.Errorf("grader %q: empty judge model", spec)
			}
			model = arg
		}
		if model == "" {
			return nil, errors.New("grader llm: no judge model")
		}
		return Judge{Chat: chat, Model: model}, nil
	}
	return nil, fmt.Errorf("grader %q is not exact, final[:TOL], numeric[:TOL], contains, regex or llm[:MODEL]", spec)
}

// DefaultGraderSpec is the grader for a dataset whose command names none:
// "final" when every ground truth is a short answer (a number, or at most
// maxShortTruthWords words), which a final-answer extractor can check, and
// "llm" (a judge) for free-form truths, which whole-answer comparison
// would grade all wrong.
func DefaultGraderSpec(items []Item) string {
	for _, it := range items {
		if _, ok := plainNumber(it.GroundTruth); !ok && len(strings.Fields(it.GroundTruth)) > maxShortTruthWords {
			return "llm"
		}
	}
	return "final"
}

const maxShortTruthWords = 5

// Final grades 1 when the answer's final answer (FinalAnswer) agrees with
// the truth's: as numbers within Tolerance when the truth is a number,
// else as text after NormalizeAnswer. The reasoning before it is ignored.
type Final struct {
	Tolerance float64
}

// Grade implements Grader.
func (g Final) Grade(_ context.Context, _, truth, answer string) (float64, Usage, error) {
	return score(sameFinal(FinalAnswer(answer), FinalAnswer(truth), g.Tolerance)), Usage{}, nil
}

// NormalizeAnswer lower-cases s, collapses runs of white space to one space
// and trims white space and trailing sentence punctuation (". ! ?").
func NormalizeAnswer(s string) string {
	s = strings.Join(strings.Fields(strings.ToLower(s)), " ")
	return strings.TrimRightFunc(s, func(r rune) bool { return r == '.' || r == '!' || r == '?' || unicode.IsSpace(r) })
}

func score(ok bool) float64 {
	if ok {
		return 1
	}
	return 0
}

// Exact grades 1 when the answer equals the truth after NormalizeAnswer.
type Exact struct{}

// Grade implements Grader.
func (Exact) Grade(_ context.Context, _, truth, answer string) (float64, Usage, error) {
	return score(NormalizeAnswer(answer) == NormalizeAnswer(truth)), Usage{}, nil
}

// Contains grades 1 when the normalised answer contains the normalised,
// non-empty truth.
type Contains struct{}

// Grade implements Grader.
func (Contains) Grade(_ context.Context, _, truth, answer string) (float64, Usage, error) {
	t := NormalizeAnswer(truth)
	return score(t != "" && strings.Contains(NormalizeAnswer(answer), t)), Usage{}, nil
}

// Regex grades 1 when the answer matches the truth read as a regular
// expression (RE2 syntax, unanchored). Compiled patterns are cached; a
// truth that does not compile is an error. The zero value is ready.
type Regex struct {
	mu    sync.Mutex
	cache map[string]*regexp.Regexp
}

// maxRegexCache bounds Regex's cache of compiled patterns.
const maxRegexCache = 1024

// Grade implements Grader.
func (g *Regex) Grade(_ context.Context, _, truth, answer string) (float64, Usage, error) {
	g.mu.Lock()
	re, ok := g.cache[truth]
	g.mu.Unlock()
	if !ok {
		var err error
		if re, err = regexp.Compile(truth); err != nil {
			return 0, Usage{}, fmt.Errorf("grader regex: %w", err)
		}
		g.mu.Lock()
		if g.cache == nil || len(g.cache) >= maxRegexCache {
			g.cache = map[string]*regexp.Regexp{}
		}
		g.cache[truth] = re
		g.mu.Unlock()
	}
	return score(re.MatchString(answer)), Usage{}, nil
}

// DefaultTolerance is Numeric's tolerance when the spec names none.
const DefaultTolerance = 1e-6

// Numeric grades 1 when the last number in the answer is within Tolerance
// of the truth (the truth's last number, if it is not a plain number).
type Numeric struct {
	Tolerance float64
}

// Grade implements Grader. A truth with no number is an error; an answer
// with none grades 0.
func (g Numeric) Grade(_ context.Context, _, truth, answer string) (float64, Usage, error) {
	want, ok := LastNumber(truth)
	if !ok {
		return 0, Usage{}, fmt.Errorf("grader numeric: ground truth %q has no number", truth)
	}
	got, ok := LastNumber(answer)
	return score(ok && math.Abs(got-want) <= g.Tolerance), Usage{}, nil
}

// numberRE matches a decimal number: optional sign, digits with optional
// thousands commas, optional fraction and exponent; or a bare fraction.
var numberRE = regexp.MustCompile(`[-+]?(?:(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+)(?:[eE][-+]?\d+)?`)

// LastNumber returns the last decimal number written in s ("1,234.5",
// "-3", ".5", "2e3"), the usual place of a final answer. Thousands commas
// are dropped; a sign glued to a preceding letter or digit ("3-5") is read
// as a hyphen. It reports false when s has no finite number.
func LastNumber(s string) (float64, bool) {
	locs := numberRE.FindAllStringIndex(s, -1)
	for i := len(locs) - 1; i >= 0; i-- {
		start, end := locs[i][0], locs[i][1]
		if c := s[start]; (c == '-' || c == '+') && start > 0 && isWordByte(s[start-1]) {
			start++
		}
		v, err := strconv.ParseFloat(strings.ReplaceAll(s[start:end], ",", ""), 64)
		if err == nil && !math.IsInf(v, 0) && !math.IsNaN(v) {
			return v, true
		}
	}
	return 0, false
}

func isWordByte(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_'
}

// JudgePrompt is the instruction the LLM judge grades under; its reply must
// end with a line "GRADE: x", x from 0 to 1.
const JudgePrompt = "You grade answers. Compare the answer with the reference answer and decide how correct it is. " +
	"Judge only correctness, not style. You may reason briefly first; the last line of your reply must be " +
	"exactly \"GRADE: x\" where x is a number from 0.0 (wrong) to 1.0 (fully right), and nothing may follow it."

// Judge grades through a model asked for JudgePrompt's strict format.
type Judge struct {
	Chat  Chatter
	Model string
}

// Critic is a Grader that also says why it gave its grade. The group step
// shows the critique to the per-rollout summary (Config.SummarizeOver), as
// Training-Free GRPO summarises each rollout with its grade and critique.
type Critic interface {
	Grader
	// Critique is Grade with the grader's reasoning beside the grade.
	Critique(ctx context.Context, query, truth, answer string) (float64, string, Usage, error)
}

var _ Critic = Judge{}

// Grade implements Grader. A reply without the GRADE line is an error
// wrapping ErrBadJudgeReply, returned with the reply's usage.
func (j Judge) Grade(ctx context.Context, query, truth, answer string) (float64, Usage, error) {
	g, _, u, err := j.Critique(ctx, query, truth, answer)
	return g, u, err
}

// Critique implements Critic: the critique is the judge's reply before its
// GRADE line.
func (j Judge) Critique(ctx context.Context, query, truth, answer string) (float64, string, Usage, error) {
	zero := 0.0
	req := ChatRequest{Model: j.Model, Temperature: &zero, MaxTokens: 512, Messages: []Message{
		{Role: "system", Content: JudgePrompt},
		{Role: "user", Content: "Question:\n" + clip(query, maxShownRunes) + "\n\nReference answer:\n" + clip(truth, maxShownRunes) +
			"\n\nAnswer to grade:\n" + clipEnds(answer, maxShownRunes)},
	}}
	reply, u, err := j.Chat.Chat(ctx, req)
	if err != nil {
		return 0, "", u, fmt.Errorf("judge %s: %w", j.Model, err)
	}
	g, err := ParseJudgeReply(reply)
	reply = strings.TrimSpace(reply)
	if i := strings.LastIndexByte(reply, '\n'); i >= 0 && err == nil {
		return g, strings.TrimSpace(reply[:i]), u, nil
	}
	return g, "", u, err
}

// critique grades answer with g, and with its critique when g is a Critic.
func critique(ctx context.Context, g Grader, it Item, answer string) (float64, string, Usage, error) {
	if c, ok := g.(Critic); ok {
		return c.Critique(ctx, it.Query, it.GroundTruth, answer)
	}
	grade, u, err := g.Grade(ctx, it.Query, it.GroundTruth, answer)
	return grade, "", u, err
}

// gradeLineRE is the judge's last line: a number in [0, 1] written plainly.
var gradeLineRE = regexp.MustCompile(`^(?i:grade)\s*:\s*(1(?:\.0*)?|0(?:\.\d*)?|\.\d+)\s*$`)

// ParseJudgeReply reads the grade from a judge reply: its last non-empty
// line must be "GRADE: x" (case-insensitive key; optional ** or ` around
// it), x a plain decimal from 0 to 1.
func ParseJudgeReply(reply string) (float64, error) {
	lines := strings.Split(strings.TrimSpace(reply), "\n")
	last := strings.Trim(strings.TrimSpace(lines[len(lines)-1]), "*`")
	m := gradeLineRE.FindStringSubmatch(strings.TrimSpace(last))
	if m == nil {
		return 0, fmt.Errorf("%w: last line %q", ErrBadJudgeReply, clip(last, 80))
	}
	g, err := strconv.ParseFloat(m[1], 64)
	if err != nil || g < 0 || g > 1 {
		return 0, fmt.Errorf("%w: grade %q", ErrBadJudgeReply, m[1])
	}
	return g, nil
}

// maxShownRunes caps each text learn shows a model (answers, truths).
const maxShownRunes = 2000

// clip returns s cut to at most n runes, marking a cut with "…".
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	i := 0
	for j := range s {
		if i == n {
			return s[:j] + "…"
		}
		i++
	}
	return s
}
