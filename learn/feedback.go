package learn

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/dso-proxy/dso/library"
	"github.com/dso-proxy/dso/store"
)

// Defaults of FeedbackConfig.
const (
	DefaultThreshold   = 0.7  // grade at or above: an up-vote
	DefaultMinVotes    = 5    // votes before an experience can be retired
	DefaultApproval    = 0.66 // approval below which it is retired
	DefaultDedupeScore = 0.92 // similarity above which a lesson reinforces
	DefaultRetryEvery  = 30 * time.Second
	maxAttempts        = 3
)

// ErrUnknownTrace: feedback named a trace dso does not have.
var ErrUnknownTrace = errors.New("unknown trace id")

// ErrBadGrade: a grade outside [0, 1].
var ErrBadGrade = errors.New("grade must be between 0 and 1")

// Store is what a Learner needs of the store: the traces feedback names,
// the feedback queue with its votes, and the records whose votes it tallies.
type Store interface {
	GetTrace(ctx context.Context, id string) (store.Trace, error)
	GetExperience(ctx context.Context, id string) (store.Experience, error)
	Tally(ctx context.Context, experienceID string) (store.Tally, error)
	RecordFeedback(ctx context.Context, fb store.Feedback, up bool, experienceIDs []string) error
	PendingFeedback(ctx context.Context, limit int) ([]store.Feedback, error)
	MarkFeedback(ctx context.Context, traceID, voter string, updatedAt time.Time, state store.FeedbackState) error
	// PutVote records the distiller's vote when a lesson is distilled
	// again (see DistillerVoter).
	PutVote(ctx context.Context, v store.Vote) error
}

// FeedbackConfig configures a Learner.
type FeedbackConfig struct {
	// Library receives votes and lessons. Required.
	Library *library.Library
	// Store records feedback and votes. Nil: the library's store, which
	// must then implement Store (store.SQLite and store.Redis do).
	Store Store
	// Chat distils lessons. Nil: grades become votes only.
	Chat Chatter
	// Threshold splits up- from down-votes. 0: DefaultThreshold.
	Threshold float64
	// MinVotes and Approval govern retirement. 0: the defaults.
	MinVotes int
	Approval float64
	// DedupeScore: a lesson whose text is this similar (cosine of the
	// texts' embeddings, keys aside) to one in its domain reinforces it
	// instead of adding a near-copy. 0: DefaultDedupeScore.
	DedupeScore float32
	// RetryEvery is how often the worker looks for pending work when not
	// woken. 0: DefaultRetryEvery.
	RetryEvery time.Duration
	// Logger; nil discards.
	Logger *slog.Logger
}

// Learner turns feedback into votes at once and into lessons in the
// background. Feedback is durable before Grade returns; a Learner started
// after a crash distils what was left pending.
type Learner struct {
	cfg  FeedbackConfig
	st   Store
	wake chan struct{}

	mu     sync.Mutex // protects cancel
	cancel context.CancelFunc
	done   chan struct{}
}

// NewLearner returns a Learner; call Start to run its distillation worker.
func NewLearner(cfg FeedbackConfig) *Learner {
	if cfg.Library == nil {
		panic("learn: FeedbackConfig.Library is nil")
	}
	if cfg.Threshold == 0 {
		cfg.Threshold = DefaultThreshold
	}
	if cfg.MinVotes == 0 {
		cfg.MinVotes = DefaultMinVotes
	}
	if cfg.Approval == 0 {
		cfg.Approval = DefaultApproval
	}
	if cfg.DedupeScore == 0 {
		cfg.DedupeScore = DefaultDedupeScore
	}
	if cfg.RetryEvery == 0 {
		cfg.RetryEvery = DefaultRetryEvery
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Store == nil {
		st, ok := cfg.Library.Store().(Store)
		if !ok {
			panic(fmt.Sprintf("learn: the library's store (%T) cannot record feedback; set FeedbackConfig.Store", cfg.Library.Store()))
		}
		cfg.Store = st
	}
	return &Learner{cfg: cfg, st: cfg.Store, wake: make(chan struct{}, 1)}
}

// Grade records one voter's grade of a traced answer: durable feedback
// (queued for distillation), a vote on each experience injected into the
// answer, and the new confidence and status of those experiences.
func (l *Learner) Grade(ctx context.Context, fb store.Feedback) error {
	if !(fb.Grade >= 0 && fb.Grade <= 1) {
		return ErrBadGrade
	}
	tr, err := l.st.GetTrace(ctx, fb.TraceID)
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("%w: %q", ErrUnknownTrace, fb.TraceID)
	}
	if err != nil {
		return err
	}
	up := fb.Grade >= l.cfg.Threshold
	if err := l.st.RecordFeedback(ctx, fb, up, tr.ExperienceIDs); err != nil {
		return err
	}
	for _, id := range tr.ExperienceIDs {
		if err := l.rescore(ctx, id); err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
	}
	select {
	case l.wake <- struct{}{}:
	default:
	}
	return nil
}

