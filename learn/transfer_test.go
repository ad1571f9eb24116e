package learn

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/dso-proxy/dso/config"
	"github.com/dso-proxy/dso/library"
	"github.com/dso-proxy/dso/providers"
	"github.com/dso-proxy/dso/store"
)

// A unit conversion the rule model can do only when told its rule.
type unitKind struct {
	name   string  // what a question names, singular ("inch")
	to     string  // the unit converted to
	factor float64 // to per name
	// rules are paraphrases of the lesson: each states the factor and
	// never an answer.
	rules []string
}

var unitKinds = []unitKind{
	{"inch", "centimetres", 2.54, []string{
		"To convert inches to centimetres, multiply the number of inches by 2.54.",
		"Inches become centimetres when multiplied by 2.54.",
	}},
	{"mile", "kilometres", 1.609, []string{
		"To convert miles to kilometres, multiply the number of miles by 1.609.",
		"Miles become kilometres when multiplied by 1.609.",
	}},
	{"pound", "kilograms", 0.4536, []string{
		"To convert pounds to kilograms, multiply the number of pounds by 0.4536.",
		"Pounds become kilograms when multiplied by 0.4536.",
	}},
	{"ounce", "grams", 28.35, nil}, // never trained: the control
}

var numRE = regexp.MustCompile(`\d+(?:\.\d+)?`)

// kindOf names the conversion a question asks for, and its number.
func kindOf(q string) (unitKind, float64, bool) {
	lq := strings.ToLower(q)
	for _, k := range unitKinds {
		if strings.Contains(lq, k.name) {
			x, err := strconv.ParseFloat(numRE.FindString(q), 64)
			return k, x, err == nil
		}
	}
	return unitKind{}, 0, false
}

// knows reports whether text states kind k's rule: its unit and factor.
func (k unitKind) knows(text string) bool {
	lt := strings.ToLower(text)
	return strings.Contains(lt, k.name) && strings.Contains(lt, strconv.FormatFloat(k.factor, 'f', -1, 64))
}

func convert(k unitKind, x float64) string { return strconv.FormatFloat(x*k.factor, 'f', 2, 64) }

// ruleLLM is a fake model that answers a unit conversion right only when
// the rule it needs is in its context (a lesson never holds the answer: the
// questions' numbers differ). Without the rule it multiplies by a wrong
// factor, except that at temperature > 0 one sample in four recalls the
// rule, so groups differ. Its group-advantage replies act on what they are
// shown: a shown lesson that states the question's rule is kept; else it
// adds the rule, in the next of its paraphrases. Its merge replies fold
// additions that state the same rule into one.
type ruleLLM struct {
	t        *testing.T
	template []byte

	// mode changes what the advantage replies do with shown lessons that
	// lack the rule: "same" modifies them to their own text, "rewrite" to
	// the rule (instead of adding it), "leak" adds the reference answer.
	mode string

	mu       sync.Mutex
	recalled map[string]int
	phrase   map[string]int
	// foreign counts, per kind asked about at temperature 0 (the held-out
	// evaluation), the answering requests whose context held another
	// kind's rule. (Training questions share one template with each other
	// and the lessons one with each other, and with the hash embedder
	// another kind's rule can clear the gate for them.)
	foreign  map[string]int
	requests int
	merges   int
}

func newRuleLLM(t *testing.T) *ruleLLM {
	tpl, err := os.ReadFile(filepath.Join("testdata", "grpo", "chat_response.json"))
	if err != nil {
		t.Fatal(err)
	}
	return &ruleLLM{t: t, template: tpl, recalled: map[string]int{}, phrase: map[string]int{}, foreign: map[string]int{}}
}

