package learn

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/dso-proxy/dso/internal/shareddata"
	"github.com/dso-proxy/dso/library"
	"github.com/dso-proxy/dso/providers"
	"github.com/dso-proxy/dso/store"
)

// A kind of question, its rule, and three questions: the one the rule was
// learned from, a paraphrase of it (same numbers, other words) and an
// unseen question of the kind (other words and numbers). The rules share
// few words with their questions, as general lessons do.
type keyedKind struct {
	rule, source, paraphrase, unseen string
}

var keyedKinds = []keyedKind{
	{"To convert inches to centimetres, multiply the number of inches by 2.54.",
		"Convert 7 inches to centimetres.", "How many centimetres are 7 inches?", "A parcel measures 41 inch units. Express that in centimetres, please."},
	{"A year divisible by 4 is a leap year unless it is divisible by 100 but not by 400.",
		"Was 1900 a leap year?", "Did February 1900 have 29 days?", "Is 2100 going to have a February 29th?"},
	{"Count the days forward modulo 7 to find the weekday.",
		"If today is Monday, what day is it in 10 days?", "Ten days after a Monday, which weekday is it?", "What weekday comes 23 days after a Friday?"},
	{"Percentage change is the difference divided by the original value, times 100.",
		"A price rose from 80 to 100 dollars; by what percent did it increase?", "By how many percent did the cost go up when it moved from 80 dollars to 100?", "Rent went from 1200 to 1500 a month. What is the increase in percent?"},
	{"Subtract 32 from Fahrenheit, then multiply by 5/9 to get Celsius.",
		"What is 100 degrees Fahrenheit in Celsius?", "How warm is 100 degrees Fahrenheit on the Celsius scale?", "The oven is set to 350 F; what is that in C?"},
	{"Simple interest equals principal times rate times years.",
		"How much interest does 1000 dollars earn at 5% for 3 years, simple interest?", "What simple interest accrues on a 1000 dollar deposit over 3 years at 5 percent?", "A loan of 2500 at 4% per year for 2 years: how much simple interest is owed?"},
	{"Time taken is the distance divided by the speed.",
		"How long does a 120 km trip take at 60 km per hour?", "Driving 120 kilometres at 60 km per hour, how many hours will it take?", "A cyclist rides 45 miles at 15 mph. How many hours is the ride?"},
	{"A triangle's area is half its base times its height.",
		"What is the area of a triangle with base 10 and height 6?", "A triangle has a 10 cm base and is 6 cm tall; what is its area?", "Find the area of a triangular sail 4 m wide at the bottom and 9 m high."},
	{"The mean is the sum of the values divided by how many there are.",
		"What is the average of 4, 8 and 15?", "Find the mean of the numbers 4, 8, 15.", "Five test scores were 70, 85, 90, 60 and 95; what was the mean score?"},
	{"Divide minutes by 60 to get hours.",
		"How many hours are 150 minutes?", "150 minutes is how many hours?", "A film runs 135 minutes. How long is it in hours?"},
}

// keyedFigures is how one way of coding lessons retrieves for one set of
// questions: how often the right lesson ranks first, passes the gate, and
// its mean score and margin over the best wrong lesson.
type keyedFigures struct {
	top1, passed     int
	score, margin, n float64
}

func (f keyedFigures) String() string {
	return fmt.Sprintf("top-1 %2d/%d, gate %2d/%d, score %.3f, margin %+.3f", f.top1, int(f.n), f.passed, int(f.n), f.score/f.n, f.margin/f.n)
}

