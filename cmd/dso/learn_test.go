package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/dso-proxy/dso/learn"
)

// fakeProjectLLM speaks the OpenAI chat format. A project's code is its
// name in capitals followed by -7, and it can say so only when a message
// carries that rule (never a code: the held-out projects are not trained
// on); otherwise one sampled answer in five (temperature > 0) recalls it.
// Asked for the group advantage, it adds the rule.
type fakeProjectLLM struct {
	mu       sync.Mutex
	counts   map[string]int
	requests int
}

var learnProjectRE = regexp.MustCompile(`project (\w+)`)

const projectRule = "A project's code is the project's name in capital letters followed by -7."

func (f *fakeProjectLLM) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Model       string          `json:"model"`
		Messages    []learn.Message `json:"messages"`
		Temperature float64         `json:"temperature"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil || len(req.Messages) == 0 {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	last := req.Messages[len(req.Messages)-1].Content
	if req.Messages[0].Content == learn.MergePrompt { // the proposals are one rule
		f.mu.Lock()
		f.requests++
		f.mu.Unlock()
		op, _ := json.Marshal(map[string]any{"operations": []learn.Op{{Kind: learn.OpAdd, Text: projectRule}}})
		writeChat(w, req.Model, string(op))
		return
	}
	name := learnProjectRE.FindStringSubmatch(last)[1]
	code := strings.ToUpper(name) + "-7"
	f.mu.Lock()
	defer f.mu.Unlock()
	f.requests++
	answer := "I guess " + strings.ToUpper(name) + "-0."
	switch {
	case req.Messages[0].Content == learn.AdvantagePrompt:
		op, _ := json.Marshal(map[string]any{"operations": []learn.Op{{Kind: learn.OpAdd, Text: projectRule}}})
		answer = string(op)
	case strings.Contains(req.Messages[0].Content, projectRule):
		answer = "It is " + code + "."
	case req.Temperature > 0:
		f.counts[name]++
		if f.counts[name]%5 == 1 {
			answer = "It is " + code + "."
		}
	}
	writeChat(w, req.Model, answer)
}

func writeChat(w http.ResponseWriter, model, answer string) {
	json.NewEncoder(w).Encode(map[string]any{
		"id": "x", "object": "chat.completion", "model": model,
		"choices": []any{map[string]any{"index": 0, "message": map[string]string{"role": "assistant", "content": answer}, "finish_reason": "stop"}},
		"usage":   map[string]int{"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
	})
}

func TestLearnCommand(t *testing.T) {
	fake := &fakeProjectLLM{counts: map[string]int{}}
	srv := httptest.NewServer(fake)
	defer srv.Close()
	dir := t.TempDir()
	var train, held strings.Builder
	for _, n := range []string{"Red", "Green", "Blue", "Cyan", "Magenta", "Yellow"} {
		fmt.Fprintf(&train, `{"query":"What is the code of project %s?","ground_truth":"%s-7"}`+"\n", n, strings.ToUpper(n))
	}
	for _, n := range []string{"Orange", "Purple"} { // projects never trained on
		fmt.Fprintf(&held, `{"query":"Tell me the code of project %s, please.","ground_truth":"%s-7"}`+"\n", n, strings.ToUpper(n))
	}
	trainFile, heldFile := filepath.Join(dir, "train.jsonl"), filepath.Join(dir, "held.jsonl")
	os.WriteFile(trainFile, []byte(train.String()), 0o600)
	os.WriteFile(heldFile, []byte(held.String()), 0o600)

	var out, errb bytes.Buffer
	args := []string{"learn", "--dataset", trainFile, "--heldout", heldFile, "--model", "fake-1",
		"--backend", "openai:" + srv.URL, "--embedder", "hash:256", "--data", filepath.Join(dir, "data"),
		"--batch", "3", "--domain", "projects", "--checkpoint", filepath.Join(dir, "cp.json")}
	if code := run(context.Background(), args, &out, &errb); code != 0 {
		t.Fatalf("learn: %d\n%s", code, errb.String())
	}
	var rep learn.Report
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("report: %v\n%s", err, out.String())
	}
	var means, held2 []float64
	for _, e := range rep.Epochs {
		means = append(means, e.MeanGrade)
		held2 = append(held2, *e.HeldoutAccuracy)
	}
	// Epoch 1: the first batch recalls one answer in five (0.2), the
	// second has the rule (1). The held-out projects, never trained on, go
	// from the baseline 0 to 1 by the rule alone.
	if fmt.Sprint(means) != "[0.6 1 1]" || fmt.Sprint(held2) != "[1 1 1]" || *rep.HeldoutBaseline != 0 {
		t.Errorf("mean grades %v, held-out %v (baseline %v)\n%s", means, held2, *rep.HeldoutBaseline, out.String())
	}
	// One rule learned: proposed by each group of the first batch, merged
	// into one; the second batch has it already.
	if rep.LibrarySize != 1 || rep.Ops != (learn.OpCounts{Add: 1}) || rep.Tokens.Total != 5*fake.requests {
		t.Errorf("library %d, ops %+v, tokens %+v for %d requests", rep.LibrarySize, rep.Ops, rep.Tokens, fake.requests)
	}
	if lines := strings.Count(errb.String(), "\nepoch ") + 1; lines != 6 || !strings.Contains(errb.String(), "held-out accuracy (2 items): baseline 0.000, epoch 1 1.000 (+1.000)") || !strings.Contains(errb.String(), "epoch 1/3: 3/6 items, batch mean grade 0.200, ops +1") {
		t.Errorf("progress:\n%s", errb.String())
	}

	// The finished run, resumed, only reports.
	requests := fake.requests
	out.Reset()
	if code := run(context.Background(), args, &out, &errb); code != 0 || fake.requests != requests || !strings.Contains(out.String(), `"resumed": true`) {
		t.Errorf("rerun: %d, %d more requests\n%s", code, fake.requests-requests, out.String())
	}
}

func TestLearnUsage(t *testing.T) {
	for _, args := range [][]string{{"learn"}, {"learn", "--dataset", "x.jsonl"}, {"learn", "--bogus"}} {
		var out, errb bytes.Buffer
		if code := run(context.Background(), args, &out, &errb); code != 2 {
			t.Errorf("%v: exit %d; want 2", args, code)
		}
	}
	var out, errb bytes.Buffer
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.jsonl")
	os.WriteFile(bad, []byte("{\"query\":\"q\"}\n"), 0o600)
	args := []string{"learn", "--dataset", bad, "--model", "m", "--embedder", "hash:64", "--data", dir}
	if code := run(context.Background(), args, &out, &errb); code != 1 || !strings.Contains(errb.String(), "line 1: query and ground_truth are required") {
		t.Errorf("bad dataset: %d %s", code, errb.String())
	}
}
