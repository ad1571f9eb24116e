package main

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"

	"github.com/dso-proxy/dso/align"
	"github.com/dso-proxy/dso/compress"
	"github.com/dso-proxy/dso/gpuidx"
	"github.com/dso-proxy/dso/providers"
)

func init() {
	commands["eval retrieval"] = command{
		summary: "measure float vs 1-bit retrieval accuracy on sentence pairs",
		run:     evalRetrieval,
	}
}

// liftSeed is the lift seed the measuring commands use.
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

// pair is one line of an STS-style pairs file.
type pair struct {
	s1, s2 string
	score  float64
}

// readPairs reads "sentence1,sentence2,score" CSV (quoted as needed; a header
// line whose score is not a number is skipped).
func readPairs(path string) ([]pair, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r := csv.NewReader(f)
	r.FieldsPerRecord = 3
	var ps []pair
	for line := 1; ; line++ {
		rec, err := r.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read pairs: %w", err)
		}
		score, err := strconv.ParseFloat(strings.TrimSpace(rec[2]), 64)
		if err != nil {
			if line == 1 {
				continue // header
			}
			return nil, fmt.Errorf("read pairs line %d: bad score %q", line, rec[2])
		}
		ps = append(ps, pair{rec[0], rec[1], score})
	}
	if len(ps) == 0 {
		return nil, fmt.Errorf("read pairs %s: no pairs", path)
	}
	return ps, nil
}

