package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/dso-proxy/dso/align"
	"github.com/dso-proxy/dso/config"
	"github.com/dso-proxy/dso/gpuidx"
	"github.com/dso-proxy/dso/library"
	"github.com/dso-proxy/dso/providers"
	"github.com/dso-proxy/dso/store"
)

func init() {
	commands["eval retrieval"] = command{
		summary: "measure float vs 1-bit retrieval on sentence pairs, through the library code serve runs",
		args:    "--vectors FILE --pairs FILE [--query-model hash[:DIM]|vectors:FILE --anchors FILE] [flags]",
		about:   evalRetrievalAbout,
		run:     evalRetrieval,
	}
}

// liftSeed is the lift seed dso bench uses for its synthetic codes (eval
// retrieval uses the library's).
const liftSeed = 1

// embedder is what the measuring commands need from a local embedder.
type embedder interface {
	Embed(ctx context.Context, texts []string) ([][]float32, error)
	Dim() int
}

// openEmbedder builds a local embedder from a spec: "hash" or "hash:DIM"
// (hashed word + character n-grams, default 2048 dims) or "vectors:FILE" (a
// GloVe/word2vec text file, SIF-weighted).
func openEmbedder(spec string) (embedder, error) {
	kind, arg, _ := strings.Cut(spec, ":")
	switch kind {
	case "hash":
		dim := 2048
		if arg != "" {
			d, err := strconv.Atoi(arg)
			if err != nil || d < 1 || d > 1<<16 {
				return nil, fmt.Errorf("embedder %q: bad dimension", spec)
			}
			dim = d
		}
		return providers.NewHashEmbedder(dim, 1), nil
	case "vectors":
		if arg == "" {
			return nil, fmt.Errorf("embedder %q: missing file", spec)
		}
		return providers.LoadWordVectors(arg, providers.WordVectorOptions{SIF: 1e-3})
	}
	return nil, fmt.Errorf("embedder %q: want hash[:DIM] or vectors:FILE", spec)
}

// evalConfig is one retrieval evaluation.
type evalConfig struct {
	// Vectors is the index model's word-vector file: the library lives in
	// the space "wordvec:Vectors", as serve's does with that embedder.
	Vectors  string
	Query    embedder // a different query model; nil for none
	Pairs    []pair
	Anchors  []string // anchor texts for the cross-model adapter
	Lambda   float64  // ridge regulariser; 0 selects one on held-out anchors
	Method   align.Method
	MinScore float64 // pairs at or above are (experience, query) pairs; 0 means 4
}

// accuracy is the share of queries whose answer ranks first / in the top 10.
type accuracy struct {
	Top1  float64 `json:"top1"`
	Top10 float64 `json:"top10"`
}

// gateFigures is the relevance gate the library calibrated on the corpus,
// and how often a query's answer is found and clears it (would be
// injected).
type gateFigures struct {
	Value   float32 `json:"value"`
	Floor   float32 `json:"floor"`
	Sampled int     `json:"sampled"`
	// Passed: the answer ranks first / in the top 10 and clears the gate.
	Passed             accuracy  `json:"passed"`
	CrossAdapterPassed *accuracy `json:"cross_adapter_passed,omitempty"`
}

type evalResult struct {
	// Space and Seed are the library's: its embedding space and lift seed.
	Space        string      `json:"space"`
	Seed         uint64      `json:"seed"`
	Corpus       int         `json:"corpus"`
	Queries      int         `json:"queries"`
	Float        accuracy    `json:"float"`
	Bits         accuracy    `json:"bits"`
	BitsRerank   accuracy    `json:"bits_rerank"`
	Gate         gateFigures `json:"gate"`
	CrossAdapter *accuracy   `json:"cross_adapter,omitempty"`
	CrossNaive   *accuracy   `json:"cross_naive,omitempty"`
	// Ratios are top-10 accuracies relative to float (bits, bits_rerank)
	// and to same-model bits_rerank (cross_*), the configuration served.
	Ratios map[string]float64 `json:"ratios_top10"`
	Lambda float64            `json:"lambda,omitempty"`
}

