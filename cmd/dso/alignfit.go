package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"github.com/dso-proxy/dso/providers"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/dso-proxy/dso/align"
	"github.com/dso-proxy/dso/config"
)

func init() {
	commands["align fit"] = command{
		summary: "fit an adapter from a model's space into the reference space",
		run:     alignFit,
	}
}

// alignFit fits an adapter from anchor texts embedded by two models: local
// embedders, a configured backend's embedding model ("model:NAME"), or two
// files of precomputed anchor vectors ("rows:FILE", one vector per line,
// whitespace-separated, in the same order).
func alignFit(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("align fit", flag.ContinueOnError)
	fs.SetOutput(stderr)
	from := fs.String("from", "", "source model: model:NAME (through a backend), hash[:DIM], vectors:FILE (word vectors) or rows:FILE (precomputed vectors)")
	to := fs.String("to", "", "reference model: model:NAME, vectors:FILE or rows:FILE")
	var sf storeFlags
	fs.StringVar(&sf.config, "config", os.Getenv(config.EnvConfig), "YAML config file naming the backends, for model:NAME")
	fs.StringVar(&sf.backend, "backend", "", "TYPE:URL of the backend that embeds model:NAME (default from config)")
	anchors := fs.String("anchors", "", "anchor texts: one per line, or a pairs CSV (not needed when both sides are rows:)")
	method := fs.String("method", "ridge", "ridge or procrustes")
	lambda := fs.Float64("lambda", 0, "ridge regulariser (relative); 0 selects one on held-out anchors")
	out := fs.String("out", "", "adapter file to write")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: dso align fit --from model:NAME|hash|vectors:FILE|rows:FILE --to model:NAME|vectors:FILE|rows:FILE [--anchors FILE] [--backend TYPE:URL] [--method ridge|procrustes] --out FILE")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil || fs.NArg() > 0 || *from == "" || *to == "" || *out == "" ||
		(*method != "ridge" && *method != "procrustes") {
		if err == nil {
			fs.Usage()
		}
		return errUsage
	}
	var texts []string
	if !strings.HasPrefix(*from, "rows:") || !strings.HasPrefix(*to, "rows:") {
		if *anchors == "" {
			fs.Usage()
			return errUsage
		}
		var err error
		if texts, err = readAnchors(*anchors); err != nil {
			return err
		}
	}
	x, err := anchorVectors(ctx, *from, texts, &sf)
	if err != nil {
		return fmt.Errorf("--from: %w", err)
	}
	y, err := anchorVectors(ctx, *to, texts, &sf)
	if err != nil {
		return fmt.Errorf("--to: %w", err)
	}
	if len(x) != len(y) {
		return fmt.Errorf("%d source and %d reference anchor vectors", len(x), len(y))
	}
	ad, l, err := fitVectors(x, y, align.Method(*method), *lambda)
	if err != nil {
		return err
	}
	if err := align.SaveAdapter(*out, ad); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s adapter %d→%d dims from %d anchors", ad.Method, ad.In, ad.Out, len(x))
	if ad.Method == align.MethodRidge {
		fmt.Fprintf(stdout, " (lambda %g)", l)
	}
	fmt.Fprintf(stdout, " to %s\n", *out)
	return nil
}

// anchorVectors embeds texts with a local embedder spec or a backend's
// model ("model:NAME"), or reads precomputed vectors for "rows:FILE".
func anchorVectors(ctx context.Context, spec string, texts []string, sf *storeFlags) ([][]float32, error) {
	if path, ok := strings.CutPrefix(spec, "rows:"); ok {
		return readRows(path)
	}
	if model, ok := strings.CutPrefix(spec, "model:"); ok {
		cfg, err := sf.load()
		if err != nil {
			return nil, err
		}
		router, err := providers.NewRouter(cfg.Backends, nil)
		if err != nil {
			return nil, err
		}
		emb := routedEmbedder{router}
		var out [][]float32
		for start := 0; start < len(texts); start += importBatch {
			vs, err := emb.Embed(ctx, model, texts[start:min(len(texts), start+importBatch)])
			if err != nil {
				return nil, fmt.Errorf("embedding anchors %d-: %w", start+1, err)
			}
			out = append(out, vs...)
		}
		return out, nil
	}
	e, err := openEmbedder(spec)
	if err != nil {
		return nil, err
	}
	return e.Embed(ctx, texts)
}

// readRows reads one whitespace-separated vector per non-empty line.
func readRows(path string) ([][]float32, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<16), 1<<24)
	var rows [][]float32
	for line := 1; sc.Scan(); line++ {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 {
			continue
		}
		v := make([]float32, len(fields))
		for i, s := range fields {
			x, err := strconv.ParseFloat(s, 32)
			if err != nil {
				return nil, fmt.Errorf("%s line %d: bad value %q", path, line, s)
			}
			v[i] = float32(x)
		}
		if len(rows) > 0 && len(v) != len(rows[0]) {
			return nil, fmt.Errorf("%s line %d: %d values, want %d", path, line, len(v), len(rows[0]))
		}
		rows = append(rows, v)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return rows, nil
}
