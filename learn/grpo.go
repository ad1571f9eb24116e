package learn

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"sync"

	"github.com/dso-proxy/dso/inject"
	"github.com/dso-proxy/dso/library"
	"github.com/dso-proxy/dso/store"
)

// Library is what the optimizer needs of the experience library;
// *library.Library satisfies it.
type Library interface {
	Vector(ctx context.Context, text string) ([]float32, error)
	Search(ctx context.Context, q library.Query) ([]library.Result, error)
	Add(ctx context.Context, e store.Experience) (store.Experience, bool, error)
	// Modify gives lesson id a new text, keeping its confidence, status
	// and votes (library.Library.Modify).
	Modify(ctx context.Context, id, text string) (store.Experience, error)
	Delete(ctx context.Context, id string) error
	Len() int
}

var _ Library = (*library.Library)(nil)

// Defaults for Config.
const (
	DefaultGroup       = 5
	DefaultTemperature = 0.7
	DefaultEpochs      = 3
	DefaultBatch       = 8
	DefaultTopK        = 5
	// DefaultLessonConfidence is the confidence of lessons the optimizer adds.
	DefaultLessonConfidence = 0.6
)

// Config configures an Optimizer. Chat, Library and Model are
// required; every other zero field means its default.
type Config struct {
	// Chat answers, judges and states group advantages.
	Chat Chatter
	// Library is read before each answer and changed by the operations.
	Library Library
	// Model answers the questions and states the group advantages; it is
	// also the source model of the lessons added.
	Model string
	// Grader scores answers. nil: Exact.
	Grader Grader
	// Group is how many answers are sampled per question (G). 0:
	// DefaultGroup; it must be at least 2.
	Group int
	// Temperature samples the group. 0: DefaultTemperature.
	Temperature float64
	// Epochs is how many passes are made over the dataset. 0: DefaultEpochs.
	Epochs int
	// Batch is how many questions share one library state: their
	// operations are applied together after the batch, then checkpointed.
	// 0: DefaultBatch.
	Batch int
	// TopK, MinConfidence and MaxTokens shape retrieval and the injected
	// message as in serving. 0: DefaultTopK, none, inject.DefaultMaxTokens.
	TopK          int
	MinConfidence float64
	MaxTokens     int
	// InjectWhole injects a domain of at most this many lessons whole,
	// through the relevance gate (library.Query.WholeDomain). 0: off.
	InjectWhole int
	// GroupLessons is how many of the domain's lessons the group step is
	// shown: all of them in a library no larger, else the nearest to the
	// question. 0: DefaultGroupLessons.
	GroupLessons int
	// SummarizeOver: a group whose longest answer is over this many runes
	// has each answer summarised in its own call (with its grade and the
	// reference answer, SummaryPrompt) and the comparison shown the
	// summaries, as published, instead of answers clipped to their ends.
	// 0: DefaultSummarizeOver; negative: never; 1: always.
	SummarizeOver int
	// Domain is the domain of items that name none.
	Domain string
	// Confidence is given to added lessons. 0: DefaultLessonConfidence.
	Confidence float64
	// AllowLeaks keeps lessons that state an item's ground truth (see
	// Leaks). False, the default: they are rejected, since such a lesson
	// answers the questions it was learned from and teaches nothing. Only
	// tests of the loop's bookkeeping, whose fake lessons are answers, set it.
	AllowLeaks bool
	// Checkpoint is the file the run's state is saved to after each batch
	// (written atomically) and resumed from when it exists. Empty: none.
	Checkpoint string
	// Progress, if set, is called after each batch, once its operations
	// are applied and its checkpoint is written.
	Progress func(Progress)
}

// Optimizer is the training-free GRPO optimizer (Training-Free GRPO,
// Tencent Youtu, 2025): no weights change, only the experience library. For
// each question it retrieves lessons, samples a group of answers with them
// injected, grades them, and where the grades differ asks the model what
// separated the better answers from the worse (the semantic group
// advantage) as operations on the library.
type Optimizer struct {
	cfg Config
}

