package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dso-proxy/dso/config"
	"github.com/dso-proxy/dso/library"
	"github.com/dso-proxy/dso/store"
	"golang.org/x/sync/errgroup"
)

func init() {
	commands["import"] = command{
		summary: "import experiences from JSONL (embedded, indexed, stored)",
		about: `Reads one experience a line, {"text", "domain"?, "confidence"?, "key"?, ...}
as dso export writes them, checks every line first (a bad file writes
nothing), then embeds, indexes and stores them; those already there are
counted, not repeated. The store is created where there is none.`,
		run: importCmd,
	}
	commands["export"] = command{
		summary: "export experiences as JSONL",
		about: `Writes every experience of the store, one JSON object a line, as dso
import reads them. It only reads: a data directory holding no store is an
error, and nothing is created.`,
		run: exportCmd,
	}
}

// record is one experience in the JSONL exchange format.
type record struct {
	ID         string   `json:"id,omitempty"`
	Text       string   `json:"text"`
	Domain     string   `json:"domain,omitempty"`
	Confidence *float64 `json:"confidence,omitempty"`
	// Prior is the confidence votes smooth toward (default: confidence);
	// Key the question the lesson was learned from, embedded with it.
	Prior       float64   `json:"prior,omitempty"`
	Key         string    `json:"key,omitempty"`
	Status      string    `json:"status,omitempty"`
	SourceModel string    `json:"source_model,omitempty"`
	SourceNode  string    `json:"source_node,omitempty"`
	TraceID     string    `json:"trace_id,omitempty"`
	CreatedAt   time.Time `json:"created_at,omitzero"`
	UpdatedAt   time.Time `json:"updated_at,omitzero"`
}

// storeFlags are the flags import and export share to find the store.
type storeFlags struct {
	file, data, redis, config, embedder, model, backend string
}

func (f *storeFlags) register(fs *flag.FlagSet, withEmbed bool) {
	fs.StringVar(&f.config, "config", os.Getenv(config.EnvConfig), "YAML config `FILE` (default $DSO_CONFIG)")
	fs.StringVar(&f.data, "data", "", "data `DIR` (default from config, DSO_DATA or ./dso-data)")
	fs.StringVar(&f.redis, "redis", "", "the shared store's Redis `URL` instead of the data directory (default from config or DSO_REDIS)")
	fs.StringVar(&f.file, "file", "-", "JSONL `FILE`; - is standard input/output")
	if withEmbed {
		fs.StringVar(&f.embedder, "embedder", "", "the library's embedding space `SPEC`: hash[:DIM], wordvec:FILE, model:NAME or backend (default from config)")
		fs.StringVar(&f.model, "model", "", "embedding `MODEL` on a backend: the same as --embedder model:NAME")
		fs.StringVar(&f.backend, "backend", "", "`TYPE:URL` of the backend that embeds (default from config)")
	}
}

func (f *storeFlags) load() (config.Config, error) {
	cfg := config.Default()
	if f.config != "" {
		var err error
		if cfg, err = config.Load(f.config); err != nil {
			return cfg, err
		}
	}
	if err := cfg.ApplyEnv(os.Getenv); err != nil {
		return cfg, err
	}
	if f.data != "" {
		cfg.Data = f.data
	}
	if f.redis != "" {
		cfg.Redis = config.Secret(f.redis)
	}
	if f.model != "" {
		cfg.Retrieval.EmbeddingModel = f.model
		cfg.Retrieval.Embedder = "backend"
	}
	if f.embedder != "" {
		cfg.Retrieval.Embedder = f.embedder
	}
	if f.backend != "" {
		b, err := config.ParseBackendSpec(f.backend)
		if err != nil {
			return cfg, err
		}
		cfg.SetBackends([]config.Backend{b})
	}
	return cfg, cfg.Validate()
}

func exportCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("export")
	var f storeFlags
	f.register(fs, false)
	if err := parseFlags(fs, args, stdout, stderr); err != nil {
		return err
	}
	cfg, err := f.load()
	if err != nil {
		return err
	}
	st, err := openExistingStore(ctx, cfg, slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		return err
	}
	defer st.Close()
	out := stdout
	if f.file != "-" {
		fh, err := os.Create(f.file)
		if err != nil {
			return err
		}
		defer fh.Close()
		out = fh
	}
	w := bufio.NewWriter(out)
	enc := json.NewEncoder(w)
	n := 0
	err = st.EachExperience(ctx, func(e store.Experience) error {
		n++
		conf := e.Confidence
		prior := e.Prior // written only where votes moved the confidence from it
		if prior == conf {
			prior = 0
		}
		return enc.Encode(record{
			ID: e.ID, Text: e.Text, Domain: e.Domain, Confidence: &conf, Prior: prior, Key: e.Key, Status: string(e.Status),
			SourceModel: e.SourceModel, SourceNode: e.SourceNode, TraceID: e.TraceID, CreatedAt: e.CreatedAt, UpdatedAt: e.UpdatedAt,
		})
	})
	if err != nil {
		return err
	}
	if err := w.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "exported %d experiences\n", n)
	if c, ok := out.(io.Closer); ok && out != stdout {
		return c.Close()
	}
	return nil
}

// importBatch is how many experiences are embedded and stored together:
// one commit each, so a page of the id index that several of the batch's
// rows land on is written once for all of them. Measured at 1M on 2
// cores: 8,192 imported 18-19k a second, 32,768 22k (the store's bulk
// cache holds a batch's dirty pages; see store.Options.BulkLoad).
const importBatch = 32768

