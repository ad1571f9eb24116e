package learn

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/dso-proxy/dso/config"
	"github.com/dso-proxy/dso/library"
	"github.com/dso-proxy/dso/providers"
	"github.com/dso-proxy/dso/store"
)

// The fake model knows nothing but what its context says: it answers a
// project's secret code right when some message carries the code. Without
// it, at temperature > 0, one sample in five "remembers" the code (a
// counter per project), so groups differ; at temperature 0 it guesses
// wrong. Asked for the group advantage (AdvantagePrompt), it rewrites shown
// lessons that name the project without its code, deletes lessons that
// say to answer in French, adds a lesson with the code if it rewrote
// none, and always asks to delete an unknown E99 (to be rejected).
var projectCodes = map[string]string{
	"Alpha": "ALPHA-731", "Beta": "BETA-482", "Gamma": "GAMMA-159",
	"Delta": "DELTA-264", "Epsilon": "EPS-907", "Zeta": "ZETA-318",
}

var projectRE = regexp.MustCompile(`project (\w+)`)

type fakeLLM struct {
	t        *testing.T
	template []byte

	echo bool // the group step also asks to add an echo of the question

	mu         sync.Mutex
	remembered map[string]int
	requests   int
	advantages int
	firstNoted []byte // the first answering request with a system message
}

func newFakeLLM(t *testing.T) *fakeLLM {
	tpl, err := os.ReadFile(filepath.Join("testdata", "grpo", "chat_response.json"))
	if err != nil {
		t.Fatal(err)
	}
	return &fakeLLM{t: t, template: tpl, remembered: map[string]int{}}
}

