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
	"text/tabwriter"
	"time"

	"github.com/dso-proxy/dso/config"
	"github.com/dso-proxy/dso/internal/gatesplit"
)

func init() {
	commands["eval gate"] = command{
		summary: "measure injection hit rate and false injection through a running server, and the curve over min score",
		args: "--pairs FILE [--slices N] [--embedder SPEC] [--backend TYPE:URL] [--config FILE]\n" +
			"       dso eval gate --pairs FILE --url URL [--key KEY]",
		about: evalGateAbout,
		run:   evalGate,
	}
}

const evalGateAbout = `Measures what the relevance gate injects, through the served path: dso serve's
own code (started here on a loopback port with a fresh data directory and the
given settings, or the running dso at --url) stores the first sentence of half
the paraphrase pairs (score >= 4) and the sentences of the other pairs as
experiences, then asks the second sentence of every paraphrase pair through
/v1/experiences/search, which runs the same retrieval step as a chat.
Sentences the pairs call paraphrases (directly or through a chain) or that
are equal once normalised are one group: one pair of a group is asked, and a
question asked with nothing stored has nothing of its group stored.

  hit rate         share of questions whose stored paraphrase would be injected
  false injection  share of questions with no stored counterpart (the other
                   half) that would get anything injected

Both at the server's own gate, with 95% (Wilson) intervals, and as a curve
over a fixed min score (X-DSO-Min-Score), the server's gate marked in it.

--slices N measures the whole file, then each of N consecutive slices of its
pairs with a fresh library (and server) of its own: STS-B's files run genre
by genre, so thirds of its dev file are roughly captions, forums and news.

The JSON report goes to standard output; a table of the figures and the
curves to standard error.`

// gatePoint is the curve at one min score.
type gatePoint struct {
	MinScore       float64 `json:"min_score"`
	Hit            float64 `json:"hit"`
	FalseInjection float64 `json:"false_injection"`
	// HitCI and FalseInjectionCI are 95% Wilson intervals, given for the
	// server's own gate.
	HitCI            *interval `json:"hit_95,omitempty"`
	FalseInjectionCI *interval `json:"false_injection_95,omitempty"`
	// Default marks the server's own gate in the curve.
	Default bool `json:"default,omitempty"`
}

// interval is a confidence interval, low and high.
type interval [2]float64

type gateReport struct {
	// Pairs is the range of the file's pairs measured, 1-based and
	// inclusive.
	Pairs     [2]int  `json:"pairs"`
	Space     string  `json:"space"`
	Corpus    int     `json:"corpus"`
	Positives int     `json:"positives"`
	Negatives int     `json:"negatives"`
	Gate      float64 `json:"gate"`
	// Floor is the gate's floor, from the anchors alone.
	Floor   float64     `json:"floor"`
	Default gatePoint   `json:"default"`
	Curve   []gatePoint `json:"curve"`
	// Slices are the --slices reports, each with a library of its own.
	Slices []*gateReport `json:"slices,omitempty"`
}

