package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/dso-proxy/dso/config"
	"github.com/dso-proxy/dso/gpuidx"
	"github.com/dso-proxy/dso/internal/shareddata"
	"github.com/dso-proxy/dso/internal/testenv"
	"github.com/dso-proxy/dso/library"
	"github.com/dso-proxy/dso/providers"
	"github.com/dso-proxy/dso/store"
)

func TestEvalRetrievalTargets(t *testing.T) {
	data := shareddata.Dir(t)
	glove := shareddata.GloVe(t)
	pairs, err := readPairs(filepath.Join(data, "stsb", "stsb-en-dev.csv"))
	if err != nil {
		t.Fatal(err)
	}
	anchors, err := readAnchors(filepath.Join(data, "stsb", "stsb-en-train.csv"))
	if err != nil {
		t.Fatal(err)
	}
	if testing.Short() {
		anchors = anchors[:4000]
	}
	q, _ := openEmbedder("hash:512")
	res, err := runEval(context.Background(), evalConfig{Vectors: glove, Query: q, Pairs: pairs, Anchors: anchors, Lambda: 0.1})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v gate %+v", res.Ratios, res.Gate)
	// The figures are the product's: the library is the one serve opens
	// with retrieval.embedder wordvec:FILE and its defaults.
	cfg, err := loadServeConfig(nil, io.Discard, io.Discard, func(k string) string {
		if k == config.EnvEmbedder {
			return "wordvec:" + glove
		}
		return ""
	})
	if err != nil {
		t.Fatal(err)
	}
	router, err := providers.NewRouter(cfg.Backends, nil)
	if err != nil {
		t.Fatal(err)
	}
	sp, err := librarySpace(cfg.Retrieval, router)
	if err != nil {
		t.Fatal(err)
	}
	if res.Space != sp.Name || res.Seed != library.DefaultSeed || cfg.Retrieval.Seed != 0 {
		t.Errorf("eval library in space %q seed %#x; serve's default config gives space %q seed %d (0 is %#x)",
			res.Space, res.Seed, sp.Name, cfg.Retrieval.Seed, library.DefaultSeed)
	}
	if res.Corpus != 2650 || res.Queries != 264 {
		t.Errorf("corpus %d, queries %d; want 2650, 264", res.Corpus, res.Queries)
	}
	if r := res.Ratios["bits_rerank"]; r < 0.99 {
		t.Errorf("bits_rerank keeps %.4f of float top-10; want >= 0.99", r)
	}
	if r := res.Ratios["bits"]; r < 0.97 {
		t.Errorf("bits keeps %.4f of float top-10; want >= 0.97", r)
	}
	if a, n := res.Ratios["cross_adapter"], res.Ratios["cross_naive"]; a < 0.35 || a < n+0.3 {
		t.Errorf("cross-model adapter %.3f vs naive %.3f: want a wide margin", a, n)
	}
	if g := res.Gate; g.Value < g.Floor || g.Sampled == 0 || g.Passed.Top10 <= 0 || g.Passed.Top10 > res.BitsRerank.Top10 {
		t.Errorf("gate %+v with bits_rerank %+v", g, res.BitsRerank)
	}
}

