package main

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	oai "github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/responses"
)

// A conversation begun on one replica continues on the other at once:
// the response is in the shared store before its answer is sent, so
// previous_response_id and GET need no lag.
func TestReplicasShareResponses(t *testing.T) {
	r := startReplicas(t)
	client := func(n int) *oai.Client {
		c := oai.NewClient(option.WithBaseURL(r.base[n]+"/v1"), option.WithAPIKey(clientKey(0)), option.WithMaxRetries(0), option.WithHTTPClient(r.client))
		return &c
	}
	ctx := context.Background()
	first, err := client(0).Responses.New(ctx, responses.ResponseNewParams{
		Model: "m", Input: responses.ResponseNewParamsInputUnion{OfString: oai.String("The first question")},
	})
	if err != nil {
		t.Fatal(err)
	}
	got, err := client(1).Responses.Get(ctx, first.ID, responses.ResponseGetParams{})
	if err != nil || got.OutputText() != "ok" {
		t.Fatalf("GET on the other replica: %v, %v", got, err)
	}
	_, err = client(1).Responses.New(ctx, responses.ResponseNewParams{
		Model: "m", PreviousResponseID: oai.String(first.ID),
		Input: responses.ResponseNewParamsInputUnion{OfString: oai.String("The second question")},
	})
	if err != nil {
		t.Fatal(err)
	}
	body := r.be.lastBody()
	i, j, k := strings.Index(body, "The first question"), strings.Index(body, `"content":"ok"`), strings.Index(body, "The second question")
	if i < 0 || j < i || k < j {
		t.Errorf("the second replica sent %s; want the first question, its answer, then the second", body)
	}
}

// A conversation's notes stay put across replicas: the turn one replica
// injected a lesson into comes back, on the other, with the lesson where
// it was.
func TestReplicasShareConversationNotes(t *testing.T) {
	r := startReplicas(t)
	lesson := "When comparing sourdough starter feeding schedules, feed twice a day at room temperature."
	q := "Please tell me, in a few short sentences, how to plan a sourdough starter feeding schedule?"
	id := r.add(0, lesson)
	poll(t, wait, "both replicas inject the lesson", func() bool { return r.injects(0, id, q) && r.injects(1, id, q) })
	turn := func(n int, msgs []map[string]string) string {
		t.Helper()
		b, _ := json.Marshal(map[string]any{"model": "m", "messages": msgs})
		code, _, body, err := r.do("POST", r.base[n]+"/v1/chat/completions", 0, string(b))
		if err != nil || code != http.StatusOK {
			t.Fatalf("chat on replica %d: %d %s %v", n, code, body, err)
		}
		return r.be.lastBody()
	}
	first := []map[string]string{{"role": "system", "content": "Be brief."}, {"role": "user", "content": q}}
	if sent := turn(0, first); !strings.Contains(sent, "feed twice a day") {
		t.Fatalf("replica 0 did not inject the lesson: %s", sent)
	}
	next := append(first, map[string]string{"role": "assistant", "content": "ok"},
		map[string]string{"role": "user", "content": "Unrelated now: which colour of paint should a small north-facing bedroom have?"})
	var got struct {
		Messages []struct{ Role, Content string }
	}
	sent := turn(1, next)
	if err := json.Unmarshal([]byte(sent), &got); err != nil || len(got.Messages) != 4 {
		t.Fatalf("replica 1 sent %s: %v", sent, err)
	}
	if !strings.Contains(got.Messages[1].Content, "feed twice a day") || !strings.HasPrefix(got.Messages[1].Content, q+"\n\n") {
		t.Errorf("replica 1 did not put the first turn's notes back: %q", got.Messages[1].Content)
	}
}