// NewOptimizer checks cfg and fills its defaults.
func NewOptimizer(cfg Config) (*Optimizer, error) {
	switch {
	case cfg.Chat == nil:
		return nil, errors.New("learn: Config.Chat is nil")
	case cfg.Library == nil:
		return nil, errors.New("learn: Config.Library is nil")
	case cfg.Model == "":
		return nil, errors.New("learn: Config.Model is empty")
	}
	if cfg.Grader == nil {
		cfg.Grader = Exact{}
	}
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	def(&cfg.Group, DefaultGroup)
	def(&cfg.Epochs, DefaultEpochs)
	def(&cfg.Batch, DefaultBatch)
	def(&cfg.TopK, DefaultTopK)
	def(&cfg.GroupLessons, DefaultGroupLessons)
	def(&cfg.SummarizeOver, DefaultSummarizeOver)
	if cfg.Temperature == 0 {
		cfg.Temperature = DefaultTemperature
	}
	if cfg.Confidence == 0 {
		cfg.Confidence = DefaultLessonConfidence
	}
	switch {
	case cfg.Group < 2:
		return nil, fmt.Errorf("learn: group %d: need at least 2 answers to compare", cfg.Group)
	case cfg.Epochs < 0 || cfg.Batch < 0 || cfg.TopK < 0:
		return nil, errors.New("learn: epochs, batch and top-k must be positive")
	case cfg.Temperature < 0 || cfg.Temperature > 2:
		return nil, fmt.Errorf("learn: temperature %v outside [0, 2]", cfg.Temperature)
	case cfg.Confidence < 0 || cfg.Confidence > 1:
		return nil, fmt.Errorf("learn: confidence %v outside [0, 1]", cfg.Confidence)
	}
	return &Optimizer{cfg: cfg}, nil
}

// Run optimises the library over train for the configured epochs,
// evaluating on heldout (may be empty) after each. With a checkpoint file
// it resumes where a stopped run left off; operations already applied are
// not applied again. On cancellation it returns the report so far and the
// context's error.
func (o *Optimizer) Run(ctx context.Context, train, heldout []Item) (Report, error) {
	if len(train) == 0 {
		return Report{}, errors.New("learn: empty dataset")
	}
	fp := fingerprint(o.cfg, train, heldout)
	cp, resumed, err := loadCheckpoint(o.cfg.Checkpoint, fp)
	if err != nil {
		return Report{}, err
	}
	applied := make(map[string]bool, len(cp.Applied))
	for _, id := range cp.Applied {
		applied[id] = true
	}
	r := &run{o: o, cp: cp, applied: applied}
	err = r.loop(ctx, train, heldout)
	rep := r.report(len(train), len(heldout))
	rep.Resumed = resumed
	return rep, err
}

type run struct {
	o       *Optimizer
	cp      *checkpoint
	applied map[string]bool
}

