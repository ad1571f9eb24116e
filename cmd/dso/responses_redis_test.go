package main

import (
	"context"
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