func evalGate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("eval gate")
	pairsPath := fs.String("pairs", "", "sentence pairs CSV `FILE`: sentence1,sentence2,score")
	slices := fs.Int("slices", 1, "measure `N` consecutive slices of the pairs too, each with a fresh library (1: the whole file only)")
	embedder := fs.String("embedder", "", "the library's embedding space `SPEC` for the server started here (as retrieval.embedder)")
	file := fs.String("config", "", "YAML config `FILE` of the server started here")
	target := fs.String("url", "", "measure the running dso at `URL` instead of starting one")
	key := fs.String("key", "", "admin `KEY` of the server at --url (default $DSO_ADMIN_KEY)")
	var backends stringList
	fs.Var(&backends, "backend", "`TYPE:URL` of a backend of the server started here; repeatable")
	if err := parseFlags(fs, args, stdout, stderr, "pairs"); err != nil {
		return err
	}
	if *slices < 1 {
		return usageError(stderr, "eval gate", "--slices %d: want 1 or more", *slices)
	}
	if *slices > 1 && *target != "" {
		return usageError(stderr, "eval gate", "--slices needs a fresh library per slice, which --url cannot give")
	}
	if *key == "" {
		*key = os.Getenv("DSO_ADMIN_KEY")
	}
	ps, err := readPairs(*pairsPath)
	if err != nil {
		return err
	}
	if *slices > len(ps) {
		return usageError(stderr, "eval gate", "--slices %d: the file holds %d pairs", *slices, len(ps))
	}
	measure := func(ps []pair) (*gateReport, error) {
		c := &gateClient{base: strings.TrimRight(*target, "/"), key: *key, http: &http.Client{Timeout: time.Minute}}
		return runEvalGate(ctx, c, ps, stderr)
	}
	if *target == "" {
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
		measure = func(ps []pair) (*gateReport, error) {
			base, stop, err := startGateServer(ctx, cfg, stderr)
			if err != nil {
				return nil, err
			}
			defer stop()
			c := &gateClient{base: base, key: *key, http: &http.Client{Timeout: time.Minute}}
			return runEvalGate(ctx, c, ps, stderr)
		}
	}
	rep, err := measure(ps)
	if err != nil {
		return err
	}
	rep.Pairs = [2]int{1, len(ps)}
	if *slices > 1 {
		for i := range *slices {
			from, to := i*len(ps) / *slices, (i+1)*len(ps) / *slices
			fmt.Fprintf(stderr, "slice %d/%d: pairs %d-%d\n", i+1, *slices, from+1, to)
			sr, err := measure(ps[from:to])
			if err != nil {
				return fmt.Errorf("slice %d/%d (pairs %d-%d): %w", i+1, *slices, from+1, to, err)
			}
			sr.Pairs = [2]int{from + 1, to}
			rep.Slices = append(rep.Slices, sr)
		}
	}
	printGateReport(stderr, rep)
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(rep)
}

// startGateServer starts dso serve's code with cfg on a loopback port and
// a fresh data directory (a fresh library), and returns its URL and how
// to stop it (which removes the directory).
func startGateServer(ctx context.Context, cfg config.Config, stderr io.Writer) (base string, stop func(), err error) {
	dir, err := os.MkdirTemp("", "dso-eval-gate-")
	if err != nil {
		return "", nil, err
	}
	cfg.Data, cfg.Listen = dir, "127.0.0.1:0"
	if err := cfg.Validate(); err != nil {
		os.RemoveAll(dir)
		return "", nil, err
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		os.RemoveAll(dir)
		return "", nil, err
	}
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- serveOn(sctx, ln, cfg, slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	}()
	return "http://" + ln.Addr().String(), func() { cancel(); <-done; os.RemoveAll(dir) }, nil
}

// printGateReport writes rep as tables: the figures at the server's gate
// for the whole file and each slice, then each one's curve with the
// server's gate marked.
func printGateReport(w io.Writer, rep *gateReport) {
	reps := append([]*gateReport{rep}, rep.Slices...)
	name := func(i int) string {
		if i == 0 {
			return "whole"
		}
		return fmt.Sprintf("slice %d/%d", i, len(rep.Slices))
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "\tpairs\tspace\texperiences\tquestions\tgate\tfloor\thit [95%%]\tfalse injection [95%%]\n")
	for i, r := range reps {
		fmt.Fprintf(tw, "%s\t%d-%d\t%s\t%d\t%d+%d\t%.3f\t%.3f\t%s\t%s\n", name(i), r.Pairs[0], r.Pairs[1], r.Space,
			r.Corpus, r.Positives, r.Negatives, r.Gate, r.Floor, rateCI(r.Default.Hit, r.Default.HitCI), rateCI(r.Default.FalseInjection, r.Default.FalseInjectionCI))
	}
	tw.Flush()
	for i, r := range reps {
		fmt.Fprintf(w, "\ncurve, %s (pairs %d-%d):\n", name(i), r.Pairs[0], r.Pairs[1])
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintf(tw, "min score\thit\tfalse injection\t\n")
		for _, p := range r.Curve {
			mark := ""
			if p.Default {
				mark = "  <- the server's gate"
			}
			fmt.Fprintf(tw, "%.3f\t%.3f\t%.3f\t%s\n", p.MinScore, p.Hit, p.FalseInjection, mark)
		}
		tw.Flush()
	}
}