// importInFlight is how many batches are stored at once: while one
// batch's rows are written (one writer, much of it waiting on the disk),
// the next is embedded on the other cores.
const importInFlight = 2

// importRecords stores recs through lib in batches, importInFlight at a
// time, and returns how many were new. On an error it stops taking
// batches and returns the first, naming its lines; batches already
// committed stay (an import run again skips them).
func importRecords(ctx context.Context, lib *library.Library, recs []record, node string) (int, error) {
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(importInFlight)
	var created atomic.Int64
	for start := 0; start < len(recs) && ctx.Err() == nil; start += importBatch {
		batch := recs[start:min(len(recs), start+importBatch)]
		g.Go(func() error {
			es := make([]store.Experience, len(batch))
			for i, r := range batch {
				es[i] = store.Experience{Text: r.Text, Key: r.Key, Domain: r.Domain, Confidence: *r.Confidence, Prior: r.Prior, Status: store.Status(r.Status),
					SourceModel: r.SourceModel, SourceNode: r.SourceNode, TraceID: r.TraceID}
				if es[i].SourceNode == "" {
					es[i].SourceNode = node
				}
			}
			_, made, err := lib.AddMany(ctx, es)
			if err != nil {
				return fmt.Errorf("storing lines %d-%d: %w", start+1, start+len(batch), err)
			}
			for _, c := range made {
				if c {
					created.Add(1)
				}
			}
			return nil
		})
	}
	err := g.Wait()
	return int(created.Load()), err
}

func importCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("import")
	var f storeFlags
	f.register(fs, true)
	if err := parseFlags(fs, args, stdout, stderr); err != nil {
		return err
	}
	cfg, err := f.load()
	if err != nil {
		return err
	}
	in := io.Reader(os.Stdin)
	if f.file != "-" {
		fh, err := os.Open(f.file)
		if err != nil {
			return err
		}
		defer fh.Close()
		in = fh
	}
	// Read and check every line first: a bad file writes nothing.
	recs, err := readRecords(in)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	st, err := openStoreIn(ctx, cfg, log, store.Options{BulkLoad: true})
	if err != nil {
		return err
	}
	defer st.Close()
	lib, err := openLibrary(ctx, st, cfg, -1, nil, nil, offline)
	if err != nil {
		return err
	}
	defer lib.Close()
	if err := lib.Prepare(ctx); err != nil {
		return err
	}
	created, err := importRecords(ctx, lib, recs, cfg.NodeID)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "imported %d experiences (%d new, %d already present)\n", len(recs), created, len(recs)-created)
	return nil
}

// parseChunk is how many lines readRecords parses at once, spread over
// the cores: decoding JSON is most of reading a large file.
const parseChunk = 4096

// readRecords reads JSONL, checking each line; errors name the line.
func readRecords(r io.Reader) ([]record, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	// Parsed chunk by chunk and joined once: appending a million records
	// to one slice copies them over and over as it grows.
	var chunks [][]record
	var errs []error
	var lines [][]byte
	var nums []int
	parse := func() {
		rs, es := parseLines(lines, nums)
		chunks, errs = append(chunks, rs), append(errs, es...)
		lines, nums = lines[:0], nums[:0]
	}
	for line := 1; sc.Scan(); line++ {
		if b := sc.Bytes(); len(b) > 0 {
			lines, nums = append(lines, bytes.Clone(b)), append(nums, line)
		}
		if len(lines) == parseChunk {
			parse()
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	parse()
	return slices.Concat(chunks...), errors.Join(errs...)
}

// parseLines parses lines (numbered nums) on every core, and returns
// their records and errors in line order.
func parseLines(lines [][]byte, nums []int) ([]record, []error) {
	recs := make([]record, len(lines))
	lineErrs := make([][]error, len(lines))
	workers := min(runtime.GOMAXPROCS(0), max(1, len(lines)/256))
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; i < len(lines); i += workers {
				recs[i], lineErrs[i] = parseRecord(lines[i], nums[i])
			}
		})
	}
	wg.Wait()
	var errs []error
	kept := recs[:0]
	for i, es := range lineErrs {
		errs = append(errs, es...)
		if recs[i].Confidence != nil { // decoded, if not necessarily valid
			kept = append(kept, recs[i])
		}
	}
	return kept, errs
}

// parseRecord decodes and checks one line.
func parseRecord(b []byte, line int) (record, []error) {
	var rec record
	if err := json.Unmarshal(b, &rec); err != nil {
		return record{}, []error{fmt.Errorf("line %d: not a JSON object: %v", line, err)}
	}
	var errs []error
	if store.NormalizeText(rec.Text) == "" {
		errs = append(errs, fmt.Errorf("line %d: text is required", line))
	}
	if rec.Confidence == nil {
		c := 0.5
		rec.Confidence = &c
	} else if *rec.Confidence < 0 || *rec.Confidence > 1 {
		errs = append(errs, fmt.Errorf("line %d: confidence must be between 0 and 1", line))
	}
	if rec.Prior < 0 || rec.Prior > 1 {
		errs = append(errs, fmt.Errorf("line %d: prior must be between 0 and 1", line))
	}
	if rec.Status != "" && !store.Status(rec.Status).Valid() {
		errs = append(errs, fmt.Errorf("line %d: status must be active or retired", line))
	}
	return rec, errs
}
