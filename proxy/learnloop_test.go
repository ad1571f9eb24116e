package proxy_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dso-proxy/dso/config"
	"github.com/dso-proxy/dso/learn"
	"github.com/dso-proxy/dso/providers"
	"github.com/dso-proxy/dso/proxy"
	"github.com/dso-proxy/dso/store"
)

// factLLM makes a fake OpenAI backend behave like a model that knows only
// what is in its context: it answers "Poseidonia" when some message holds
// that fact, "I do not know" otherwise, and distils a lesson from the
// correct answer when asked with dso's distillation prompt.
func factLLM(t *testing.T, be *backend) {
	textEmbeddings(t, be, nil)
	embed := be.override
	be.setOverride(func(w http.ResponseWriter, r *http.Request, body []byte) bool {
		if embed(w, r, body) {
			return true
		}
		var req struct {
			Messages []struct{ Role, Content string } `json:"messages"`
		}
		json.Unmarshal(body, &req)
		var all strings.Builder
		for _, m := range req.Messages {
			all.WriteString(m.Content + "\n")
		}
		answer := "I do not know."
		switch {
		case strings.Contains(all.String(), "You distil reusable lessons"):
			_, corr, _ := strings.Cut(all.String(), "CORRECT ANSWER:\n")
			answer = "The capital city of Atlantis is " + lastWord(corr) + "."
		case strings.Contains(all.String(), "Poseidonia"):
			answer = "Poseidonia."
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{
			"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "m",
			"choices": []any{map[string]any{"index": 0, "message": map[string]any{"role": "assistant", "content": answer}, "finish_reason": "stop"}},
			"usage":   map[string]int{"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13},
		})
		return true
	})
}

// notifyGrader sends what became of each grade on done once it is
// recorded: header feedback is recorded in the background, and a test
// waits for it there.
type notifyGrader struct {
	proxy.Grader
	done chan<- error
}

func (g notifyGrader) Grade(ctx context.Context, fb store.Feedback) error {
	err := g.Grader.Grade(ctx, fb)
	g.done <- err
	return err
}

func lastWord(s string) string {
	f := strings.Fields(strings.TrimSpace(s))
	if len(f) == 0 {
		return ""
	}
	return strings.Trim(f[len(f)-1], ".")
}

func answerOf(t *testing.T, body []byte) string {
	var r struct {
		Choices []struct {
			Message struct{ Content string } `json:"message"`
		} `json:"choices"`
	}
	if err := json.Unmarshal(body, &r); err != nil || len(r.Choices) == 0 {
		t.Fatalf("not a chat completion: %s", body)
	}
	return r.Choices[0].Message.Content
}

// The closed loop: a wrong answer, a correction by header, a lesson in the
// library, and a paraphrase answered rightly because the lesson was injected.
func TestClosedLoopLearnsFromCorrection(t *testing.T) {
	be := newBackend(t, "openai")
	factLLM(t, be)
	lib := newLibrary(t, t.TempDir(), openaiCfg(be))
	var learner *learn.Learner
	graded := make(chan error, 1)
	fe := newFrontend(t, []config.Backend{openaiCfg(be)}, withRetrieval(lib, 2*time.Second), func(o *proxy.Options, cfgs []config.Backend) {
		router, err := providers.NewRouter(cfgs, nil)
		if err != nil {
			t.Fatal(err)
		}
		learner = learn.NewLearner(learn.FeedbackConfig{
			Library: lib,
			Chat:    learn.Backend{Router: router},
		})
		o.Learner = notifyGrader{learner, graded}
	})
	ctx := context.Background()

	code, hdr, body := post(t, fe.URL+"/v1/chat/completions", chatBody("What is the capital city of Atlantis?"))
	if code != 200 || answerOf(t, body) != "I do not know." {
		t.Fatalf("first answer: %d %s", code, body)
	}
	traceID := hdr.Get(proxy.HeaderTraceID)

	// The grade and correction come by header on a later, unrelated request.
	code, hdr, _ = post(t, fe.URL+"/v1/chat/completions", chatBody("Thanks. Another question: how tall is Mount Olympus?"),
		proxy.HeaderFeedback, traceID+"=0",
		proxy.HeaderCorrection, traceID+"="+url.QueryEscape("The capital of Atlantis is Poseidonia"))
	if code != 200 || hdr.Get(proxy.HeaderFeedbackAccepted) != "1" || hdr.Get(proxy.HeaderFeedbackRejected) != "" {
		t.Fatalf("feedback: %d accepted %q rejected %q", code, hdr.Get(proxy.HeaderFeedbackAccepted), hdr.Get(proxy.HeaderFeedbackRejected))
	}
	// Header feedback is recorded in the background.
	if err := <-graded; err != nil {
		t.Fatalf("recording the grade: %v", err)
	}
	// The distillation worker's step, run here so the test needs no waiting.
	if n, err := learner.DistillPending(ctx, 8); err != nil || n != 1 {
		t.Fatalf("distilled %d: %v", n, err)
	}
	if lib.Len() != 1 {
		t.Fatalf("library holds %d; want the lesson", lib.Len())
	}

	code, hdr, body = post(t, fe.URL+"/v1/chat/completions", chatBody("Which city is the capital of Atlantis?"))
	if code != 200 || answerOf(t, body) != "Poseidonia." {
		t.Fatalf("paraphrase answered %q (%d), experiences %q", body, code, hdr.Get(proxy.HeaderExperiences))
	}
	if hdr.Get(proxy.HeaderExperiences) == "" {
		t.Error("the lesson is not named in X-DSO-Experiences")
	}
}

func TestFeedbackAPI(t *testing.T) {
	be := newBackend(t, "openai")
	factLLM(t, be)
	lib := newLibrary(t, t.TempDir(), openaiCfg(be))
	fe := newFrontend(t, []config.Backend{openaiCfg(be)}, withRetrieval(lib, 2*time.Second), func(o *proxy.Options, _ []config.Backend) {
		o.Learner = learn.NewLearner(learn.FeedbackConfig{Library: lib})
	})
	_, hdr, _ := post(t, fe.URL+"/v1/chat/completions", chatBody("What is the capital city of Atlantis?"))
	tr := hdr.Get(proxy.HeaderTraceID)
	for _, tc := range []struct {
		body string
		want int
	}{
		{`{"trace_id":"` + tr + `","grade":0.9,"comment":"good"}`, 200},
		{`{"trace_id":"` + tr + `","grade":"down"}`, 200},
		{`{"trace_id":"` + tr + `","grade":"up","correction":"Poseidonia"}`, 200},
		{`{"trace_id":"tr_unknown","grade":1}`, 400},
		{`{"trace_id":"` + tr + `","grade":1.5}`, 400},
		{`{"trace_id":"` + tr + `","grade":"meh"}`, 400},
		{`{"trace_id":"` + tr + `"}`, 400},
		{`{"grade":1}`, 400},
		{`{"trace_id":`, 400},
	} {
		code, _, body := post(t, fe.URL+"/v1/feedback", tc.body)
		if code != tc.want {
			t.Errorf("%s: %d %s; want %d", tc.body, code, body, tc.want)
		}
		if code == 400 {
			errorMessage(t, "openai", body)
		}
	}
	// Malformed header feedback: the chat still succeeds, and says why.
	code, hdr, _ := post(t, fe.URL+"/api/chat", `{"model":"m","stream":false,"messages":[{"role":"user","content":"hi"}]}`,
		proxy.HeaderFeedback, "garbage; tr_unknown=1; "+tr+"=7; "+tr+"=up")
	if code != 200 {
		t.Fatalf("chat with bad feedback: %d", code)
	}
	rej := hdr.Get(proxy.HeaderFeedbackRejected)
	if hdr.Get(proxy.HeaderFeedbackAccepted) != "1" || !strings.Contains(rej, "garbage") || !strings.Contains(rej, "unknown trace") || !strings.Contains(rej, "7") {
		t.Errorf("accepted %q, rejected %q", hdr.Get(proxy.HeaderFeedbackAccepted), rej)
	}
}

// Issue: a request that outlives Close (a forced shutdown) must not panic
// on the closed trace queue; its trace is simply not stored.
func TestTraceAfterCloseDoesNotPanic(t *testing.T) {
	be := newBackend(t, "openai")
	textEmbeddings(t, be, nil)
	lib := newLibrary(t, t.TempDir(), openaiCfg(be))
	var logs syncBuffer
	fe := newFrontend(t, []config.Backend{openaiCfg(be)}, withRetrieval(lib, time.Second), func(o *proxy.Options, _ []config.Backend) {
		o.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	})
	fe.proxy.Close()
	code, hdr, _ := post(t, fe.URL+"/v1/chat/completions", chatBody("a question after close"))
	if code != 200 {
		t.Fatalf("status %d", code)
	}
	if _, err := lib.Store().(*store.SQLite).GetTrace(context.Background(), hdr.Get(proxy.HeaderTraceID)); err == nil {
		t.Error("a trace was stored after Close")
	}
	if strings.Contains(logs.String(), "panic") {
		t.Errorf("the request panicked: %s", logs.String())
	}
}

// syncBuffer is a bytes.Buffer safe for a logger and a test to share.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