func rateCI(r float64, ci *interval) string {
	if ci == nil {
		return fmt.Sprintf("%.3f", r)
	}
	return fmt.Sprintf("%.3f [%.3f, %.3f]", r, ci[0], ci[1])
}

// wilson is the 95% Wilson score interval of k successes in n trials.
func wilson(k, n int) interval {
	if n == 0 {
		return interval{0, 1}
	}
	const z = 1.959964
	p, nf := float64(k)/float64(n), float64(n)
	d := 1 + z*z/nf
	c := (p + z*z/(2*nf)) / d
	h := z / d * math.Sqrt(p*(1-p)/nf+z*z/(4*nf*nf))
	return interval{round4(max(0, c-h)), round4(min(1, c+h))}
}

// gateSplit builds the library and the questions from sentence pairs, as
// gatesplit.New does.
func gateSplit(ps []pair) (corpus []string, pos, neg []string, answer map[string]string) {
	gp := make([]gatesplit.Pair, len(ps))
	for i, p := range ps {
		gp[i] = gatesplit.Pair{S1: p.s1, S2: p.s2, Score: p.score}
	}
	sp := gatesplit.New(gp)
	return sp.Library, sp.Pos, sp.Neg, sp.Answer
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
	space, floor, err := c.awaitCalibration(ctx, len(distinct))
	if err != nil {
		return nil, err
	}
	rep := &gateReport{Space: space, Floor: round4(floor), Corpus: len(distinct), Positives: len(pos), Negatives: len(neg)}
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
	hitCI, fiCI := wilson(posHit, len(pos)), wilson(negAny, len(neg))
	rep.Default = gatePoint{MinScore: round4(rep.Gate), Hit: round4(float64(posHit) / float64(len(pos))), FalseInjection: round4(float64(negAny) / float64(len(neg))),
		HitCI: &hitCI, FalseInjectionCI: &fiCI}
	for i := range 25 { // min score -0.1 to 0.5
		t := round4(-0.10 + 0.025*float64(i))
		rep.Curve = append(rep.Curve, gatePoint{MinScore: t, Hit: round4(share(posRel, t)), FalseInjection: round4(share(negRel, t))})
	}
	mark := rep.Default
	mark.HitCI, mark.FalseInjectionCI, mark.Default = nil, nil, true
	rep.Curve = append(rep.Curve, mark)
	sort.SliceStable(rep.Curve, func(i, j int) bool { return rep.Curve[i].MinScore < rep.Curve[j].MinScore })
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
func (c *gateClient) awaitCalibration(ctx context.Context, n int) (space string, floor float64, err error) {
	deadline := time.Now().Add(5 * time.Minute)
	for {
		var st struct {
			Data []struct {
				Space string `json:"space"`
			} `json:"data"`
			Calibration struct {
				Size  int     `json:"library_size"`
				Floor float64 `json:"floor"`
			} `json:"calibration"`
		}
		if err := c.do(ctx, http.MethodGet, "/v1/experiences/search?q=calibration", nil, &st); err != nil {
			return "", 0, err
		}
		if st.Calibration.Size >= n && len(st.Data) > 0 {
			return st.Data[0].Space, st.Calibration.Floor, nil
		}
		if time.Now().After(deadline) {
			return "", 0, fmt.Errorf("the gate was not calibrated on the whole library within 5 minutes (%d of %d experiences)", st.Calibration.Size, n)
		}
		select {
		case <-ctx.Done():
			return "", 0, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}