func (r *run) loop(ctx context.Context, train, heldout []Item) error {
	cfg, cp := r.o.cfg, r.cp
	if len(heldout) > 0 && !cp.BaselineDone {
		acc, tok, err := r.evaluate(ctx, heldout)
		if err != nil {
			return err
		}
		cp.HeldoutBaseline, cp.BaselineDone = &acc, true
		if len(cp.Epochs) == 0 {
			cp.Epochs = append(cp.Epochs, epochState{})
		}
		cp.Epochs[0].Tokens.plus(tok)
		if err := r.save(); err != nil {
			return err
		}
	}
	for cp.Epoch < cfg.Epochs {
		for len(cp.Epochs) <= cp.Epoch {
			cp.Epochs = append(cp.Epochs, epochState{})
		}
		es := &cp.Epochs[cp.Epoch]
		if len(cp.Pending) > 0 {
			// A stop while the last batch's operations were applied.
			if err := r.apply(ctx, es); err != nil {
				return err
			}
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if cp.Next < len(train) {
			end := min(len(train), cp.Next+cfg.Batch)
			bs, ops, err := r.batch(ctx, cp.Epoch, cp.Next, train[cp.Next:end])
			if err != nil {
				return err
			}
			es.Items += bs.Items
			es.Samples += bs.Samples
			es.GradeSum += bs.GradeSum
			es.MajorityRight += bs.MajorityRight
			es.Groups += bs.Groups
			es.BadReplies += bs.BadReplies
			es.Ops.Rejected += bs.Ops.Rejected
			es.Tokens.plus(bs.Tokens)
			cp.Next, cp.Pending = end, ops
			if err := r.save(); err != nil {
				return err
			}
			before := es.Ops
			if err := r.apply(ctx, es); err != nil {
				return err
			}
			if cfg.Progress != nil {
				d := es.Ops
				d.Add -= before.Add
				d.Modify -= before.Modify
				d.Delete -= before.Delete
				d.Keep -= before.Keep
				d.Rejected = bs.Ops.Rejected
				cfg.Progress(Progress{
					Epoch: cp.Epoch + 1, Epochs: cfg.Epochs, Done: end, Items: len(train),
					MeanGrade: bs.GradeSum / float64(max(1, bs.Samples)), Ops: d,
					LibrarySize: es.LibrarySize, Tokens: r.tokens(),
				})
			}
			continue
		}
		if len(heldout) > 0 && es.Heldout == nil {
			acc, tok, err := r.evaluate(ctx, heldout)
			if err != nil {
				return err
			}
			es.Heldout = &acc
			es.Tokens.plus(tok)
		}
		es.LibrarySize = cfg.Library.Len()
		cp.Epoch++
		cp.Next = 0
		if err := r.save(); err != nil {
			return err
		}
	}
	return nil
}

// apply applies the pending operations not yet applied, saving the
// checkpoint after each, then clears them.
func (r *run) apply(ctx context.Context, es *epochState) error {
	cfg := r.o.cfg
	for _, op := range r.cp.Pending {
		if r.applied[op.ID] {
			continue
		}
		if (op.Kind == OpAdd || op.Kind == OpModify) && CheckLesson(op.Text, op.Key) != nil {
			// The same bar as a lesson distilled from feedback: no echo of
			// the question, no question, a self-contained instruction.
			// (Rejecting it again after a stop changes nothing.)
			es.Ops.Rejected++
			r.applied[op.ID] = true
			continue
		}
		switch op.Kind {
		case OpAdd:
			if err := r.addLesson(ctx, op.Domain, op.Text, op.Key); err != nil {
				return err
			}
			es.Ops.Add++
		case OpModify:
			if err := r.modifyLesson(ctx, op.Target, op.Text); err != nil {
				return err
			}
			es.Ops.Modify++
		case OpDelete:
			if err := r.deleteLesson(ctx, op.Target); err != nil {
				return err
			}
			es.Ops.Delete++
		case OpKeep:
			es.Ops.Keep++
		}
		r.applied[op.ID] = true
		r.cp.Applied = append(r.cp.Applied, op.ID)
		if op.Kind != OpKeep {
			if err := r.save(); err != nil {
				return err
			}
		}
	}
	r.cp.Pending = nil
	es.LibrarySize = cfg.Library.Len()
	return r.save()
}

// addLesson stores text, keyed by the question it was learned from;
// storing a text already there changes nothing, so an operation repeated
// after a stop is harmless.
func (r *run) addLesson(ctx context.Context, domain, text, key string) error {
	cfg := r.o.cfg
	_, _, err := cfg.Library.Add(ctx, store.Experience{
		Text: text, Key: key, Domain: domain, Confidence: cfg.Confidence, SourceModel: cfg.Model,
	})
	if err != nil {
		return fmt.Errorf("learn: adding a lesson: %w", err)
	}
	return nil
}

// modifyLesson moves lesson id, with its votes, to text; one already
// gone was modified before a stop, and is not an error.
func (r *run) modifyLesson(ctx context.Context, id, text string) error {
	if _, err := r.o.cfg.Library.Modify(ctx, id, text); err != nil && !errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("learn: modifying a lesson: %w", err)
	}
	return nil
}

// deleteLesson removes id; one already gone is not an error.
func (r *run) deleteLesson(ctx context.Context, id string) error {
	if err := r.o.cfg.Library.Delete(ctx, id); err != nil && !errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("learn: deleting a lesson: %w", err)
	}
	return nil
}