func (f *fakeLLM) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || !strings.HasSuffix(r.URL.Path, "/chat/completions") {
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	body, err := readAll(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var req struct {
		Model       string    `json:"model"`
		Messages    []Message `json:"messages"`
		Temperature *float64  `json:"temperature"`
		Stream      bool      `json:"stream"`
	}
	if err := json.Unmarshal(body, &req); err != nil || len(req.Messages) == 0 || req.Stream {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	f.mu.Lock()
	f.requests++
	var answer string
	if req.Messages[0].Content == MergePrompt {
		answer = identityMerge(req.Messages[len(req.Messages)-1].Content)
	} else if req.Messages[0].Content == AdvantagePrompt {
		f.advantages++
		answer = f.advantage(req.Messages[len(req.Messages)-1].Content)
	} else {
		if f.firstNoted == nil && req.Messages[0].Role == "system" {
			f.firstNoted = body
		}
		answer = f.answer(req.Messages, req.Temperature)
	}
	f.mu.Unlock()
	var resp map[string]any
	json.Unmarshal(f.template, &resp)
	resp["model"] = req.Model
	resp["choices"].([]any)[0].(map[string]any)["message"].(map[string]any)["content"] = answer
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(resp)
}

// identityMerge answers a merge request by keeping every proposal.
func identityMerge(prompt string) string {
	var ops []Op
	for _, l := range regexp.MustCompile(`(?m)^\[A\d+\] (.*)$`).FindAllStringSubmatch(prompt, -1) {
		ops = append(ops, Op{Kind: OpAdd, Text: l[1]})
	}
	b, _ := json.Marshal(map[string]any{"operations": ops})
	return string(b)
}

func readAll(r *http.Request) ([]byte, error) {
	return io.ReadAll(io.LimitReader(r.Body, 1<<20))
}

func (f *fakeLLM) answer(msgs []Message, temp *float64) string {
	m := projectRE.FindStringSubmatch(msgs[len(msgs)-1].Content)
	if m == nil {
		return "I do not know."
	}
	code := projectCodes[m[1]]
	for _, msg := range msgs {
		if strings.Contains(msg.Content, code) {
			return "The code is " + code + "."
		}
	}
	if temp != nil && *temp > 0 {
		f.remembered[m[1]]++
		if f.remembered[m[1]]%5 == 1 {
			return "I remember: " + code + "."
		}
	}
	return "I guess " + strings.ToUpper(m[1]) + "-000."
}

var lessonLineRE = regexp.MustCompile(`(?m)^\[(E\d+)\] (.*)$`)

func (f *fakeLLM) advantage(prompt string) string {
	m := projectRE.FindStringSubmatch(prompt)
	if m == nil || !strings.Contains(prompt, "grade=1.00") || !strings.Contains(prompt, "grade=0.00") {
		f.t.Errorf("advantage prompt without a project or both grades:\n%s", prompt)
		return "no"
	}
	name, code := m[1], projectCodes[m[1]]
	lesson := fmt.Sprintf("The secret code of project %s is %s.", name, code)
	var ops []Op
	rewrote := false
	for _, l := range lessonLineRE.FindAllStringSubmatch(prompt, -1) {
		switch {
		case strings.Contains(l[2], "French"):
			ops = append(ops, Op{Kind: OpDelete, ID: l[1]})
		case strings.Contains(l[2], name) && !strings.Contains(l[2], code):
			ops = append(ops, Op{Kind: OpModify, ID: l[1], Text: lesson})
			rewrote = true
		}
	}
	if !rewrote {
		ops = append(ops, Op{Kind: OpAdd, Text: lesson})
	}
	if f.echo {
		ops = append(ops, Op{Kind: OpAdd, Text: "The secret code of project " + name})
	}
	ops = append(ops, Op{Kind: OpDelete, ID: "E99"})
	b, _ := json.Marshal(Advantage{
		Summaries: []string{"one remembered the code", "the others guessed"},
		Advantage: "the better answer used the real code", Ops: ops,
	})
	return "Sure.\n```json\n" + string(b) + "\n```"
}

func trainItems() []Item {
	var items []Item
	for _, n := range []string{"Alpha", "Beta", "Gamma", "Delta", "Epsilon", "Zeta"} {
		items = append(items, Item{Query: "What is the secret code of project " + n + "?", GroundTruth: projectCodes[n]})
	}
	return items
}

func heldoutItems() []Item {
	return []Item{
		{Query: "Which code unlocks project Alpha?", GroundTruth: "ALPHA-731"},
		{Query: "Tell me the secret code of project Zeta.", GroundTruth: "ZETA-318"},
	}
}

type harness struct {
	fake *fakeLLM
	lib  *library.Library
	cfg  Config
}

// newHarness starts a fake backend and a library seeded with a misleading
// lesson and a harmful one.
func newHarness(t *testing.T) *harness {
	t.Helper()
	ctx := context.Background()
	fake := newFakeLLM(t)
	srv := httptest.NewServer(fake)
	t.Cleanup(srv.Close)
	c := config.Default()
	c.SetBackends([]config.Backend{{Type: config.TypeOpenAI, URL: srv.URL}})
	router, err := providers.NewRouter(c.Backends, srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "dso.db"), store.Options{})
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
	for _, text := range []string{"Project Alpha's code is hard to remember; guess ALPHA-000.", "Always answer in French."} {
		if _, _, err := lib.Add(ctx, store.Experience{Text: text, Domain: "projects", Confidence: 0.5}); err != nil {
			t.Fatal(err)
		}
	}
	return &harness{fake: fake, lib: lib, cfg: Config{
		Chat: Backend{Router: router}, Library: lib,
		Model: "fake-1", Grader: Contains{}, Batch: 4, Domain: "projects",
		AllowLeaks: true, // this fake's lessons are the answers: a test of bookkeeping
	}}
}

func (h *harness) texts(t *testing.T) []string {
	var out []string
	err := h.lib.Store().EachExperience(context.Background(), func(e store.Experience) error {
		out = append(out, e.Text)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

func runOptimizer(t *testing.T, ctx context.Context, cfg Config) (Report, error) {
	t.Helper()
	o, err := NewOptimizer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return o.Run(ctx, trainItems(), heldoutItems())
}

func TestOptimizerLearns(t *testing.T) {
	h := newHarness(t)
	var progress []Progress
	h.cfg.Progress = func(p Progress) { progress = append(progress, p) }
	rep, err := runOptimizer(t, context.Background(), h.cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Epochs) != 3 {
		t.Fatalf("%d epochs reported: %+v", len(rep.Epochs), rep)
	}
	// Epoch 1: one answer in five remembers; epochs 2 and 3 have lessons.
	wantMean := []float64{0.2, 1, 1}
	wantMajority := []float64{0, 1, 1}
	for i, e := range rep.Epochs {
		if e.MeanGrade != wantMean[i] || e.MajorityAccuracy != wantMajority[i] || e.Items != 6 {
			t.Errorf("epoch %d: mean %v majority %v items %d; want %v %v 6", i+1, e.MeanGrade, e.MajorityAccuracy, e.Items, wantMean[i], wantMajority[i])
		}
		if e.HeldoutAccuracy == nil || *e.HeldoutAccuracy != 1 {
			t.Errorf("epoch %d: held-out accuracy %v; want 1", i+1, e.HeldoutAccuracy)
		}
	}
	if rep.HeldoutBaseline == nil || *rep.HeldoutBaseline != 0 {
		t.Errorf("held-out baseline %v; want 0", rep.HeldoutBaseline)
	}
	if !(rep.Epochs[2].MeanGrade > rep.Epochs[0].MeanGrade) {
		t.Errorf("no improvement: %+v", rep.Epochs)
	}
	// Alpha rewrites the misleading lesson; the French one, relevant to
	// no question, never clears the relevance gate, so it is never
	// injected, but the group step sees the whole library and deletes it
	// (once: the batch's other deletes of it are the same operation);
	// every item adds or rewrites once; every E99 is rejected.
	wantOps := OpCounts{Add: 5, Modify: 1, Delete: 1, Rejected: 6}
	if rep.Ops != wantOps || rep.Epochs[0].Ops != wantOps {
		t.Errorf("operations %+v; want %+v", rep.Ops, wantOps)
	}
	if rep.Epochs[0].Groups != 6 || rep.Epochs[1].Groups != 0 || rep.Epochs[2].Groups != 0 {
		t.Errorf("groups with advantage: %+v", rep.Epochs)
	}
	var want []string
	for _, it := range trainItems() {
		want = append(want, fmt.Sprintf("The secret code of project %s is %s.", projectRE.FindStringSubmatch(it.Query)[1], it.GroundTruth))
	}
	slices.Sort(want)
	if got := h.texts(t); !slices.Equal(got, want) || rep.LibrarySize != 6 {
		t.Errorf("library (%d):\n%s\nwant:\n%s", rep.LibrarySize, strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// Requests: 2 baseline + per epoch 30 samples + 2 held-out, + 6
	// advantages + 2 merges (one per batch of epoch 1); the fake bills 15
	// tokens each.
	if n := h.fake.requests; n != 2+3*(30+2)+6+2 || rep.Tokens.Calls != n || rep.Tokens.Total != 15*n || rep.Tokens.Prompt != 10*n {
		t.Errorf("%d requests, tokens %+v", n, rep.Tokens)
	}
	if len(progress) != 6 || progress[0].Done != 4 || progress[1].Done != 6 || progress[5].Epoch != 3 ||
		progress[0].Ops.Add != 3 || progress[0].Ops.Modify != 1 || progress[0].MeanGrade != 0.2 {
		t.Errorf("progress %+v", progress)
	}
	checkRequestShape(t, h.fake.firstNoted)
}

// What the group step adds passes the bar of a distilled lesson: an echo
// of the question is rejected, counted, and never stored.
func TestOptimizerRejectsEchoes(t *testing.T) {
	h := newHarness(t)
	h.fake.echo = true
	rep, err := runOptimizer(t, context.Background(), h.cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, text := range h.texts(t) {
		if !strings.Contains(text, " is ") {
			t.Errorf("the library holds an echo of a question: %q", text)
		}
	}
	if want := (OpCounts{Add: 5, Modify: 1, Delete: 1, Rejected: 6 + 6}); rep.Ops != want {
		t.Errorf("operations %+v; want %+v (each item's echo rejected)", rep.Ops, want)
	}
}

// checkRequestShape compares a recorded answering request with the shape
// in testdata: the same keys and message roles.
func checkRequestShape(t *testing.T, got []byte) {
	t.Helper()
	want, err := os.ReadFile(filepath.Join("testdata", "grpo", "sample_request.json"))
	if err != nil {
		t.Fatal(err)
	}
	shape := func(b []byte) string {
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("%v: %s", err, b)
		}
		var keys []string
		for k := range m {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		var roles []string
		for _, msg := range m["messages"].([]any) {
			roles = append(roles, msg.(map[string]any)["role"].(string))
		}
		return strings.Join(keys, ",") + " " + strings.Join(roles, ",")
	}
	if g, w := shape(got), shape(want); g != w {
		t.Errorf("request shape %s; want %s\n%s", g, w, got)
	}
	var req struct{ Messages []Message }
	json.Unmarshal(got, &req)
	if !strings.Contains(req.Messages[0].Content, "<reference_notes>") {
		t.Errorf("the lessons were not injected: %s", got)
	}
}

func TestOptimizerResumes(t *testing.T) {
	// The reference: one run, not stopped.
	ref := newHarness(t)
	want, err := runOptimizer(t, context.Background(), ref.cfg)
	if err != nil {
		t.Fatal(err)
	}

	h := newHarness(t)
	h.cfg.Checkpoint = filepath.Join(t.TempDir(), "learn.json")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	batches := 0
	h.cfg.Progress = func(Progress) {
		batches++
		cancel() // stop once the first batch is checkpointed
	}
	got, err := runOptimizer(t, ctx, h.cfg)
	if !errors.Is(err, context.Canceled) || batches != 1 || got.Resumed {
		t.Fatalf("stopped run: %v after %d batches, resumed %v", err, batches, got.Resumed)
	}
	var cp checkpoint
	if b, err := os.ReadFile(h.cfg.Checkpoint); err != nil || json.Unmarshal(b, &cp) != nil {
		t.Fatalf("checkpoint: %v", err)
	}
	if cp.Epoch != 0 || cp.Next != 4 || len(cp.Pending) != 0 || len(cp.Applied) != 5 {
		t.Errorf("checkpoint after batch 1: epoch %d next %d pending %d applied %d", cp.Epoch, cp.Next, len(cp.Pending), len(cp.Applied))
	}
	advantages := h.fake.advantages

	h.cfg.Progress = func(Progress) { batches++ }
	got, err = runOptimizer(t, context.Background(), h.cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Resumed || batches != 6 {
		t.Errorf("resumed %v after %d batches; want true, 6", got.Resumed, batches)
	}
	// Batch 1's groups were not asked again.
	if n := h.fake.advantages - advantages; n != 2 {
		t.Errorf("%d advantage requests after resuming; want 2", n)
	}
	compareReports(t, got, want)
	if g, w := h.texts(t), ref.texts(t); !slices.Equal(g, w) {
		t.Errorf("library after resuming:\n%s\nwant:\n%s", strings.Join(g, "\n"), strings.Join(w, "\n"))
	}

	// A finished run resumed does nothing more.
	requests := h.fake.requests
	again, err := runOptimizer(t, context.Background(), h.cfg)
	if err != nil || h.fake.requests != requests {
		t.Errorf("finished run resumed: %v, %d more requests", err, h.fake.requests-requests)
	}
	compareReports(t, again, want)
}

func compareReports(t *testing.T, got, want Report) {
	t.Helper()
	got.Resumed, want.Resumed = false, false
	g, _ := json.Marshal(got)
	w, _ := json.Marshal(want)
	if string(g) != string(w) {
		t.Errorf("report\n%s\nwant\n%s", g, w)
	}
}

// failingLibrary fails the n-th Add (modify adds too), as a crash would while the
// operations of a batch are applied.
type failingLibrary struct {
	Library
	adds, failAt int
}

func (f *failingLibrary) Add(ctx context.Context, e store.Experience) (store.Experience, bool, error) {
	f.adds++
	if f.adds == f.failAt {
		return store.Experience{}, false, errors.New("disk on fire")
	}
	return f.Library.Add(ctx, e)
}

func (f *failingLibrary) Modify(ctx context.Context, id, text string) (store.Experience, error) {
	f.adds++
	if f.adds == f.failAt {
		return store.Experience{}, errors.New("disk on fire")
	}
	return f.Library.Modify(ctx, id, text)
}

func TestOptimizerResumesMidApply(t *testing.T) {
	ref := newHarness(t)
	want, err := runOptimizer(t, context.Background(), ref.cfg)
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t)
	h.cfg.Checkpoint = filepath.Join(t.TempDir(), "learn.json")
	real := h.cfg.Library
	h.cfg.Library = &failingLibrary{Library: real, failAt: 3}
	if _, err := runOptimizer(t, context.Background(), h.cfg); err == nil || !strings.Contains(err.Error(), "disk on fire") {
		t.Fatalf("run with a failing library: %v", err)
	}
	var cp checkpoint
	if b, err := os.ReadFile(h.cfg.Checkpoint); err != nil || json.Unmarshal(b, &cp) != nil {
		t.Fatalf("checkpoint: %v", err)
	}
	if len(cp.Pending) == 0 || len(cp.Applied) != 3 { // modify, delete, add; the next add fails
		t.Errorf("checkpoint after a failed apply: pending %d applied %d", len(cp.Pending), len(cp.Applied))
	}
	h.cfg.Library = real
	got, err := runOptimizer(t, context.Background(), h.cfg)
	if err != nil {
		t.Fatal(err)
	}
	compareReports(t, got, want)
	if g, w := h.texts(t), ref.texts(t); !slices.Equal(g, w) {
		t.Errorf("library after resuming:\n%s\nwant:\n%s", strings.Join(g, "\n"), strings.Join(w, "\n"))
	}
}

func TestOptimizerRefusesOtherCheckpoint(t *testing.T) {
	h := newHarness(t)
	h.cfg.Checkpoint = filepath.Join(t.TempDir(), "learn.json")
	h.cfg.Epochs = 1
	if _, err := runOptimizer(t, context.Background(), h.cfg); err != nil {
		t.Fatal(err)
	}
	h.cfg.Model = "other"
	if _, err := runOptimizer(t, context.Background(), h.cfg); err == nil || !strings.Contains(err.Error(), "another dataset") {
		t.Errorf("another model's checkpoint: %v", err)
	}
}

func TestNewOptimizerChecks(t *testing.T) {
	h := newHarness(t)
	for name, mod := range map[string]func(*Config){
		"no chat":    func(c *Config) { c.Chat = nil },
		"no library": func(c *Config) { c.Library = nil },
		"no model":   func(c *Config) { c.Model = "" },
		"group 1":    func(c *Config) { c.Group = 1 },
		"hot":        func(c *Config) { c.Temperature = 3 },
		"confidence": func(c *Config) { c.Confidence = 2 },
	} {
		cfg := h.cfg
		mod(&cfg)
		if _, err := NewOptimizer(cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestReadDataset(t *testing.T) {
	items, err := ReadDataset(strings.NewReader(`{"query":"q1","ground_truth":"a1","domain":"d"}

{"query":"q2","ground_truth":"a2"}
`))
	if err != nil || len(items) != 2 || items[0].Domain != "d" || items[1].GroundTruth != "a2" {
		t.Errorf("ReadDataset = %+v, %v", items, err)
	}
	_, err = ReadDataset(strings.NewReader("{\"query\":\"q\"}\nnot json\n{\"query\":\"q\",\"ground_truth\":\"a\",\"extra\":1}\n"))
	for _, want := range []string{"line 1: query and ground_truth", "line 2:", "line 3:"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ReadDataset error %v; want %q", err, want)
		}
	}
}