// measureKeyed codes each kind's lesson by code(kind) in a library of its
// own and retrieves for each question of questions(kind).
func measureKeyed(t *testing.T, emb library.Embedder, code func(keyedKind) []store.Experience, question func(keyedKind) string) keyedFigures {
	t.Helper()
	ctx := context.Background()
	st, err := store.OpenDir(ctx, t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	lib, err := library.New(ctx, library.Config{Store: st, CacheSize: -1, Space: library.Space{Name: "m", Embedder: emb}})
	if err != nil {
		t.Fatal(err)
	}
	defer lib.Close()
	kindOf := map[string]int{}
	for i, k := range keyedKinds {
		for _, e := range code(k) {
			e.Domain, e.Confidence = "d", 0.6
			got, _, err := lib.Add(ctx, e)
			if err != nil {
				t.Fatal(err)
			}
			kindOf[got.ID] = i
		}
	}
	var f keyedFigures
	for i, k := range keyedKinds {
		v, err := lib.Vector(ctx, question(k))
		if err != nil {
			t.Fatal(err)
		}
		res, err := lib.Search(ctx, library.Query{Vector: v, K: len(kindOf), Domain: "d", IncludeGated: true})
		if err != nil {
			t.Fatal(err)
		}
		right, wrong, passed := float32(-1), float32(-1), false
		for _, r := range res {
			if kindOf[r.ID] != i {
				wrong = max(wrong, r.Score)
				continue
			}
			right = max(right, r.Score)
			passed = passed || r.Passed
		}
		if len(res) > 0 && kindOf[res[0].ID] == i {
			f.top1++
		}
		if passed {
			f.passed++
		}
		f.score += float64(right)
		f.margin += float64(right - wrong)
		f.n++
	}
	return f
}

// How a lesson coded by its question and text (today's code) retrieves,
// against its text alone, its question alone and both as two codes, for a paraphrase of the
// question it came from and for an unseen question of its kind, with the
// hash embedder and (where the shared data is) GloVe. The figures are
// logged (go test ./learn/ -run TestKeyedRetrievalFigures -v); the test
// holds the keyed code to no worse than the text alone, in rank and at the
// gate, for both sets of questions.
func TestKeyedRetrievalFigures(t *testing.T) {
	embedders := []struct {
		name string
		emb  func(t *testing.T) library.Embedder
	}{
		{"hash:512", func(*testing.T) library.Embedder { return library.EmbedFunc(providers.NewHashEmbedder(512, 3).Embed) }},
		{"glove-100d", func(t *testing.T) library.Embedder {
			if testing.Short() {
				t.Skip("loading GloVe: not in -short")
			}
			wv, err := providers.LoadWordVectors(shareddata.GloVe(t), providers.WordVectorOptions{SIF: 1e-3})
			if err != nil {
				t.Fatal(err)
			}
			return library.EmbedFunc(wv.Embed)
		}},
	}
	codes := []struct {
		name string
		code func(keyedKind) []store.Experience
	}{
		{"text alone", func(k keyedKind) []store.Experience { return []store.Experience{{Text: k.rule}} }},
		{"question+text", func(k keyedKind) []store.Experience { return []store.Experience{{Text: k.rule, Key: k.source}} }},
		// The question alone, as a second code would be: stored as the
		// text, since the library codes nothing else.
		{"question alone", func(k keyedKind) []store.Experience { return []store.Experience{{Text: k.source}} }},
		// Two codes, text and question, the better counting: two records
		// per lesson, so the gate's background is a twice larger library's.
		{"both codes", func(k keyedKind) []store.Experience { return []store.Experience{{Text: k.rule}, {Text: k.source}} }},
	}
	questions := []struct {
		name string
		of   func(keyedKind) string
	}{
		{"paraphrase", func(k keyedKind) string { return k.paraphrase }},
		{"unseen", func(k keyedKind) string { return k.unseen }},
	}
	for _, e := range embedders {
		t.Run(e.name, func(t *testing.T) {
			emb := e.emb(t)
			var table strings.Builder
			got := map[string]keyedFigures{}
			for _, c := range codes {
				for _, q := range questions {
					f := measureKeyed(t, emb, c.code, q.of)
					got[c.name+"/"+q.name] = f
					fmt.Fprintf(&table, "\n%-15s %-10s %s", c.name, q.name, f)
				}
			}
			t.Logf("%s, %d kinds:%s", e.name, len(keyedKinds), table.String())
			for _, q := range questions {
				k, x := got["question+text/"+q.name], got["text alone/"+q.name]
				if k.top1 < x.top1 || k.passed < x.passed {
					t.Errorf("%s: keyed %v; text alone %v", q.name, k, x)
				}
			}
		})
	}
}