// batch samples and grades items (starting at index first of the epoch)
// with the library as it is, and returns their stats and the operations
// they ask for: conflicts resolved, then similar additions merged.
func (r *run) batch(ctx context.Context, epoch, first int, items []Item) (epochState, []pendingOp, error) {
	var bs epochState
	var ops []pendingOp
	seen := map[string]bool{}
	for i, it := range items {
		res, err := r.step(ctx, it)
		if err != nil {
			return bs, nil, fmt.Errorf("item %d: %w", first+i+1, err)
		}
		bs.Items++
		bs.Samples += len(res.grades)
		right := 0
		for _, g := range res.grades {
			bs.GradeSum += g
			if g >= 0.5 {
				right++
			}
		}
		if 2*right > len(res.grades) {
			bs.MajorityRight++
		}
		if res.advantage {
			bs.Groups++
		}
		bs.BadReplies += res.bad
		bs.Ops.Rejected += res.rejected
		bs.Tokens.plus(res.tokens)
		for _, op := range res.ops {
			op.ID = opID(epoch, first+i, op)
			if !seen[op.ID] {
				seen[op.ID] = true
				ops = append(ops, op)
			}
		}
	}
	ops, rejected := resolveConflicts(ops)
	bs.Ops.Rejected += rejected
	ops, mr, err := r.merge(ctx, epoch, first, ops)
	bs.Tokens.plus(mr.tokens)
	bs.BadReplies += mr.bad
	bs.Ops.Rejected += mr.rejected
	if err != nil {
		return bs, nil, err
	}
	return bs, ops, nil
}

func opID(epoch, item int, op pendingOp) string {
	h := sha256.New()
	fmt.Fprintf(h, "%d\x00%d\x00%s\x00%s\x00%s\x00%s", epoch, item, op.Kind, op.Target, op.Domain, op.Text)
	return hex.EncodeToString(h.Sum(nil)[:8])
}

// stepResult is one item's group.
type stepResult struct {
	grades    []float64
	advantage bool
	ops       []pendingOp
	rejected  int
	bad       int
	tokens    Tokens
}

func (r *run) domain(it Item) string {
	if it.Domain != "" {
		return it.Domain
	}
	return r.o.cfg.Domain
}

// step runs one item: retrieve, sample a group, grade, and, where the
// grades differ, ask for the group advantage.
func (r *run) step(ctx context.Context, it Item) (stepResult, error) {
	cfg := r.o.cfg
	var res stepResult
	shown, msgs, err := r.prompt(ctx, it)
	if err != nil {
		return res, err
	}
	answers, err := r.sample(ctx, msgs, &res.tokens)
	if err != nil {
		return res, err
	}
	res.grades = make([]float64, len(answers))
	critiques := make([]string, len(answers))
	for k, a := range answers {
		g, c, u, err := critique(ctx, cfg.Grader, it, a)
		res.tokens.graded(u)
		switch {
		case errors.Is(err, ErrBadJudgeReply):
			res.bad++
		case err != nil:
			return res, fmt.Errorf("grading: %w", err)
		}
		res.grades[k], critiques[k] = g, c
	}
	same := true
	for _, g := range res.grades[1:] {
		same = same && g == res.grades[0]
	}
	if same {
		return res, nil
	}
	res.advantage = true
	listed, err := r.groupLessons(ctx, it, shown)
	if err != nil {
		return res, err
	}
	seen, summarized, err := r.rollouts(ctx, it, answers, res.grades, critiques, &res.tokens)
	if err != nil {
		return res, err
	}
	reply, u, err := cfg.Chat.Chat(ctx, advantageRequest(cfg.Model, it, listed, len(shown), seen, summarized, res.grades))
	res.tokens.call(u)
	if err != nil {
		return res, fmt.Errorf("group advantage: %w", err)
	}
	adv, err := ParseAdvantage(reply)
	if err != nil {
		res.bad++
		return res, nil
	}
	res.rejected = len(adv.Rejected)
	byRef := make(map[string]library.Result, 2*len(listed))
	for i, s := range listed {
		byRef["E"+strconv.Itoa(i+1)] = s
		byRef[s.ID] = s
	}
	changes := 0
	for _, op := range adv.Ops {
		p, ok := r.resolve(op, it, byRef)
		if ok && p.Kind != OpKeep {
			changes++
			ok = changes <= MaxGroupOps
		}
		if !ok {
			res.rejected++
			continue
		}
		res.ops = append(res.ops, p)
	}
	return res, nil
}

