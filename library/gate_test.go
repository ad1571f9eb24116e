package library_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/dso-proxy/dso/internal/shareddata"
	"github.com/dso-proxy/dso/library"
	"github.com/dso-proxy/dso/providers"
	"github.com/dso-proxy/dso/store"
)

// gateCase is a library of real sentences and the questions asked of it,
// split as dso eval gate splits pairs: the first sentence of every other
// paraphrase pair (score >= 4) is stored and the second asked (a
// positive: that lesson should be injected); the other paraphrase pairs
// are asked with neither sentence stored (a negative: a question of the
// library's own genre that it holds no answer to); and both sentences of
// the other pairs are stored, as the rest of the library, except where
// they are a question or a held-out counterpart.
type gateCase struct {
	library  []string
	pos, neg []string
	answer   map[string]string // positive → its stored lesson
}

func newGateCase(ps []shareddata.Pair) gateCase {
	c := gateCase{answer: map[string]string{}}
	stored, exclude := map[string]bool{}, map[string]bool{}
	add := func(s string) {
		if !stored[s] && !exclude[s] {
			stored[s] = true
			c.library = append(c.library, s)
		}
	}
	var lessons []string
	for k, p := range paraphrases(ps) {
		exclude[p.S2] = true
		if k%2 == 0 {
			c.pos = append(c.pos, p.S2)
			c.answer[p.S2] = p.S1
			lessons = append(lessons, p.S1)
		} else {
			c.neg = append(c.neg, p.S2)
			exclude[p.S1] = true
		}
	}
	for _, s := range lessons {
		add(s)
	}
	for _, p := range ps {
		if p.Score < 4 {
			add(p.S1)
			add(p.S2)
		}
	}
	return c
}

func paraphrases(ps []shareddata.Pair) []shareddata.Pair {
	var out []shareddata.Pair
	for _, p := range ps {
		if p.Score >= 4 {
			out = append(out, p)
		}
	}
	return out
}

// rates asks every question at the gate min (nil: the calibrated gate)
// and returns the share of positives whose lesson is injected and the
// share of negatives that get anything injected.
func (c gateCase) rates(t *testing.T, lib *library.Library, min *float32) (hit, falseInjection float64) {
	t.Helper()
	ask := func(q string) []library.Result {
		res, err := lib.Search(context.Background(), library.Query{Vector: vector(t, lib, q), MinRelevance: min})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	n := 0
	for _, q := range c.pos {
		for _, r := range ask(q) {
			if r.Text == c.answer[q] {
				n++
				break
			}
		}
	}
	hit = float64(n) / float64(len(c.pos))
	n = 0
	for _, q := range c.neg {
		if len(ask(q)) > 0 {
			n++
		}
	}
	return hit, float64(n) / float64(len(c.neg))
}

// A library of real sentences calibrates its gate on its own texts, and
// the gate injects paraphrases of its lessons and keeps out questions of
// the same genre that it holds no answer to. The rows are STS-B train's
// first 600 news pairs: the calibration defaults were chosen on dev, so
// nothing was tuned on them. The bars are dev's: the hit rate TestEvalGate
// holds the served gate to (0.70) less 0.10 for the spread of a gate
// calibrated on a random sample of 256 (hit 0.68 to 0.86 over 40
// calibrations of these libraries), and a false injection above the 95%
// upper bounds of dev's news slice (0.15 hash, 0.12 GloVe; measured here:
// at most 0.06).
//
// Captions and forums are not asserted: in captions a held-out question
// is often a rewording of a sentence stored from another pair (several
// pairs describe one video), so it is no unanswered question; see dso
// eval gate --slices for their figures.
func TestGateCalibratesOnLibrary(t *testing.T) {
	rows := shareddata.STSB(t, "train")[2450:3050] // train: captions 0-1999, forums 2000-2449, news 2450-
	c := newGateCase(rows)
	if len(c.library) <= library.DefaultGateSample || len(c.pos) < 50 || len(c.neg) < 50 {
		t.Fatalf("%d experiences, %d+%d questions: want more than %d, and 50+50", len(c.library), len(c.pos), len(c.neg), library.DefaultGateSample)
	}
	for _, tc := range []struct {
		name string
		sp   func(t *testing.T) library.Space
		// raised: the library's texts set the gate, above the floor
		// (GloVe's stand out little more than the anchors do: 0.015
		// to 0.04 above it).
		raised bool
	}{
		{"hash", func(*testing.T) library.Space { // serve's default space
			return library.Space{Name: "hash:2048", Model: "hash:2048", Embedder: library.EmbedFunc(providers.NewHashEmbedder(2048, 1).Embed)}
		}, true},
		{"glove", func(t *testing.T) library.Space {
			path := shareddata.GloVe(t)
			wv, err := providers.LoadWordVectors(path, providers.WordVectorOptions{SIF: 1e-3}) // as serve's wordvec:FILE
			if err != nil {
				t.Fatal(err)
			}
			name := "wordvec:" + filepath.Base(path)
			return library.Space{Name: name, Model: name, Embedder: library.EmbedFunc(wv.Embed)}
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lib, _ := openSpace(t, t.TempDir(), tc.sp(t))
			es := make([]store.Experience, len(c.library))
			for i, text := range c.library {
				es[i] = store.Experience{Text: text, Domain: "stsb", Confidence: 1}
			}
			if _, _, err := lib.AddMany(context.Background(), es); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "calibration", func() bool { g, ok := lib.Gate(); return ok && g.Size == lib.Len() })
			g, _ := lib.Gate()
			hit, fi := c.rates(t, lib, nil)
			fhit, ffi := c.rates(t, lib, &g.Floor)
			t.Logf("%d experiences, %d+%d questions; gate %.3f (floor %.3f, %d sampled): hit %.3f, false injection %.3f; at the floor: %.3f, %.3f",
				lib.Len(), len(c.pos), len(c.neg), g.Value, g.Floor, g.Sampled, hit, fi, fhit, ffi)
			if g.Size < 32 || g.Sampled != library.DefaultGateSample {
				t.Fatalf("gate %+v: want it calibrated on a sample of %d experiences", g, library.DefaultGateSample)
			}
			if tc.raised && g.Value <= g.Floor {
				t.Errorf("gate %.3f: the library's texts did not raise it above the floor %.3f", g.Value, g.Floor)
			}
			if hit < 0.60 {
				t.Errorf("hit %.3f: want at least 0.60 of the paraphrases of stored lessons injected", hit)
			}
			if fi > 0.20 {
				t.Errorf("false injection %.3f: want at most 0.20 of the unanswered questions to get notes", fi)
			}
		})
	}
}