// rescore sets an experience's confidence from its approval rate and
// retires it when enough voters reject it.
//
// It writes the status only to retire: retirement is kept, so rescoring
// never makes an experience active, and a status read here may be stale
// by the time of the write (another replica's grade, the network's votes,
// the operator). The update touches the confidence alone otherwise, and
// the store applies each field on its own.
func (l *Learner) rescore(ctx context.Context, id string) error {
	e, err := l.st.GetExperience(ctx, id)
	if err != nil {
		return err
	}
	t, err := l.st.Tally(ctx, id)
	if err != nil {
		return err
	}
	conf, status := Score(e.Prior, t, l.cfg.MinVotes, l.cfg.Approval)
	u := store.Update{Confidence: &conf}
	if status == store.StatusRetired && e.Status != store.StatusRetired {
		u.Status = &status
	}
	_, err = l.cfg.Library.Update(ctx, id, u)
	return err
}

// Score is the confidence and status that votes give an experience; prior
// is the confidence it was created with (store.Experience.Prior), never its
// current one, so the result depends on the tally alone and rescoring after
// every grade does not compound.
//
// The rule: each voter counts once, by their latest vote (store Tally), so
// one voter's ten grades weigh as one. With n voters and up of them
// approving, the confidence is the approval rate up/n smoothed toward the
// prior until minVotes voters have spoken:
//
//	w = min(1, n/minVotes);  confidence = w·(up/n) + (1−w)·prior
//
// An experience with at least minVotes voters and approval below the
// threshold is retired; one that recovers is not brought back (retirement
// is kept). Below the retrieval floor (the min_confidence setting) an
// experience is not injected even before it is retired.
func Score(prior float64, t store.Tally, minVotes int, approval float64) (float64, store.Status) {
	n := t.Up + t.Down
	if n == 0 {
		return prior, store.StatusActive
	}
	rate := float64(t.Up) / float64(n)
	conf := rate
	if n < minVotes {
		w := float64(n) / float64(minVotes)
		conf = w*rate + (1-w)*prior
	}
	if n >= minVotes && rate < approval {
		return conf, store.StatusRetired
	}
	return conf, store.StatusActive
}

// Start runs the distillation worker until ctx ends or Close.
func (l *Learner) Start(ctx context.Context) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cancel != nil {
		return
	}
	ctx, l.cancel = context.WithCancel(ctx)
	l.done = make(chan struct{})
	go l.run(ctx)
}

// Close stops the worker and waits for it. Pending work stays queued.
func (l *Learner) Close() error {
	l.mu.Lock()
	cancel, done := l.cancel, l.done
	l.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
	return nil
}

func (l *Learner) run(ctx context.Context) {
	defer close(l.done)
	t := time.NewTicker(l.cfg.RetryEvery)
	defer t.Stop()
	for {
		for ctx.Err() == nil {
			n, err := l.DistillPending(ctx, 8)
			if err != nil {
				l.cfg.Logger.Warn("distillation failed", "err", err.Error())
				break
			}
			if n == 0 {
				break
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-l.wake:
		case <-t.C:
		}
	}
}

// DistillPending works through up to limit pending feedback records and
// reports how many it finished (done, skipped or failed for good).
func (l *Learner) DistillPending(ctx context.Context, limit int) (int, error) {
	fbs, err := l.st.PendingFeedback(ctx, limit)
	if err != nil {
		return 0, err
	}
	finished := 0
	for _, fb := range fbs {
		state, err := l.distill(ctx, fb)
		if ctx.Err() != nil {
			return finished, ctx.Err()
		}
		if err != nil {
			l.cfg.Logger.Warn("distilling feedback failed", "trace_id", fb.TraceID, "attempt", fb.Attempts+1, "err", err.Error())
			state = store.FeedbackPending
			if fb.Attempts+1 >= maxAttempts {
				state = store.FeedbackFailed
			}
		}
		if err := l.st.MarkFeedback(ctx, fb.TraceID, fb.Voter, fb.UpdatedAt, state); err != nil {
			return finished, err
		}
		if state != store.FeedbackPending {
			finished++
		}
	}
	return finished, nil
}

func ptr[T any](v T) *T { return &v }

// DistillPrompt asks for one short, general lesson from a graded answer.
func DistillPrompt(tr store.Trace, fb store.Feedback) []Message {
	var b strings.Builder
	fmt.Fprintf(&b, "QUESTION:\n%s\n\nANSWER GIVEN:\n%s\n\nGRADE (0 to 1): %.2f\n", clipRunes(tr.Query, 4000), clipRunes(tr.Answer, 4000), fb.Grade)
	if fb.Comment != "" {
		fmt.Fprintf(&b, "\nGRADER'S COMMENT:\n%s\n", clipRunes(fb.Comment, 2000))
	}
	if fb.Correction != "" {
		fmt.Fprintf(&b, "\nCORRECT ANSWER:\n%s\n", clipRunes(fb.Correction, 4000))
	}
	return []Message{
		{Role: "system", Content: "You distil reusable lessons from graded answers. Write one to three sentences that would help answer similar questions correctly in future: state the fact, method or pitfall that made the difference. Keep it general: no names, numbers or details that only fit this one question unless they are the fact itself. Reply with the lesson only, no preamble."},
		{Role: "user", Content: b.String()},
	}
}

func clipRunes(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n])
}
