package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/dso-proxy/dso/config"
)

func init() {
	commands["eval gate"] = command{
		summary: "measure injection hit rate and false injection through a running server, and the curve over min score",
		args: "--pairs FILE [--embedder SPEC] [--backend TYPE:URL] [--config FILE]\n" +
			"       dso eval gate --pairs FILE --url URL [--key KEY]",
		about: evalGateAbout,
		run:   evalGate,
	}
}

const evalGateAbout = `Measures what the relevance gate injects, through the served path: dso serve's
own code (started here on a loopback port with a fresh data directory and the
given settings, or the running dso at --url) stores the first sentence of half
the paraphrase pairs (score >= 4) and the sentences of the unrelated pairs as
experiences, then asks the second sentence of every paraphrase pair through
/v1/experiences/search, which runs the same retrieval step as a chat.

  hit rate         share of questions whose stored paraphrase would be injected
  false injection  share of questions with no stored counterpart (the other
                   half) that would get anything injected

Both at the server's own gate, and as a curve over a fixed min score
(X-DSO-Min-Score). The JSON report goes to standard output.`

// gatePoint is the curve at one min score.
type gatePoint struct {
	MinScore       float64 `json:"min_score"`
	Hit            float64 `json:"hit"`
	FalseInjection float64 `json:"false_injection"`
}

type gateReport struct {
	Space     string      `json:"space"`
	Corpus    int         `json:"corpus"`
	Positives int         `json:"positives"`
	Negatives int         `json:"negatives"`
	Gate      float64     `json:"gate"`
	Default   gatePoint   `json:"default"`
	Curve     []gatePoint `json:"curve"`
}

func evalGate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("eval gate")
	pairsPath := fs.String("pairs", "", "sentence pairs CSV `FILE`: sentence1,sentence2,score")
	embedder := fs.String("embedder", "", "the library's embedding space `SPEC` for the server started here (as retrieval.embedder)")
	file := fs.String("config", "", "YAML config `FILE` of the server started here")
	target := fs.String("url", "", "measure the running dso at `URL` instead of starting one")
	key := fs.String("key", "", "admin `KEY` of the server at --url (default $DSO_ADMIN_KEY)")
	var backends stringList
	fs.Var(&backends, "backend", "`TYPE:URL` of a backend of the server started here; repeatable")
	if err := parseFlags(fs, args, stdout, stderr, "pairs"); err != nil {
		return err
	}
	if *key == "" {
		*key = os.Getenv("DSO_ADMIN_KEY")
	}
	ps, err := readPairs(*pairsPath)
	if err != nil {
		return err
	}
	base := *target
	if base == "" {
		cfg := config.Default()
		if *file != "" {
			if cfg, err = config.Load(*file); err != nil {
				return err
			}
		}
		if len(backends) > 0 {
			bs, err := config.ParseBackendSpecs(backends)
			if err != nil {
				return err
			}
			cfg.SetBackends(bs)
		}
		if *embedder != "" {
			cfg.Retrieval.Embedder = *embedder
		}
		dir, err := os.MkdirTemp("", "dso-eval-gate-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		cfg.Data, cfg.Listen = dir, "127.0.0.1:0"
		if err := cfg.Validate(); err != nil {
			return err
		}
		ln, err := net.Listen("tcp", cfg.Listen)
		if err != nil {
			return err
		}
		sctx, stop := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() {
			done <- serveOn(sctx, ln, cfg, slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
		}()
		defer func() { stop(); <-done }()
		base = "http://" + ln.Addr().String()
	}
	c := &gateClient{base: strings.TrimRight(base, "/"), key: *key, http: &http.Client{Timeout: time.Minute}}
	rep, err := runEvalGate(ctx, c, ps, stderr)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(rep)
}

// gateSplit builds the library and the questions from sentence pairs:
// every other paraphrase pair (score >= 4) is stored and asked (a
// positive), the rest are asked with nothing stored (negatives), and both
// sentences of the unrelated pairs are stored as distractors, except where
// they are a question or a held-out counterpart themselves.
func gateSplit(ps []pair) (corpus []string, pos, neg []string, answer map[string]string) {
	answer = map[string]string{}
	exclude := map[string]bool{}
	seen := map[string]bool{}
	k := 0
	for _, p := range ps {
		if p.score < 4 {
			continue
		}
		if k%2 == 0 {
			if !seen[p.s1] {
				seen[p.s1] = true
				corpus = append(corpus, p.s1)
			}
			pos = append(pos, p.s2)
			answer[p.s2] = p.s1
		} else {
			neg = append(neg, p.s2)
			exclude[p.s1] = true
		}
		exclude[p.s2] = true
		k++
	}
	for _, p := range ps {
		if p.score >= 4 {
			continue
		}
		for _, s := range []string{p.s1, p.s2} {
			if !exclude[s] && !seen[s] {
				seen[s] = true
				corpus = append(corpus, s)
			}
		}
	}
	return corpus, pos, neg, answer
}

func runEvalGate(ctx context.Context, c *gateClient, ps []pair, progress io.Writer) (*gateReport, error) {
	corpus, pos, neg, answer := gateSplit(ps)
	if len(pos) == 0 || len(neg) == 0 {
		return nil, errors.New("eval gate: the pairs hold no paraphrase pairs (score >= 4)")
	}
	ids := map[string]string{} // stored text → id
	for i, text := range corpus {
		id, err := c.add(ctx, text)
		if err != nil {
			return nil, fmt.Errorf("storing experience %d: %w", i+1, err)
		}
		ids[text] = id
		if (i+1)%500 == 0 {
			fmt.Fprintf(progress, "stored %d/%d experiences\n", i+1, len(corpus))
		}
	}
	distinct := map[string]bool{} // texts equal once normalised are one experience
	for _, id := range ids {
		distinct[id] = true
	}
	space, err := c.awaitCalibration(ctx, len(distinct))
	if err != nil {
		return nil, err
	}
	rep := &gateReport{Space: space, Corpus: len(distinct), Positives: len(pos), Negatives: len(neg)}
	// For each question: the relevance at which its counterpart would be
	// injected (positives) or at which anything would be (negatives), and
	// whether the server's own gate injects it.
	var posRel, negRel []float64
	var posHit, negAny int
	for _, q := range pos {
		res, err := c.search(ctx, q)
		if err != nil {
			return nil, err
		}
		rep.Gate = res.Gate
		rel := math.Inf(-1)
		for _, d := range res.Data {
			if d.ID == ids[answer[q]] {
				rel = d.Relevance
				if d.Injected {
					posHit++
				}
			}
		}
		posRel = append(posRel, rel)
	}
	for _, q := range neg {
		res, err := c.search(ctx, q)
		if err != nil {
			return nil, err
		}
		rel := math.Inf(-1)
		injected := false
		for _, d := range res.Data {
			rel = max(rel, d.Relevance)
			injected = injected || d.Injected
		}
		if injected {
			negAny++
		}
		negRel = append(negRel, rel)
	}
	rep.Default = gatePoint{MinScore: rep.Gate, Hit: round4(float64(posHit) / float64(len(pos))), FalseInjection: round4(float64(negAny) / float64(len(neg)))}
	for t := -0.10; t <= 0.50+1e-9; t += 0.025 {
		rep.Curve = append(rep.Curve, gatePoint{MinScore: round4(t), Hit: round4(share(posRel, t)), FalseInjection: round4(share(negRel, t))})
	}
	sort.Slice(rep.Curve, func(i, j int) bool { return rep.Curve[i].MinScore < rep.Curve[j].MinScore })
	return rep, nil
}

func share(xs []float64, t float64) float64 {
	n := 0
	for _, x := range xs {
		if x >= t {
			n++
		}
	}
	return float64(n) / float64(len(xs))
}

func round4(f float64) float64 { return math.Round(f*10000) / 10000 }

// gateClient speaks dso's experience API.
type gateClient struct {
	base, key string
	http      *http.Client
}

func (c *gateClient) do(ctx context.Context, method, path string, body []byte, out any) error {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return err
	}
	if c.key != "" {
		req.Header.Set("Authorization", "Bearer "+c.key)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		return fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, bytes.TrimSpace(b))
	}
	return json.Unmarshal(b, out)
}