const evalRetrievalAbout = `Measures retrieval through the library code dso serve runs: a library in the
space wordvec:FILE (as retrieval.embedder: wordvec:FILE would give serve),
with the default seed, in a fresh temporary store. It stores sentence1 of
every pair scoring 4 or more, and the other sentences as distractors, and
asks sentence2 of those pairs.

  float        exact cosine of the library's centred vectors
  bits         full Hamming ranking of the library's codes
  bits_rerank  the library's search, as served (re-rank depth included)
  gate         the gate the library calibrated on the corpus, and the share
               of questions whose answer ranks first / in the top 10 and
               clears it
  cross_*      with --query-model: questions embedded by another model,
               mapped into the library's space by an adapter fitted on
               --anchors (or padded/truncated), then searched as served

The JSON report goes to standard output.`

func evalRetrieval(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("eval retrieval")
	vectors := fs.String("vectors", "", "word-vector `FILE` of the index model (GloVe text, plain or gzip)")
	pairsPath := fs.String("pairs", "", "sentence pairs CSV `FILE`: sentence1,sentence2,score")
	queryModel := fs.String("query-model", "", "a different query model: hash[:DIM] or vectors:FILE")
	anchorsPath := fs.String("anchors", "", "anchor texts `FILE` for the cross-model adapter (text lines or pairs CSV); never the evaluated pairs")
	method := fs.String("method", "ridge", "adapter method: ridge or procrustes")
	lambda := fs.Float64("lambda", 0, "ridge regulariser (relative); 0 selects one on held-out anchors")
	if err := parseFlags(fs, args, stdout, stderr, "vectors", "pairs"); err != nil {
		return err
	}
	if (*queryModel != "") != (*anchorsPath != "") {
		return usageError(stderr, fs.Name(), "--query-model and --anchors go together")
	}
	ps, err := readPairs(*pairsPath)
	if err != nil {
		return err
	}
	cfg := evalConfig{Vectors: *vectors, Pairs: ps, Lambda: *lambda, Method: align.Method(*method)}
	if *queryModel != "" {
		if cfg.Query, err = openEmbedder(*queryModel); err != nil {
			return err
		}
		if cfg.Anchors, err = readAnchors(*anchorsPath); err != nil {
			return err
		}
	}
	res, err := runEval(ctx, cfg)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(res)
}

// evalLibraryConfig is the configuration the evaluation's library is
// opened with: serve's defaults, with retrieval.embedder wordvec:vectors.
func evalLibraryConfig(vectors string) config.Config {
	cfg := config.Default()
	cfg.Retrieval.Embedder = "wordvec:" + vectors
	return cfg
}

// openEvalLibrary opens a library as serve does (openLibrary, the
// configured index kind) over a fresh store in a temporary directory. The
// returned func closes them and removes the directory.
func openEvalLibrary(ctx context.Context, cfg config.Config) (*library.Library, gpuidx.Index, func(), error) {
	dir, err := os.MkdirTemp("", "dso-eval-retrieval-")
	if err != nil {
		return nil, nil, nil, err
	}
	st, err := store.OpenDir(ctx, dir, store.Options{})
	if err != nil {
		os.RemoveAll(dir)
		return nil, nil, nil, err
	}
	idx, err := gpuidx.Open(cfg.Retrieval.Index, gpuidx.CPUConfig{}, gpuidx.GPUConfig{}, nil)
	if err != nil {
		st.Close()
		os.RemoveAll(dir)
		return nil, nil, nil, err
	}
	lib, err := openLibrary(ctx, st, cfg, cfg.Retrieval.CacheSize, idx, nil)
	if err != nil {
		idx.Close()
		st.Close()
		os.RemoveAll(dir)
		return nil, nil, nil, err
	}
	return lib, idx, func() {
		lib.Close()
		idx.Close()
		st.Close()
		os.RemoveAll(dir)
	}, nil
}