// sample draws the group: Config.Group answers to msgs, concurrently, at
// the sampling temperature; their cost is added to tokens.
func (r *run) sample(ctx context.Context, msgs []Message, tokens *Tokens) ([]string, error) {
	cfg := r.o.cfg
	temp := cfg.Temperature
	answers := make([]string, cfg.Group)
	usages := make([]Usage, cfg.Group)
	errs := make([]error, cfg.Group)
	var wg sync.WaitGroup
	for k := range answers {
		wg.Go(func() {
			answers[k], usages[k], errs[k] = cfg.Chat.Chat(ctx, ChatRequest{Model: cfg.Model, Messages: msgs, Temperature: &temp})
		})
	}
	wg.Wait()
	for k := range answers {
		tokens.call(usages[k])
		if errs[k] != nil {
			return nil, fmt.Errorf("sampling: %w", errs[k])
		}
	}
	return answers, nil
}

// prompt retrieves the lessons for it and builds the answering messages:
// the lessons as one system message (when there are any), then the query.
func (r *run) prompt(ctx context.Context, it Item) ([]library.Result, []Message, error) {
	cfg := r.o.cfg
	user := Message{Role: "user", Content: it.Query}
	c, err := cfg.Library.Vector(ctx, it.Query)
	if err != nil {
		return nil, nil, fmt.Errorf("embedding the query: %w", err)
	}
	found, err := cfg.Library.Search(ctx, library.Query{Vector: c, Text: it.Query, K: cfg.TopK, Domain: r.domain(it), MinConfidence: cfg.MinConfidence, WholeDomain: cfg.InjectWhole})
	if errors.Is(err, library.ErrEmpty) || err == nil && len(found) == 0 {
		return nil, []Message{user}, nil
	}
	if err != nil {
		return nil, nil, err
	}
	notes := make([]inject.Note, len(found))
	for i, e := range found {
		notes[i] = inject.Note{ID: e.ID, Domain: e.Domain, Text: e.Text, Confidence: e.Confidence}
	}
	sys, used := inject.Build(notes, inject.Options{MaxTokens: cfg.MaxTokens, Counter: inject.CounterFor(cfg.Model)})
	if sys == "" {
		return nil, []Message{user}, nil
	}
	in := make(map[string]bool, len(used))
	for _, id := range used {
		in[id] = true
	}
	shown := found[:0:0]
	for _, e := range found {
		if in[e.ID] {
			shown = append(shown, e)
		}
	}
	return shown, []Message{{Role: "system", Content: sys}, user}, nil
}

// evaluate answers each held-out item once at temperature 0 with the
// library as it is and returns the mean grade.
func (r *run) evaluate(ctx context.Context, items []Item) (float64, Tokens, error) {
	cfg := r.o.cfg
	var tok Tokens
	sum := 0.0
	zero := 0.0
	for i, it := range items {
		_, msgs, err := r.prompt(ctx, it)
		if err != nil {
			return 0, tok, fmt.Errorf("held-out item %d: %w", i+1, err)
		}
		a, u, err := cfg.Chat.Chat(ctx, ChatRequest{Model: cfg.Model, Messages: msgs, Temperature: &zero})
		tok.call(u)
		if err != nil {
			return 0, tok, fmt.Errorf("held-out item %d: %w", i+1, err)
		}
		g, u, err := cfg.Grader.Grade(ctx, it.Query, it.GroundTruth, a)
		tok.graded(u)
		if err != nil && !errors.Is(err, ErrBadJudgeReply) {
			return 0, tok, fmt.Errorf("held-out item %d: grading: %w", i+1, err)
		}
		sum += g
	}
	return sum / float64(len(items)), tok, nil
}