func (c *gateClient) add(ctx context.Context, text string) (string, error) {
	b, _ := json.Marshal(map[string]any{"text": text, "domain": "eval", "confidence": 1})
	var e struct {
		ID string `json:"id"`
	}
	err := c.do(ctx, http.MethodPost, "/v1/experiences", b, &e)
	return e.ID, err
}

type gateSearch struct {
	Gate float64 `json:"gate"`
	Data []struct {
		ID        string  `json:"id"`
		Relevance float64 `json:"relevance"`
		Injected  bool    `json:"injected"`
	} `json:"data"`
}

func (c *gateClient) search(ctx context.Context, q string) (*gateSearch, error) {
	var out gateSearch
	err := c.do(ctx, http.MethodGet, "/v1/experiences/search?q="+url.QueryEscape(q), nil, &out)
	return &out, err
}

// awaitCalibration waits until the server's gate was calibrated on the
// whole library (n experiences), and returns the library's space.
func (c *gateClient) awaitCalibration(ctx context.Context, n int) (string, error) {
	deadline := time.Now().Add(5 * time.Minute)
	for {
		var st struct {
			Data []struct {
				Space string `json:"space"`
			} `json:"data"`
			Calibration struct {
				Size int `json:"library_size"`
			} `json:"calibration"`
		}
		if err := c.do(ctx, http.MethodGet, "/v1/experiences/search?q=calibration", nil, &st); err != nil {
			return "", err
		}
		if st.Calibration.Size >= n && len(st.Data) > 0 {
			return st.Data[0].Space, nil
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("the gate was not calibrated on the whole library within 5 minutes (%d of %d experiences)", st.Calibration.Size, n)
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}