func (f *ruleLLM) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := readAll(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var req struct {
		Messages    []Message `json:"messages"`
		Temperature *float64  `json:"temperature"`
	}
	if err := json.Unmarshal(body, &req); err != nil || len(req.Messages) == 0 {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	f.mu.Lock()
	f.requests++
	var answer string
	switch req.Messages[0].Content {
	case AdvantagePrompt:
		answer = f.advantage(req.Messages[len(req.Messages)-1].Content)
	case MergePrompt:
		f.merges++
		answer = f.merge(req.Messages[len(req.Messages)-1].Content)
	default:
		answer = f.answer(req.Messages, req.Temperature)
	}
	f.mu.Unlock()
	var resp map[string]any
	json.Unmarshal(f.template, &resp)
	resp["choices"].([]any)[0].(map[string]any)["message"].(map[string]any)["content"] = answer
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(resp)
}

func (f *ruleLLM) answer(msgs []Message, temp *float64) string {
	q := msgs[len(msgs)-1].Content
	k, x, ok := kindOf(q)
	if !ok {
		return "I cannot tell."
	}
	var context strings.Builder
	for _, m := range msgs[:len(msgs)-1] {
		context.WriteString(m.Content + "\n")
	}
	if temp == nil || *temp == 0 {
		for _, o := range unitKinds {
			if o.name != k.name && o.knows(context.String()) {
				f.foreign[k.name]++
			}
		}
	}
	right := k.knows(context.String())
	if !right && temp != nil && *temp > 0 {
		f.recalled[k.name]++
		right = f.recalled[k.name]%4 == 1
	}
	if right {
		return fmt.Sprintf("Multiplying by %g gives\n\\boxed{%s}", k.factor, convert(k, x))
	}
	return fmt.Sprintf("I think it is about\n\\boxed{%s}", strconv.FormatFloat(x*2.5, 'f', 2, 64))
}

func (f *ruleLLM) advantage(prompt string) string {
	q, _, _ := strings.Cut(strings.TrimPrefix(prompt, "Question:\n"), "\n")
	k, _, ok := kindOf(q)
	if !ok {
		f.t.Errorf("advantage prompt without a conversion question:\n%s", prompt)
		return "no"
	}
	var ops []Op
	rewrote := false
	for _, l := range lessonLineRE.FindAllStringSubmatch(prompt, -1) {
		l[2] = strings.TrimSuffix(l[2], "*") // shown to the model
		switch {
		case k.knows(l[2]):
			ops = append(ops, Op{Kind: OpKeep, ID: l[1]})
		case f.mode == "same":
			ops = append(ops, Op{Kind: OpModify, ID: l[1], Text: l[2]})
		case f.mode == "rewrite" && strings.Contains(strings.ToLower(l[2]), k.name):
			ops = append(ops, Op{Kind: OpModify, ID: l[1], Text: k.rules[0]})
			rewrote = true
		}
	}
	if f.mode == "leak" {
		_, ref, _ := strings.Cut(prompt, "Reference answer:\n")
		ref, _, _ = strings.Cut(ref, "\n")
		ops = append(ops, Op{Kind: OpAdd, Text: "For such questions the answer is " + ref + "."})
	}
	if len(ops) == 0 || !rewrote && f.mode == "same" {
		i := f.phrase[k.name]
		f.phrase[k.name]++
		ops = append(ops, Op{Kind: OpAdd, Text: k.rules[i%len(k.rules)]})
	}
	b, _ := json.Marshal(Advantage{Advantage: "the right answers used the conversion factor", Ops: ops})
	return string(b)
}

var mergeLineRE = regexp.MustCompile(`(?m)^\[([AL]\d+)\] (.*)$`)

// merge folds proposals by the rule they state: none for a rule an
// existing lesson states, one for each other rule, and any proposal that
// states no known rule as it is.
func (f *ruleLLM) merge(prompt string) string {
	var ops []Op
	stated := map[string]bool{}
	lines := mergeLineRE.FindAllStringSubmatch(prompt, -1)
	for _, l := range lines {
		for _, k := range unitKinds {
			if l[1][0] == 'L' && k.knows(l[2]) {
				stated[k.name] = true
			}
		}
	}
	at := map[string]int{} // kind → its op
	for _, l := range lines {
		if l[1][0] != 'A' {
			continue
		}
		known := false
		for _, k := range unitKinds {
			if !k.knows(l[2]) {
				continue
			}
			known = true
			if i, ok := at[k.name]; ok {
				ops[i].From = append(ops[i].From, l[1])
			} else if !stated[k.name] {
				stated[k.name] = true
				at[k.name] = len(ops)
				ops = append(ops, Op{Kind: OpAdd, Text: l[2], From: []string{l[1]}})
			}
		}
		if !known {
			ops = append(ops, Op{Kind: OpAdd, Text: l[2], From: []string{l[1]}})
		}
	}
	b, _ := json.Marshal(map[string]any{"operations": ops})
	return string(b)
}

// unitItems builds conversion items: each kind's questions in one wording
// for training and another, with other numbers, held out.
func unitItems(kinds []unitKind, numbers []float64, wording string) []Item {
	var items []Item
	for _, x := range numbers {
		for _, k := range kinds {
			items = append(items, Item{
				Query:       fmt.Sprintf(wording, strconv.FormatFloat(x, 'f', -1, 64), k.name, k.to),
				GroundTruth: convert(k, x),
			})
		}
	}
	return items
}

const (
	trainWording   = "Convert %s %s(es) to %s."
	heldoutWording = "A parcel measures %s %s units. Express that in %s, please."
)

func newRuleHarness(t *testing.T) (*ruleLLM, *library.Library, Config) {
	t.Helper()
	ctx := context.Background()
	fake := newRuleLLM(t)
	srv := httptest.NewServer(fake)
	t.Cleanup(srv.Close)
	c := config.Default()
	c.SetBackends([]config.Backend{{Type: config.TypeOpenAI, URL: srv.URL}})
	router, err := providers.NewRouter(c.Backends, srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.OpenDir(ctx, t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	emb := library.EmbedFunc(providers.NewHashEmbedder(512, 3).Embed)
	lib, err := library.New(ctx, library.Config{Store: st, CacheSize: -1, Space: library.Space{Name: "hash:512", Embedder: emb}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lib.Close() })
	return fake, lib, Config{
		Chat: Backend{Router: router}, Library: lib, Model: "fake-1",
		Grader: Final{Tolerance: 0.01}, Group: 4, Batch: 3, Epochs: 2, Domain: "units",
	}
}

// A lesson learned from training questions reaches unseen questions of
// the same kind, worded differently and with other numbers, and no
// question of another kind; held-out accuracy rises from the no-library
// baseline to every trained kind right, and the untrained kind stays
// wrong.
func TestOptimizerTransfersRules(t *testing.T) {
	for _, whole := range []int{0, 10} {
		t.Run(fmt.Sprint("inject_whole=", whole), func(t *testing.T) { testTransfer(t, whole) })
	}
}

func testTransfer(t *testing.T, injectWhole int) {
	fake, lib, cfg := newRuleHarness(t)
	cfg.InjectWhole = injectWhole
	trained := unitKinds[:3]
	train := unitItems(trained, []float64{7, 12}, trainWording)
	heldout := unitItems(unitKinds, []float64{3, 41}, heldoutWording)
	o, err := NewOptimizer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := o.Run(context.Background(), train, heldout)
	if err != nil {
		t.Fatal(err)
	}
	if rep.HeldoutBaseline == nil || *rep.HeldoutBaseline != 0 {
		t.Fatalf("held-out baseline %v; want 0 (the model knows no rule)", rep.HeldoutBaseline)
	}
	// Every trained kind's held-out items right, the untrained kind's not.
	want := float64(len(trained)) / float64(len(unitKinds))
	for _, e := range rep.Epochs {
		t.Logf("epoch %d: held-out %.3f (baseline %.3f, gain %+.3f), train mean grade %.3f, library %d, ops %+v, cost %+v",
			e.Epoch, *e.HeldoutAccuracy, *rep.HeldoutBaseline, *e.HeldoutGain, e.MeanGrade, e.LibrarySize, e.Ops, e.Tokens)
	}
	if last := rep.Epochs[len(rep.Epochs)-1]; last.HeldoutAccuracy == nil {
		t.Errorf("no held-out accuracy after training; want %v", want)
	} else if *last.HeldoutAccuracy != want {
		t.Errorf("held-out accuracy after training %v; want %v", *last.HeldoutAccuracy, want)
	}
	if rep.Tokens.Calls != fake.requests {
		t.Errorf("%d calls reported; the model served %d", rep.Tokens.Calls, fake.requests)
	}
	if len(fake.foreign) != 0 {
		t.Errorf("lessons of other kinds injected (per kind asked): %v", fake.foreign)
	}
	// No lesson holds an answer.
	err = lib.Store().EachExperience(context.Background(), func(e store.Experience) error {
		for _, it := range append(train, heldout...) {
			if Leaks(e.Text, it.GroundTruth) {
				t.Errorf("lesson %q holds the answer to %q", e.Text, it.Query)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// A modify that leaves a lesson's text as it is keeps the lesson (it used
// to delete it); a modify that rewrites it keeps its votes; a lesson that
// states the answer is rejected.
func TestOptimizerModifyAndLeaks(t *testing.T) {
	ctx := context.Background()
	inch := unitKinds[0]
	train := unitItems([]unitKind{inch}, []float64{7, 12, 5}, trainWording)
	for _, mode := range []string{"same", "rewrite", "leak"} {
		t.Run(mode, func(t *testing.T) {
			fake, lib, cfg := newRuleHarness(t)
			fake.mode = mode
			cfg.Epochs = 1
			seed, _, err := lib.Add(ctx, store.Experience{Text: "Inches are a unit of length; convert inches with care.", Key: train[0].Query, Domain: "units", Confidence: 0.6})
			if err != nil {
				t.Fatal(err)
			}
			for _, v := range []string{"a", "b"} {
				if err := lib.Store().(*store.SQLite).PutVote(ctx, store.Vote{ExperienceID: seed.ID, Voter: v, TraceID: "t", Up: true}); err != nil {
					t.Fatal(err)
				}
			}
			o, err := NewOptimizer(cfg)
			if err != nil {
				t.Fatal(err)
			}
			rep, err := o.Run(ctx, train, nil)
			if err != nil {
				t.Fatal(err)
			}
			_, seedErr := lib.Store().(*store.SQLite).GetExperience(ctx, seed.ID)
			switch mode {
			case "same":
				if seedErr != nil || rep.Ops.Modify != 0 || rep.Ops.Keep == 0 {
					t.Errorf("unchanged modify: seed %v, ops %+v; want the seed kept, counted as keep", seedErr, rep.Ops)
				}
			case "rewrite":
				id := store.ExperienceID("units", inch.rules[0])
				tally, err := lib.Store().(*store.SQLite).Tally(ctx, id)
				if err != nil || tally.Up != 2 || seedErr == nil || rep.Ops.Modify != 1 {
					t.Errorf("rewrite: tally %+v (%v), seed %v, ops %+v; want the rule holding both votes, the old text gone", tally, err, seedErr, rep.Ops)
				}
			case "leak":
				err := lib.Store().EachExperience(ctx, func(e store.Experience) error {
					if strings.Contains(e.Text, "the answer is") {
						t.Errorf("a leaking lesson was stored: %q", e.Text)
					}
					return nil
				})
				if err != nil || rep.Ops.Rejected == 0 {
					t.Errorf("leaks: %v, ops %+v; want them rejected", err, rep.Ops)
				}
			}
		})
	}
}

// Paraphrased lessons proposed in one batch merge into one, and a later
// group that sees the whole library keeps the rule instead of adding
// another paraphrase.
func TestOptimizerMergesParaphrases(t *testing.T) {
	fake, lib, cfg := newRuleHarness(t)
	inch := unitKinds[0]
	train := unitItems([]unitKind{inch}, []float64{7, 12, 5, 9}, trainWording)
	cfg.Batch, cfg.Epochs = 2, 1
	o, err := NewOptimizer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := o.Run(context.Background(), train, nil); err != nil {
		t.Fatal(err)
	}
	var rules []string
	err = lib.Store().EachExperience(context.Background(), func(e store.Experience) error {
		rules = append(rules, e.Text)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if fake.merges == 0 || len(rules) != 1 || !inch.knows(rules[0]) {
		t.Errorf("after %d merges the library holds %q; want one inch rule", fake.merges, rules)
	}
}
