package learn

// Progress reports one finished batch.
type Progress struct {
	Epoch, Epochs int // 1-based
	Done, Items   int // items of the epoch done, of all
	// MeanGrade is the batch's mean grade over sampled answers.
	MeanGrade   float64
	Ops         OpCounts // the batch's operations
	LibrarySize int
	Tokens      Tokens // the run's, so far
}

// OpCounts counts library operations. Applied operations are counted once
// even if a resumed run had to execute them again.
type OpCounts struct {
	Add      int `json:"add"`
	Modify   int `json:"modify"`
	Delete   int `json:"delete"`
	Keep     int `json:"keep"`
	Rejected int `json:"rejected"` // malformed, unknown id, or in conflict
}

func (c *OpCounts) plus(d OpCounts) {
	c.Add += d.Add
	c.Modify += d.Modify
	c.Delete += d.Delete
	c.Keep += d.Keep
	c.Rejected += d.Rejected
}

// Tokens is what a run cost: the chat calls it made (answers, group
// advantages, merges, and judge calls that report usage) and the Usage
// the backends reported for them.
type Tokens struct {
	Calls      int `json:"calls"`
	Prompt     int `json:"prompt"`
	Completion int `json:"completion"`
	Total      int `json:"total"`
}

// call counts one chat call and its usage.
func (t *Tokens) call(u Usage) {
	t.Calls++
	t.add(u)
}

// graded counts a grader's usage: a call when it reports any (a judge),
// none for local graders.
func (t *Tokens) graded(u Usage) {
	if u != (Usage{}) {
		t.Calls++
	}
	t.add(u)
}

func (t *Tokens) add(u Usage) {
	t.Prompt += u.PromptTokens
	t.Completion += u.CompletionTokens
	t.Total += u.PromptTokens + u.CompletionTokens
}

func (t *Tokens) plus(d Tokens) {
	t.Calls += d.Calls
	t.Prompt += d.Prompt
	t.Completion += d.Completion
	t.Total += d.Total
}

// Report is the outcome of a run.
//
// Accuracy on the training set is measured while learning, on the answers
// sampled in that epoch (each with the library as it was at the start of
// its batch): MeanGrade is the mean grade of all sampled answers, and
// MajorityAccuracy the fraction of items more than half of whose G answers
// grade at least 0.5. Held-out accuracy is the mean grade of one answer per
// held-out item at temperature 0, with the library as it is at the end of
// the epoch (HeldoutBaseline: before the first epoch).
type Report struct {
	Model           string        `json:"model"`
	Items           int           `json:"items"`
	HeldoutItems    int           `json:"heldout_items"`
	Group           int           `json:"group"`
	Epochs          []EpochReport `json:"epochs"`
	HeldoutBaseline *float64      `json:"heldout_baseline,omitempty"`
	LibrarySize     int           `json:"library_size"`
	Ops             OpCounts      `json:"operations"`
	Tokens          Tokens        `json:"tokens"`
	// Resumed says the run went on from a checkpoint.
	Resumed bool `json:"resumed"`
}

// EpochReport is one epoch of a Report.
type EpochReport struct {
	Epoch            int      `json:"epoch"` // 1-based
	Items            int      `json:"items"` // items sampled so far
	MeanGrade        float64  `json:"mean_grade"`
	MajorityAccuracy float64  `json:"majority_accuracy"`
	HeldoutAccuracy  *float64 `json:"heldout_accuracy,omitempty"`
	// HeldoutGain is HeldoutAccuracy less the run's HeldoutBaseline (the
	// accuracy with the library as it was before the first epoch).
	HeldoutGain *float64 `json:"heldout_gain,omitempty"`
	// Groups is how many items' groups had differing grades (an advantage).
	Groups int `json:"groups_with_advantage"`
	// BadReplies counts advantage replies with no operations object and
	// judge replies without a grade (scored 0).
	BadReplies  int      `json:"bad_replies"`
	Ops         OpCounts `json:"operations"`
	Tokens      Tokens   `json:"tokens"`
	LibrarySize int      `json:"library_size"`
}

func (r *run) tokens() Tokens {
	var t Tokens
	for _, e := range r.cp.Epochs {
		t.plus(e.Tokens)
	}
	return t
}

func (r *run) report(items, heldout int) Report {
	cfg := r.o.cfg
	rep := Report{
		Model: cfg.Model, Items: items, HeldoutItems: heldout, Group: cfg.Group,
		HeldoutBaseline: r.cp.HeldoutBaseline, LibrarySize: cfg.Library.Len(), Tokens: r.tokens(),
		Epochs: []EpochReport{},
	}
	for i, e := range r.cp.Epochs {
		rep.Ops.plus(e.Ops)
		if e.Items == 0 && e.Heldout == nil {
			continue
		}
		var gain *float64
		if e.Heldout != nil && r.cp.HeldoutBaseline != nil {
			gain = ptr(*e.Heldout - *r.cp.HeldoutBaseline)
		}
		rep.Epochs = append(rep.Epochs, EpochReport{
			HeldoutGain: gain,
			Epoch:       i + 1, Items: e.Items,
			MeanGrade:        e.GradeSum / float64(max(1, e.Samples)),
			MajorityAccuracy: float64(e.MajorityRight) / float64(max(1, e.Items)),
			HeldoutAccuracy:  e.Heldout, Groups: e.Groups, BadReplies: e.BadReplies,
			Ops: e.Ops, Tokens: e.Tokens, LibrarySize: e.LibrarySize,
		})
	}
	return rep
}
