package main

import (
	"bufio"
	"context"
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
		args:    "--from SPEC --to SPEC [--anchors FILE] --out FILE [flags]",
		about: `Embeds the anchor texts with both models and fits the map from the --from
space into the --to space. A SPEC is model:NAME (an embedding model on a
backend), hash[:DIM] (the built-in embedder; --from only), vectors:FILE
(word vectors) or rows:FILE (precomputed vectors, one per line,
whitespace-separated, in the anchors' order; no --anchors needed when
both sides are rows:).`,
		run: alignFit,
	}
}

// alignFit fits an adapter from anchor texts embedded by two models: local
// embedders, a configured backend's embedding model ("model:NAME"), or two
// files of precomputed anchor vectors ("rows:FILE", one vector per line,
// whitespace-separated, in the same order).
func alignFit(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("align fit")
	from := fs.String("from", "", "source model `SPEC`: model:NAME (through a backend), hash[:DIM], vectors:FILE (word vectors) or rows:FILE (precomputed vectors)")
	to := fs.String("to", "", "reference model `SPEC`: model:NAME, vectors:FILE or rows:FILE")
	var sf storeFlags
	fs.StringVar(&sf.config, "config", os.Getenv(config.EnvConfig), "YAML config `FILE` naming the backends, for model:NAME")
	fs.StringVar(&sf.backend, "backend", "", "`TYPE:URL` of the backend that embeds model:NAME (default from config)")
	anchors := fs.String("anchors", "", "anchor texts `FILE`: one per line, or a pairs CSV (not needed when both sides are rows:)")
	method := fs.String("method", "ridge", "fit `METHOD`: ridge or procrustes")
	lambda := fs.Float64("lambda", 0, "ridge regulariser (relative); 0 selects one on held-out anchors")
	out := fs.String("out", "", "adapter `FILE` to write")
	if err := parseFlags(fs, args, stdout, stderr, "from", "to", "out"); err != nil {
		return err
	}
	if *method != "ridge" && *method != "procrustes" {
		return usageError(stderr, fs.Name(), "--method %q is not ridge or procrustes", *method)
	}
	var texts []string
	if !strings.HasPrefix(*from, "rows:") || !strings.HasPrefix(*to, "rows:") {
		if *anchors == "" {
			return usageError(stderr, fs.Name(), "missing required flag --anchors (needed unless both sides are rows:)")
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
		for start := 0; start < len(texts); start += alignFitBatch {
			vs, err := emb.Embed(ctx, model, texts[start:min(len(texts), start+alignFitBatch)])
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

// alignFitBatch is how many anchors one embedding request carries.
const alignFitBatch = 256
