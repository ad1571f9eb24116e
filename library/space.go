package library

import (
	"bufio"
	"bytes"
	"context"
	_ "embed"
	"fmt"
	"strings"

	"github.com/dso-proxy/dso/align"
	"github.com/dso-proxy/dso/compress"
	"github.com/dso-proxy/dso/gpuidx"
	"github.com/dso-proxy/dso/store"
)

// Space is the one embedding space a library lives in: every code in the
// index was made from a vector of this space, and every query is embedded
// in it, so that codes of different models are never compared.
type Space struct {
	// Name identifies the space ("hash:2048", "wordvec:glove.txt.gz",
	// "model:nomic-embed-text"); it is recorded with every code.
	Name string
	// Embedder embeds texts in the space; Model is passed to it.
	Embedder Embedder
	Model    string
}

// anchorText is a small corpus of everyday sentences and questions on
// unrelated topics, written for dso. Embedded in a library's space it gives
// the space its centre (sentence embeddings share a large common
// direction that would otherwise waste the sign bits) and a background of
// texts unrelated to any library, against which relevance is judged.
//
//go:embed anchors/anchors.txt
var anchorText []byte

// Anchors returns the anchor corpus.
func Anchors() []string {
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(anchorText))
	for sc.Scan() {
		if t := strings.TrimSpace(sc.Text()); t != "" {
			out = append(out, t)
		}
	}
	return out
}

// embedBatch bounds the texts sent to an embedder in one call.
const embedBatch = 64

// embedAll embeds texts in the space in batches, through the cache.
func (l *Library) embedAll(ctx context.Context, texts []string) ([][]float32, error) {
	out := make([][]float32, len(texts))
	var miss []int
	for i, t := range texts {
		if v, ok := l.cached(t); ok {
			out[i] = v
		} else {
			miss = append(miss, i)
		}
	}
	for start := 0; start < len(miss); start += embedBatch {
		idx := miss[start:min(start+embedBatch, len(miss))]
		batch := make([]string, len(idx))
		for j, i := range idx {
			batch[j] = texts[i]
		}
		vs, err := l.space.Embedder.Embed(ctx, l.space.Model, batch)
		if err != nil {
			return nil, fmt.Errorf("library: embedding in %s: %w", l.space.Name, err)
		}
		if len(vs) != len(batch) {
			return nil, fmt.Errorf("library: embedding in %s: %d vectors for %d texts", l.space.Name, len(vs), len(batch))
		}
		for j, i := range idx {
			if len(vs[j]) == 0 {
				return nil, fmt.Errorf("library: embedding in %s: an empty vector", l.space.Name)
			}
			out[i] = vs[j]
			l.remember(texts[i], vs[j])
		}
	}
	return out, nil
}

// prepared is what a library needs before it can encode: the pipeline
// into the canonical space and the anchors' codes.
type prepared struct {
	pipe    *align.Pipeline
	anchors *gpuidx.CPU
	// anchorVecs are the anchors' canonical vectors, for calibration.
	anchorVecs [][]float32
	dim        int
}

// prepare embeds the anchors in the space, takes the space's centre from
// the store (or stores the anchors' mean as the centre when the space is
// new) and encodes the anchors.
func (l *Library) prepare(ctx context.Context) (*prepared, error) {
	texts := Anchors()
	raw, err := l.embedAll(ctx, texts)
	if err != nil {
		return nil, err
	}
	dim := len(raw[0])
	for _, v := range raw {
		if len(v) != dim {
			return nil, fmt.Errorf("library: space %s gives vectors of %d and %d dims", l.space.Name, dim, len(v))
		}
	}
	ref := raw
	if l.adapter != nil {
		ref = make([][]float32, len(raw))
		for i, v := range raw {
			if ref[i], err = l.adapter.Apply(nil, v); err != nil {
				return nil, fmt.Errorf("library: space %s: adapter: %w", l.space.Name, err)
			}
		}
	}
	sp, err := l.store.GetSpace(ctx, l.space.Name)
	if err != nil {
		if sp, err = l.store.PutSpace(ctx, store.SpaceStats{Name: l.space.Name, Mean: align.Mean(ref)}); err != nil {
			return nil, err
		}
	}
	if len(sp.Mean) != len(ref[0]) {
		return nil, fmt.Errorf("library: space %s was created with %d dims, its embedder now gives %d: name the new model as a new space",
			l.space.Name, len(sp.Mean), len(ref[0]))
	}
	p := &prepared{
		pipe:    &align.Pipeline{Adapter: l.adapter, Mean: sp.Mean, Lift: l.lift},
		anchors: gpuidx.NewCPU(gpuidx.CPUConfig{}),
		dim:     dim,
	}
	p.anchorVecs = make([][]float32, len(raw))
	for i, v := range raw {
		c, err := p.pipe.Canonical(nil, v)
		if err != nil {
			return nil, fmt.Errorf("library: space %s: %w", l.space.Name, err)
		}
		code, err := compress.Encode(c)
		if err != nil {
			return nil, err
		}
		p.anchorVecs[i] = c
		if err := p.anchors.Upsert(anchorID(i), gpuidx.Meta{Confidence: 1}, code); err != nil {
			return nil, err
		}
	}
	return p, nil
}

func anchorID(i int) string { return fmt.Sprintf("anchor-%d", i) }