// readAnchors reads anchor texts: a pairs CSV (both sentences of every pair)
// when the file ends in .csv, else one text per non-empty line. Duplicates
// are dropped.
func readAnchors(path string) ([]string, error) {
	var texts []string
	if strings.HasSuffix(path, ".csv") {
		ps, err := readPairs(path)
		if err != nil {
			return nil, err
		}
		for _, p := range ps {
			texts = append(texts, p.s1, p.s2)
		}
	} else {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		for _, l := range strings.Split(string(b), "\n") {
			if l = strings.TrimSpace(l); l != "" {
				texts = append(texts, l)
			}
		}
	}
	seen := map[string]bool{}
	out := texts[:0]
	for _, t := range texts {
		if !seen[t] {
			seen[t] = true
			out = append(out, t)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("read anchors %s: no texts", path)
	}
	return out, nil
}

// evalConfig is one retrieval evaluation.
type evalConfig struct {
	Index    embedder // the index model (reference space)
	Query    embedder // a different query model; nil for none
	Pairs    []pair
	Anchors  []string // anchor texts for the cross-model adapter
	Lambda   float64  // ridge regulariser; 0 selects one on held-out anchors
	Method   align.Method
	MinScore float64 // pairs at or above are (experience, query) pairs; 0 means 4
	Rerank   int     // candidates re-ranked exactly; 0 means 100
}

// accuracy is the share of queries whose answer ranks first / in the top 10.
type accuracy struct {
	Top1  float64 `json:"top1"`
	Top10 float64 `json:"top10"`
}

type evalResult struct {
	Corpus       int       `json:"corpus"`
	Queries      int       `json:"queries"`
	Float        accuracy  `json:"float"`
	Bits         accuracy  `json:"bits"`
	BitsRerank   accuracy  `json:"bits_rerank"`
	CrossAdapter *accuracy `json:"cross_adapter,omitempty"`
	CrossNaive   *accuracy `json:"cross_naive,omitempty"`
	// Ratios are top-10 accuracies relative to float (bits, bits_rerank)
	// and to same-model bits_rerank (cross_*), the configuration served.
	Ratios map[string]float64 `json:"ratios_top10"`
	Lambda float64            `json:"lambda,omitempty"`
}

func evalRetrieval(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("eval retrieval", flag.ContinueOnError)
	fs.SetOutput(stderr)
	vectors := fs.String("vectors", "", "word-vector file of the index model (GloVe text, plain or gzip)")
	pairsPath := fs.String("pairs", "", "sentence pairs CSV: sentence1,sentence2,score")
	queryModel := fs.String("query-model", "", "a different query model: hash[:DIM] or vectors:FILE")
	anchorsPath := fs.String("anchors", "", "anchor texts for the cross-model adapter (text lines or pairs CSV); never the evaluated pairs")
	method := fs.String("method", "ridge", "adapter method: ridge or procrustes")
	lambda := fs.Float64("lambda", 0, "ridge regulariser (relative); 0 selects one on held-out anchors")
	rerank := fs.Int("rerank", 100, "candidates re-ranked exactly")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: dso eval retrieval --vectors FILE --pairs FILE [--query-model hash|vectors:FILE --anchors FILE]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil || fs.NArg() > 0 || *vectors == "" || *pairsPath == "" ||
		(*queryModel != "") != (*anchorsPath != "") || *rerank < 1 {
		if err == nil {
			fs.Usage()
		}
		return errUsage
	}
	idx, err := openEmbedder("vectors:" + *vectors)
	if err != nil {
		return err
	}
	ps, err := readPairs(*pairsPath)
	if err != nil {
		return err
	}
	cfg := evalConfig{Index: idx, Pairs: ps, Lambda: *lambda, Method: align.Method(*method), Rerank: *rerank}
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

// runEval stores sentence1 of every pair scoring at least MinScore, and every
// other sentence as a distractor, then queries with sentence2 of those pairs.
func runEval(ctx context.Context, cfg evalConfig) (*evalResult, error) {
	if cfg.MinScore == 0 {
		cfg.MinScore = 4
	}
	if cfg.Rerank == 0 {
		cfg.Rerank = 100
	}
	var corpus, queries []string
	var answer []int
	pos := map[string]int{}
	addDoc := func(s string) int {
		if i, ok := pos[s]; ok {
			return i
		}
		pos[s] = len(corpus)
		corpus = append(corpus, s)
		return len(corpus) - 1
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
	docs, err := cfg.Index.Embed(ctx, corpus)
	if err != nil {
		return nil, err
	}
	qv, err := cfg.Index.Embed(ctx, queries)
	if err != nil {
		return nil, err
	}
	mean := align.Mean(docs)
	lift := align.NewLift(liftSeed)
	pipe := &align.Pipeline{Mean: mean, Lift: lift}

	res := &evalResult{Corpus: len(corpus), Queries: len(queries), Ratios: map[string]float64{}}
	// Float cosine on the centred reference vectors.
	centred := func(vs [][]float32) [][]float32 {
		out := make([][]float32, len(vs))
		for i, v := range vs {
			out[i] = make([]float32, len(v))
			for k := range v {
				out[i][k] = v[k] - mean[k]
			}
		}
		return out
	}
	res.Float = floatAccuracy(centred(docs), centred(qv), answer)

	index := gpuidx.NewCPU(gpuidx.CPUConfig{})
	for i, d := range docs {
		c, err := pipe.Canonical(nil, d)
		if err != nil {
			return nil, err
		}
		code, err := compress.Encode(c)
		if err != nil {
			return nil, err
		}
		if err := index.Upsert(strconv.Itoa(i), gpuidx.Meta{Confidence: 1}, code); err != nil {
			return nil, err
		}
	}
	search := func(p *align.Pipeline, vs [][]float32, mode gpuidx.Mode) (accuracy, error) {
		ranks := make([]int, len(vs))
		for i, v := range vs {
			c, err := p.Canonical(nil, v)
			if err != nil {
				return accuracy{}, err
			}
			hits, err := index.Search(ctx, gpuidx.Query{Vector: c, K: 10, Mode: mode, Rerank: cfg.Rerank})
			if err != nil {
				return accuracy{}, err
			}
			ranks[i] = -1
			for r, h := range hits {
				if h.ID == strconv.Itoa(answer[i]) {
					ranks[i] = r
				}
			}
		}
		return accuracyOf(ranks), nil
	}
	if res.Bits, err = search(pipe, qv, gpuidx.ModeFull); err != nil {
		return nil, err
	}
	if res.BitsRerank, err = search(pipe, qv, gpuidx.ModeFullRerank); err != nil {
		return nil, err
	}
	res.Ratios["bits"] = ratio(res.Bits.Top10, res.Float.Top10)
	res.Ratios["bits_rerank"] = ratio(res.BitsRerank.Top10, res.Float.Top10)

	if cfg.Query != nil {
		ad, lambda, err := fitAdapter(ctx, cfg.Query, cfg.Index, cfg.Anchors, cfg.Method, cfg.Lambda)
		if err != nil {
			return nil, err
		}
		res.Lambda = lambda
		xq, err := cfg.Query.Embed(ctx, queries)
		if err != nil {
			return nil, err
		}
		cross, err := search(&align.Pipeline{Adapter: ad, Mean: mean, Lift: lift}, xq, gpuidx.ModeFullRerank)
		if err != nil {
			return nil, err
		}
		naive, err := search(&align.Pipeline{Adapter: align.PadTruncate(cfg.Query.Dim(), cfg.Index.Dim()), Mean: mean, Lift: lift}, xq, gpuidx.ModeFullRerank)
		if err != nil {
			return nil, err
		}
		res.CrossAdapter, res.CrossNaive = &cross, &naive
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
