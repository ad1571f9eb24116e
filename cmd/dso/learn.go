package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/dso-proxy/dso/config"
	"github.com/dso-proxy/dso/learn"
	"github.com/dso-proxy/dso/providers"
)

func init() {
	commands["learn"] = command{
		summary: "improve the experience library from a graded dataset (training-free GRPO)",
		args:    "--dataset FILE.jsonl --model MODEL [flags]",
		about:   learnAbout,
		run:     learnCmd,
	}
}

const learnAbout = `Runs the training-free GRPO optimizer: for each {"query", "ground_truth",
"domain"?} line, answers the query GROUP times with the library's lessons
injected, grades the answers, and where the grades differ asks MODEL what
separated the better answers from the worse, as lessons to add, modify or
delete. No weights change. Progress goes to standard error, one line per
batch; the report, as JSON, to standard output.

Held-out items should not be rewordings of training items: what they
measure is whether the lessons transfer. The default grader (final) checks
the answer's final answer (\boxed{...}, an "answer:" line or the last line),
numbers within a tolerance; free-form ground truths get an LLM judge.
Lessons that state an item's answer are rejected.

Training accuracy is measured on the answers sampled during each epoch:
mean_grade is the mean grade of all answers, majority_accuracy the fraction
of items more than half of whose answers grade at least 0.5. Held-out
accuracy is the mean grade of one answer per held-out item at temperature 0,
with the library as it is after the epoch, reported beside the baseline
(before the first epoch, with the library as it was) and the run's cost
(chat calls and tokens), also summarised on standard error at the end.

With --checkpoint, the run's state is saved after each batch; running the
same command again resumes it without repeating applied operations.`

func learnCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("learn")
	var f storeFlags
	fs.StringVar(&f.config, "config", os.Getenv(config.EnvConfig), "YAML config `FILE` (default $DSO_CONFIG)")
	fs.StringVar(&f.data, "data", "", "data `DIR` (default from config, DSO_DATA or ./dso-data)")
	fs.StringVar(&f.embedder, "embedder", "", "the library's embedding space `SPEC`: backend, wordvec:FILE or hash[:DIM] (default from config)")
	fs.StringVar(&f.model, "embedding-model", "", "embedding `MODEL` for the backend embedder (default retrieval.embedding_model)")
	fs.StringVar(&f.backend, "backend", "", "`TYPE:URL` of the backend to use (default from config)")
	dataset := fs.String("dataset", "", "training set `FILE`, JSONL of {query, ground_truth, domain?} (required)")
	heldout := fs.String("heldout", "", "held-out set `FILE`, same format, evaluated after each epoch")
	model := fs.String("model", "", "`MODEL` that answers and states group advantages (required)")
	group := fs.Int("group", learn.DefaultGroup, "answers sampled per query")
	temperature := fs.Float64("temperature", learn.DefaultTemperature, "sampling temperature of the group")
	epochs := fs.Int("epochs", learn.DefaultEpochs, "passes over the dataset")
	batch := fs.Int("batch", learn.DefaultBatch, "queries per batch (one library update and checkpoint each)")
	grader := fs.String("grader", "", "`GRADER`: final[:TOL], exact, numeric[:TOL], contains, regex (ground truth is the pattern) or llm[:JUDGE_MODEL]; default final when every ground truth is short, else llm")
	checkpoint := fs.String("checkpoint", "", "checkpoint `FILE` to save to and resume from")
	domain := fs.String("domain", "", "`DOMAIN` of items that name none")
	confidence := fs.Float64("confidence", learn.DefaultLessonConfidence, "confidence of the lessons added")
	summarizeOver := fs.Int("summarize-over", learn.DefaultSummarizeOver, "summarise each answer of a group in its own call before comparing when the longest is over this many characters (1: always, -1: never)")
	if err := parseFlags(fs, args, stdout, stderr, "dataset", "model"); err != nil {
		return err
	}
	train, err := readDatasetFile(*dataset)
	if err != nil {
		return err
	}
	var held []learn.Item
	if *heldout != "" {
		if held, err = readDatasetFile(*heldout); err != nil {
			return err
		}
	}
	cfg, err := f.load()
	if err != nil {
		return err
	}
	router, err := providers.NewRouter(cfg.Backends, nil)
	if err != nil {
		return err
	}
	chat := learn.Backend{Router: router}
	if *grader == "" {
		*grader = learn.DefaultGraderSpec(train)
	}
	g, err := learn.ParseGrader(*grader, chat, *model)
	if err != nil {
		return err
	}
	st, err := openStore(ctx, cfg, slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		return err
	}
	defer st.Close()
	lib, err := openLibrary(ctx, st, cfg, 0, nil, router)
	if err != nil {
		return err
	}
	defer lib.Close()
	if err := lib.Prepare(ctx); err != nil {
		return err
	}
	opt, err := learn.NewOptimizer(learn.Config{
		Chat: chat, Library: lib, Model: *model, Grader: g,
		Group: *group, Temperature: *temperature, Epochs: *epochs, Batch: *batch,
		TopK: cfg.Retrieval.TopK, MinConfidence: cfg.Retrieval.MinConfidence, MaxTokens: cfg.Retrieval.MaxTokens, InjectWhole: cfg.Retrieval.InjectWhole,
		Domain: *domain, Confidence: *confidence, Checkpoint: *checkpoint, SummarizeOver: *summarizeOver,
		Progress: func(p learn.Progress) {
			fmt.Fprintf(stderr, "epoch %d/%d: %d/%d items, batch mean grade %.3f, ops +%d ~%d -%d (%d rejected), library %d, calls %d, tokens %d\n",
				p.Epoch, p.Epochs, p.Done, p.Items, p.MeanGrade, p.Ops.Add, p.Ops.Modify, p.Ops.Delete, p.Ops.Rejected, p.LibrarySize, p.Tokens.Calls, p.Tokens.Total)
		},
	})
	if err != nil {
		return err
	}
	rep, err := opt.Run(ctx, train, held)
	if err != nil {
		if errors.Is(err, context.Canceled) && *checkpoint != "" {
			fmt.Fprintf(stderr, "stopped; run the same command again to resume from %s\n", *checkpoint)
		}
		return err
	}
	summarize(stderr, rep)
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(rep)
}

// summarize writes the run's transfer and cost in one line each: held-out
// accuracy per epoch beside the no-library baseline.
func summarize(w io.Writer, rep learn.Report) {
	if rep.HeldoutBaseline != nil {
		fmt.Fprintf(w, "held-out accuracy (%d items): baseline %.3f", rep.HeldoutItems, *rep.HeldoutBaseline)
		for _, e := range rep.Epochs {
			if e.HeldoutAccuracy != nil {
				fmt.Fprintf(w, ", epoch %d %.3f (%+.3f)", e.Epoch, *e.HeldoutAccuracy, *e.HeldoutGain)
			}
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, "cost: %d calls, %d tokens (%d prompt, %d completion); library %d lessons\n",
		rep.Tokens.Calls, rep.Tokens.Total, rep.Tokens.Prompt, rep.Tokens.Completion, rep.LibrarySize)
}

func readDatasetFile(path string) ([]learn.Item, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	items, err := learn.ReadDataset(fh)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(items) == 0 {
		return nil, fmt.Errorf("%s: no items", path)
	}
	return items, nil
}