// The evaluation's library maps a text exactly as a library opened from
// serve's default config does: same space, centre, lift and seed.
func TestEvalRetrievalLibraryIsServes(t *testing.T) {
	glove := shareddata.GloVe(t)
	ctx := context.Background()
	cfg, err := loadServeConfig(nil, io.Discard, io.Discard, func(k string) string {
		if k == config.EnvEmbedder {
			return "wordvec:" + glove
		}
		return ""
	})
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.OpenDir(ctx, t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	served, err := openLibrary(ctx, st, cfg, cfg.Retrieval.CacheSize, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer served.Close()
	lib, _, closeLib, err := openEvalLibrary(ctx, evalLibraryConfig(glove))
	if err != nil {
		t.Fatal(err)
	}
	defer closeLib()
	if lib.Space().Name != served.Space().Name || lib.Seed() != served.Seed() {
		t.Fatalf("eval library %s seed %#x; serve's %s seed %#x", lib.Space().Name, lib.Seed(), served.Space().Name, served.Seed())
	}
	const text = "A man is playing a guitar on the street."
	a, err := lib.Vector(ctx, text)
	if err != nil {
		t.Fatal(err)
	}
	b, err := served.Vector(ctx, text)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(a, b) {
		t.Fatal("the eval library's canonical vector differs from serve's")
	}
}

func TestEvalRetrievalUsage(t *testing.T) {
	var out, errb bytes.Buffer
	for _, args := range [][]string{nil, {"--vectors", "x"}, {"--vectors", "x", "--pairs", "y", "--query-model", "hash"}, {"--bogus"}} {
		if err := evalRetrieval(context.Background(), args, &out, &errb); err != errUsage {
			t.Errorf("args %q: got %v; want errUsage", args, err)
		}
	}
}

func TestBenchIndex(t *testing.T) {
	var out, errb bytes.Buffer
	if err := benchIndex(context.Background(), []string{"--n", "3000", "--queries", "5"}, &out, &errb); err != nil {
		t.Fatal(err, errb.String())
	}
	var res benchResult
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		t.Fatal(err)
	}
	if res.N != 3000 || res.Served.RecallAt10 < 0.9 || res.Scan.RecallAt10 < 0.9 || res.Memory.IndexBytes < 3000*int64(res.Memory.Floor) {
		t.Fatalf("result %+v", res)
	}
	// Without a GPU, --index gpu refuses CPU OpenCL devices unless asked;
	// with one, it runs on it.
	gpu, gerr := gpuidx.Open(gpuidx.KindGPU, gpuidx.CPUConfig{}, gpuidx.GPUConfig{}, slog.New(slog.DiscardHandler))
	if gerr == nil {
		gpu.Close()
	}
	if err := benchIndex(context.Background(), []string{"--index", "gpu", "--n", "10"}, &out, &errb); (gerr == nil) != (err == nil) || gerr != nil && !errors.Is(err, gpuidx.ErrNoGPU) {
		t.Fatalf("--index gpu: got %v; want %v", err, gerr)
	}
	out.Reset()
	err := benchIndex(context.Background(), []string{"--index", "gpu", "--opencl-any", "--n", "2000", "--queries", "3"}, &out, &errb)
	if errors.Is(err, gpuidx.ErrNoGPU) {
		testenv.Skip(t, testenv.OpenCL, "no OpenCL device at all: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(out.Bytes(), &res); err != nil || res.N != 2000 || res.Served.RecallAt10 <= 0 {
		t.Fatalf("OpenCL bench: %v %+v", err, res)
	}
}

// TestBenchIndexRealEmbeddings runs dso bench index on GloVe embeddings of
// STS-B sentences: the report holds the memory and recall figures.
func TestBenchIndexRealEmbeddings(t *testing.T) {
	data := shareddata.Dir(t)
	glove := shareddata.GloVe(t)
	var out, errb bytes.Buffer
	args := []string{"--n", "4000", "--queries", "20", "--vectors", glove, "--texts", filepath.Join(data, "stsb", "stsb-en-dev.csv")}
	if err := benchIndex(context.Background(), args, &out, &errb); err != nil {
		t.Fatal(err, errb.String())
	}
	var res benchResult
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		t.Fatal(err)
	}
	if res.N != 4000 || !strings.HasPrefix(res.Source, "wordvec:") || res.Served.RecallAt10 < 0.9 || res.Memory.IndexPerExperience < float64(res.Memory.Floor) {
		t.Fatalf("result %+v", res)
	}
}

func TestAlignFit(t *testing.T) {
	dir := t.TempDir()
	x := filepath.Join(dir, "x.txt")
	y := filepath.Join(dir, "y.txt")
	os.WriteFile(x, []byte("1 0\n0 1\n1 1\n2 1\n1 3\n0 0\n3 2\n2 2\n1 2\n2 0\n0 3\n3 3\n"), 0o644)
	os.WriteFile(y, []byte("2 0 1\n0 2 1\n2 2 1\n4 2 1\n2 6 1\n0 0 1\n6 4 1\n4 4 1\n2 4 1\n4 0 1\n0 6 1\n6 6 1\n"), 0o644)
	out := filepath.Join(dir, "a.dsoalign")
	var so, se bytes.Buffer
	if err := alignFit(context.Background(), []string{"--from", "rows:" + x, "--to", "rows:" + y, "--lambda", "0.001", "--out", out}, &so, &se); err != nil {
		t.Fatal(err, se.String())
	}
	if _, err := os.Stat(out); err != nil {
		t.Fatal(err)
	}
	if err := alignFit(context.Background(), []string{"--from", "hash"}, &so, &se); err != errUsage {
		t.Fatalf("missing flags: got %v; want errUsage", err)
	}
}
