package learn

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/dso-proxy/dso/config"
	"github.com/dso-proxy/dso/library"
	"github.com/dso-proxy/dso/providers"
	"github.com/dso-proxy/dso/store"
)

// wireChat serves the OpenAI chat wire format on loopback, replying with
// reply(messages), and returns a Chatter that speaks to it.
func wireChat(t *testing.T, reply func(msgs []Message) string) Chatter {
	t.Helper()
	tpl, err := os.ReadFile(filepath.Join("testdata", "grpo", "chat_response.json"))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := readAll(r)
		var req struct {
			Messages []Message `json:"messages"`
		}
		if err != nil || json.Unmarshal(body, &req) != nil || len(req.Messages) == 0 {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		var resp map[string]any
		json.Unmarshal(tpl, &resp)
		resp["choices"].([]any)[0].(map[string]any)["message"].(map[string]any)["content"] = reply(req.Messages)
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(resp)
	}))
	t.Cleanup(srv.Close)
	c := config.Default()
	c.SetBackends([]config.Backend{{Type: config.TypeOpenAI, URL: srv.URL}})
	router, err := providers.NewRouter(c.Backends, srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	return Backend{Router: router}
}

const inchRule = "Multiply by 2.54 to turn the imperial length into centimetres."

// nearInchRule is inchRule reworded a little: another id, a near-copy.
const nearInchRule = "Multiply by 2.54 to turn an imperial length into centimetres."

// lessonSource is what a fake distiller replies with; set between calls.
type lessonSource struct {
	mu   sync.Mutex
	text string
}

func (s *lessonSource) set(text string) {
	s.mu.Lock()
	s.text = text
	s.mu.Unlock()
}

func (s *lessonSource) get() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.text
}

func (s *lessonSource) reply([]Message) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return "Lesson: " + s.text
}

// distilOnce records one trace of query and one voter's grade of it, and
// distils it.
func distilOnce(t *testing.T, l *Learner, lib *library.Library, trace, query, voter string, injected ...string) {
	t.Helper()
	ctx := context.Background()
	tr := store.Trace{ID: trace, Query: query, Domain: "units", Model: "fake-1", Answer: "\\boxed{17.78}", ExperienceIDs: injected}
	if err := lib.Store().(*store.SQLite).PutTrace(ctx, tr); err != nil {
		t.Fatal(err)
	}
	if err := l.Grade(ctx, store.Feedback{TraceID: trace, Voter: voter, Grade: 1}); err != nil {
		t.Fatal(err)
	}
	if n, err := l.DistillPending(ctx, 8); err != nil || n != 1 {
		t.Fatalf("distilled %d, %v; want 1", n, err)
	}
}