// libEmbedder is the library's own embedder (its space, before centring),
// for fitting adapters into that space.
type libEmbedder struct {
	lib *library.Library
	dim int
}

func (e libEmbedder) Embed(ctx context.Context, texts []string) ([][]float32, error) {
	return e.lib.Embed(ctx, texts...)
}

func (e libEmbedder) Dim() int { return e.dim }

// calibrationWait bounds how long the evaluation waits for the library to
// calibrate its gate on the whole corpus.
const calibrationWait = 2 * time.Minute

// awaitGate waits until the library's gate was calibrated on all n
// indexed experiences.
func awaitGate(ctx context.Context, lib *library.Library, n int) (library.Gate, error) {
	deadline := time.Now().Add(calibrationWait)
	for {
		if g, ok := lib.Gate(); ok && g.Size == n {
			return g, nil
		}
		if time.Now().After(deadline) {
			g, _ := lib.Gate()
			return g, fmt.Errorf("eval: the gate was not calibrated on the whole library within %v (%d of %d experiences)", calibrationWait, g.Size, n)
		}
		select {
		case <-ctx.Done():
			return library.Gate{}, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// evalDomain is the domain the evaluation's experiences are stored in.
const evalDomain = "eval"

// runEval stores sentence1 of every pair scoring at least MinScore, and every
// other sentence as a distractor, in a library opened as serve opens it, then
// queries with sentence2 of those pairs.
func runEval(ctx context.Context, cfg evalConfig) (*evalResult, error) {
	if cfg.MinScore == 0 {
		cfg.MinScore = 4
	}
	// The corpus is what the library stores: texts are told apart as the
	// store tells them apart (by id, which normalises the text).
	var corpus, queries []string
	var ids []string    // ids[i] is corpus[i]'s experience id
	var answer []string // answer[j] is queries[j]'s answer's id
	pos := map[string]int{}
	addDoc := func(s string) string {
		id := store.ExperienceID(evalDomain, s)
		if _, ok := pos[id]; !ok {
			pos[id] = len(corpus)
			corpus, ids = append(corpus, s), append(ids, id)
		}
		return id
	}
	for _, p := range cfg.Pairs {
		if p.score >= cfg.MinScore {
			queries = append(queries, p.s2)
			answer = append(answer, addDoc(p.s1))
		}
	}
	isQuery := map[string]bool{}
	for _, q := range queries {
		isQuery[q] = true
	}
	for _, p := range cfg.Pairs {
		if p.score < cfg.MinScore {
			for _, s := range []string{p.s1, p.s2} {
				if !isQuery[s] {
					addDoc(s)
				}
			}
		}
	}
	if len(queries) == 0 {
		return nil, errors.New("eval: no pair reaches the minimum score")
	}

	lib, idx, closeLib, err := openEvalLibrary(ctx, evalLibraryConfig(cfg.Vectors))
	if err != nil {
		return nil, err
	}
	defer closeLib()
	es := make([]store.Experience, len(corpus))
	for i, s := range corpus {
		es[i] = store.Experience{Text: s, Domain: evalDomain, Confidence: 1}
	}
	got, _, err := lib.AddMany(ctx, es)
	if err != nil {
		return nil, err
	}
	for i, e := range got {
		if e.ID != ids[i] {
			return nil, fmt.Errorf("eval: experience %d stored as %s, want %s", i, e.ID, ids[i])
		}
	}
	if lib.Len() != len(corpus) {
		return nil, fmt.Errorf("eval: the library indexed %d of %d experiences", lib.Len(), len(corpus))
	}
	gate, err := awaitGate(ctx, lib, len(corpus))
	if err != nil {
		return nil, err
	}
	res := &evalResult{
		Space: lib.Space().Name, Seed: lib.Seed(), Corpus: len(corpus), Queries: len(queries), Ratios: map[string]float64{},
		Gate: gateFigures{Value: gate.Value, Floor: gate.Floor, Sampled: gate.Sampled},
	}

	// Float: exact cosine of the vectors the library encodes, centred by
	// the library's own centre (the space's mean, taken from the anchors
	// and kept in the store). Not the canonical vectors: the lift rotates
	// in 4096 dimensions but keeps 3840 of them, so it preserves cosines
	// only in expectation, and the codes estimate the centred cosine.
	sp, err := lib.Store().GetSpace(ctx, lib.Space().Name)
	if err != nil {
		return nil, err
	}
	docs, err := lib.Embed(ctx, corpus...)
	if err != nil {
		return nil, err
	}
	qraw, err := lib.Embed(ctx, queries...)
	if err != nil {
		return nil, err
	}
	centred := func(vs [][]float32) ([][]float32, error) {
		out := make([][]float32, len(vs))
		for i, v := range vs {
			if len(v) != len(sp.Mean) {
				return nil, fmt.Errorf("eval: a %d-dim vector in a %d-dim space", len(v), len(sp.Mean))
			}
			out[i] = make([]float32, len(v))
			for k := range v {
				out[i][k] = v[k] - sp.Mean[k]
			}
		}
		return out, nil
	}
	cd, err := centred(docs)
	if err != nil {
		return nil, err
	}
	cq, err := centred(qraw)
	if err != nil {
		return nil, err
	}
	docAnswer := make([]int, len(answer))
	for j, id := range answer {
		docAnswer[j] = pos[id]
	}
	res.Float = floatAccuracy(cd, cq, docAnswer)

	qv, err := lib.Vectors(ctx, queries)
	if err != nil {
		return nil, err
	}
	// Bits: every one of the library's codes ranked by Hamming distance.
	ranks := make([]int, len(qv))
	for j, v := range qv {
		hits, err := idx.Search(ctx, gpuidx.Query{Vector: v, K: 10, Mode: gpuidx.ModeFull})
		if err != nil {
			return nil, err
		}
		ranks[j] = -1
		for r, h := range hits {
			if h.ID == answer[j] {
				ranks[j] = r
				break
			}
		}
	}
	res.Bits = accuracyOf(ranks)
	// Bits+rerank: the library's search as serve runs it, and whether the
	// answer clears the calibrated gate.
	served := func(vs [][]float32) (found, passed accuracy, err error) {
		ranks := make([]int, len(vs))
		pass := make([]int, len(vs))
		for j, v := range vs {
			rs, err := lib.Search(ctx, library.Query{Vector: v, Text: queries[j], K: 10, IncludeGated: true})
			if err != nil {
				return accuracy{}, accuracy{}, err
			}
			ranks[j], pass[j] = -1, -1
			for r, x := range rs {
				if x.ID == answer[j] {
					ranks[j] = r
					if x.Passed {
						pass[j] = r
					}
					break
				}
			}
		}
		return accuracyOf(ranks), accuracyOf(pass), nil
	}
	if res.BitsRerank, res.Gate.Passed, err = served(qv); err != nil {
		return nil, err
	}
	res.Ratios["bits"] = ratio(res.Bits.Top10, res.Float.Top10)
	res.Ratios["bits_rerank"] = ratio(res.BitsRerank.Top10, res.Float.Top10)

	if cfg.Query != nil {
		ref := libEmbedder{lib: lib, dim: len(sp.Mean)}
		ad, lambda, err := fitAdapter(ctx, cfg.Query, ref, cfg.Anchors, cfg.Method, cfg.Lambda)
		if err != nil {
			return nil, err
		}
		res.Lambda = lambda
		xq, err := cfg.Query.Embed(ctx, queries)
		if err != nil {
			return nil, err
		}
		// Into the library's space by the adapter (or by padding), then
		// the library's centring and lift.
		mapped := func(a *align.Adapter) ([][]float32, error) {
			out := make([][]float32, len(xq))
			for j, v := range xq {
				r, err := a.Apply(nil, v)
				if err != nil {
					return nil, err
				}
				if out[j], err = lib.Align(r); err != nil {
					return nil, err
				}
			}
			return out, nil
		}
		av, err := mapped(ad)
		if err != nil {
			return nil, err
		}
		cross, crossPassed, err := served(av)
		if err != nil {
			return nil, err
		}
		nv, err := mapped(align.PadTruncate(cfg.Query.Dim(), ref.Dim()))
		if err != nil {
			return nil, err
		}
		naive, _, err := served(nv)
		if err != nil {
			return nil, err
		}
		res.CrossAdapter, res.CrossNaive, res.Gate.CrossAdapterPassed = &cross, &naive, &crossPassed
		res.Ratios["cross_adapter"] = ratio(cross.Top10, res.BitsRerank.Top10)
		res.Ratios["cross_naive"] = ratio(naive.Top10, res.BitsRerank.Top10)
	}
	return res, nil
}

// fitAdapter embeds the anchors with both models and fits from → to.
func fitAdapter(ctx context.Context, from, to embedder, anchors []string, method align.Method, lambda float64) (*align.Adapter, float64, error) {
	x, err := from.Embed(ctx, anchors)
	if err != nil {
		return nil, 0, err
	}
	y, err := to.Embed(ctx, anchors)
	if err != nil {
		return nil, 0, err
	}
	return fitVectors(x, y, method, lambda)
}

func fitVectors(x, y [][]float32, method align.Method, lambda float64) (*align.Adapter, float64, error) {
	switch method {
	case align.MethodRidge, "":
		if lambda == 0 {
			var err error
			if lambda, err = align.SelectLambda(x, y, nil); err != nil {
				return nil, 0, err
			}
		}
		ad, err := align.FitRidge(x, y, lambda)
		return ad, lambda, err
	case align.MethodProcrustes:
		ad, err := align.FitProcrustes(x, y)
		return ad, 0, err
	}
	return nil, 0, fmt.Errorf("method %q: want ridge or procrustes", method)
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return math.Round(a/b*10000) / 10000
}

func accuracyOf(ranks []int) accuracy {
	var a accuracy
	for _, r := range ranks {
		if r == 0 {
			a.Top1++
		}
		if r >= 0 && r < 10 {
			a.Top10++
		}
	}
	n := float64(len(ranks))
	a.Top1 = math.Round(a.Top1/n*10000) / 10000
	a.Top10 = math.Round(a.Top10/n*10000) / 10000
	return a
}

// floatAccuracy ranks docs by exact cosine for each query.
func floatAccuracy(docs, queries [][]float32, answer []int) accuracy {
	norms := make([]float64, len(docs))
	for i, d := range docs {
		norms[i] = math.Sqrt(dotF(d, d))
	}
	ranks := make([]int, len(queries))
	var wg sync.WaitGroup
	workers := runtime.GOMAXPROCS(0)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			scores := make([]float64, len(docs))
			for qi := w; qi < len(queries); qi += workers {
				q := queries[qi]
				for i, d := range docs {
					scores[i] = dotF(q, d) / (norms[i] + 1e-12)
				}
				target := scores[answer[qi]]
				rank := 0
				for i, s := range scores {
					if s > target || s == target && i < answer[qi] {
						rank++
					}
				}
				ranks[qi] = rank
				if rank >= 10 {
					ranks[qi] = -1
				}
			}
		}()
	}
	wg.Wait()
	return accuracyOf(ranks)
}

func dotF(a, b []float32) float64 {
	var s float64
	for i := range a {
		s += float64(a[i]) * float64(b[i])
	}
	return s
}