func lessons(t *testing.T, lib *library.Library) []store.Experience {
	t.Helper()
	var out []store.Experience
	err := lib.Store().EachExperience(context.Background(), func(e store.Experience) error {
		out = append(out, e)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// A distilled lesson is keyed by the question it came from, and is found
// for a paraphrase of that question, through the relevance gate, ahead of
// lessons keyed by other kinds of question; the same lesson distilled from
// another question is a near-copy, though the stored code (question and
// text) is far from the lesson's text alone.
func TestDistilledLessonKeyedByQuestion(t *testing.T) {
	ctx := context.Background()
	lib := openLib(t, t.TempDir())
	for _, d := range []struct{ q, rule string }{
		{"How many kilometres is a 26 mile run?", "Miles become kilometres when multiplied by 1.609."},
		{"What do 9 pounds of flour weigh in kilograms?", "Pounds become kilograms when multiplied by 0.4536."},
		{"How hot is 100 degrees Fahrenheit in Celsius?", "Subtract 32 from Fahrenheit, then multiply by 5/9."},
	} {
		if _, _, err := lib.Add(ctx, store.Experience{Text: d.rule, Key: d.q, Domain: "units", Confidence: 0.6}); err != nil {
			t.Fatal(err)
		}
	}
	src := &lessonSource{text: inchRule}
	chat := wireChat(t, src.reply)
	l := NewLearner(FeedbackConfig{Library: lib, Chat: chat})
	const source = "How many centimetres long is a 7 inch pencil?"
	distilOnce(t, l, lib, "t1", source, "key:alice")
	id := store.ExperienceID("units", inchRule)
	e, err := lib.Store().(*store.SQLite).GetExperience(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if e.Key != source {
		t.Fatalf("key %q; want the question %q", e.Key, source)
	}

	v, err := lib.Vector(ctx, "A pencil is 7 inches long: how many centimetres is that?")
	if err != nil {
		t.Fatal(err)
	}
	got, err := lib.Search(ctx, library.Query{Vector: v, K: 1, Domain: "units"})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].ID != id {
		t.Fatalf("for a paraphrase of the source question: %+v; want the lesson, through the gate", got)
	}

	// The same lesson from another question of the kind.
	tv, _ := lib.Vector(ctx, inchRule)
	byCode, err := lib.Search(ctx, library.Query{Vector: tv, K: 1, Domain: "units", MinRelevance: &library.NoGate})
	if err != nil {
		t.Fatal(err)
	}
	if byCode[0].Score >= DefaultDedupeScore {
		t.Fatalf("the lesson's text alone scores %.3f against its keyed code; the check below would prove nothing", byCode[0].Score)
	}
	t.Logf("lesson text against its keyed code: %.3f (dedupe at %.2f)", byCode[0].Score, DefaultDedupeScore)
	src.set(nearInchRule)
	distilOnce(t, l, lib, "t2", "Convert 12 inch(es) to centimetres.", "key:bob")
	if n := len(lessons(t, lib)); n != 4 {
		t.Errorf("%d lessons after a near-copy; want 4 (the near-copy reinforces)", n)
	}
	if tl, _ := lib.Store().(*store.SQLite).Tally(ctx, id); tl != (store.Tally{Up: 1}) {
		t.Errorf("tally %+v; want the distiller's one up-vote", tl)
	}
}

// Reinforcement by a near-copy is a vote, so it survives the rescore that
// the next grade makes; one grader's near-copies reinforce once; and a
// near-copy of a lesson injected into the graded answer adds nothing to
// the grade's own vote.
func TestReinforcementSurvivesRescore(t *testing.T) {
	ctx := context.Background()
	lib := openLib(t, t.TempDir())
	src := &lessonSource{text: inchRule}
	chat := wireChat(t, src.reply)
	l := NewLearner(FeedbackConfig{Library: lib, Chat: chat})
	distilOnce(t, l, lib, "t1", "How many centimetres long is a 7 inch pencil?", "key:alice")
	id := store.ExperienceID("units", inchRule)
	conf := func() float64 {
		e, err := lib.Store().(*store.SQLite).GetExperience(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		return e.Confidence
	}
	prior := conf()
	src.set(nearInchRule)
	distilOnce(t, l, lib, "t2", "Convert 12 inch(es) to centimetres.", "key:bob")
	want, _ := Score(prior, store.Tally{Up: 1}, DefaultMinVotes, DefaultApproval)
	if got := conf(); got != want || got <= prior {
		t.Fatalf("reinforced confidence %v; want %v, above the prior %v", got, want, prior)
	}
	// Bob again, through another question: still one reinforcement.
	distilOnce(t, l, lib, "t3", "What is 5 inches in centimetres?", "key:bob")
	if tl, _ := lib.Store().(*store.SQLite).Tally(ctx, id); tl != (store.Tally{Up: 1}) {
		t.Errorf("after bob's second near-copy: tally %+v; want one up-vote", tl)
	}
	// Carol's grade of an answer the lesson was injected into rescores it:
	// the reinforcement stays counted.
	if err := lib.Store().(*store.SQLite).PutTrace(ctx, store.Trace{ID: "t4", Query: "q", Domain: "units", Model: "fake-1", Answer: "a", ExperienceIDs: []string{id}}); err != nil {
		t.Fatal(err)
	}
	if err := l.Grade(ctx, store.Feedback{TraceID: "t4", Voter: "key:carol", Grade: 0}); err != nil {
		t.Fatal(err)
	}
	if n, err := l.DistillPending(ctx, 8); err != nil || n != 1 {
		t.Fatalf("carol's grade: %d, %v; want it skipped", n, err)
	}
	want, _ = Score(prior, store.Tally{Up: 1, Down: 1}, DefaultMinVotes, DefaultApproval)
	lost, _ := Score(prior, store.Tally{Down: 1}, DefaultMinVotes, DefaultApproval)
	if got := conf(); math.Abs(got-want) > 1e-9 {
		t.Errorf("after a down-vote: confidence %v; want %v (%v would mean the reinforcement was lost)", got, want, lost)
	}
	// Dave grades up an answer the lesson was injected into, and it is
	// distilled again: his grade's vote, and no distiller's vote beside it.
	distilOnce(t, l, lib, "t5", "What is 3 inches in centimetres?", "key:dave", id)
	if tl, _ := lib.Store().(*store.SQLite).Tally(ctx, id); tl != (store.Tally{Up: 2, Down: 1}) {
		t.Errorf("after dave: tally %+v; want bob's distiller vote, carol's down and dave's up", tl)
	}
}

// echoReply is a model that answers the distillation prompt with the
// question it was shown, in quotes, as small models do.
func echoReply(msgs []Message) string {
	_, q, _ := strings.Cut(msgs[len(msgs)-1].Content, "QUESTION:\n")
	q, _, _ = strings.Cut(q, "\n\nANSWER GIVEN:")
	return `"` + q + `"`
}

// Issue 26: a model's echo of the question became an active lesson with
// an empty domain. Through the wire path (an OpenAI-format backend), the
// echo is rejected with its reason: not stored, the feedback skipped for
// good, and the log says why without the question's text. A real lesson
// through the same path keeps the trace's domain.
func TestDistilRejectsAnEcho(t *testing.T) {
	ctx := context.Background()
	lib := openLib(t, t.TempDir())
	st := lib.Store().(*store.SQLite)
	var logs bytes.Buffer
	src := &lessonSource{}
	l := NewLearner(FeedbackConfig{
		Library: lib,
		Chat: wireChat(t, func(msgs []Message) string {
			if src.get() == "" {
				return echoReply(msgs)
			}
			return src.reply(msgs)
		}),
		Logger: slog.New(slog.NewTextHandler(&logs, nil)),
	})
	const question = "How many centimetres long is a 7 inch pencil?"
	if err := st.PutTrace(ctx, store.Trace{ID: "t1", Query: question, Model: "fake-1", Answer: "17.78 cm"}); err != nil {
		t.Fatal(err)
	}
	if err := l.Grade(ctx, store.Feedback{TraceID: "t1", Voter: "key:alice", Grade: 1}); err != nil {
		t.Fatal(err)
	}
	if n, err := l.DistillPending(ctx, 8); err != nil || n != 1 {
		t.Fatalf("distilled %d, %v; want 1 finished", n, err)
	}
	if got := lessons(t, lib); len(got) != 0 {
		t.Fatalf("the echo was stored: %+v", got)
	}
	if pending, err := st.PendingFeedback(ctx, 8); err != nil || len(pending) != 0 {
		t.Errorf("pending after the echo: %+v, %v; want none (skipped, not retried)", pending, err)
	}
	if log := logs.String(); !strings.Contains(log, "distilled lesson rejected") || !strings.Contains(log, "reason=echo") || !strings.Contains(log, "trace_id=t1") {
		t.Errorf("log %q; want the rejection, its reason and trace", log)
	} else if strings.Contains(log, "pencil") {
		t.Errorf("log %q holds the question's text", log)
	}

	src.set(inchRule)
	distilOnce(t, l, lib, "t2", question, "key:bob")
	got := lessons(t, lib)
	if len(got) != 1 || got[0].Text != inchRule || got[0].Domain != "units" || got[0].Key != question {
		t.Fatalf("lessons %+v; want %q in the trace's domain units, keyed by the question", got, inchRule)
	}
}
