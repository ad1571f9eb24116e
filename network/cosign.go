package network

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// The log side of C2SP tlog-witness: after the node's log signs a
// checkpoint, it submits it to each of its witnesses with a consistency
// proof from the size that witness cosigned last, and serves the
// checkpoint with the cosignatures it got appended, so that followers
// fetch them with it.

// Defaults of a log's witnessing.
const (
	// DefaultWitnessTimeout bounds one request to a witness.
	DefaultWitnessTimeout = 10 * time.Second
	// DefaultWitnessRetry is the wait after a failed submission, doubled
	// after each failure in a row up to DefaultWitnessMaxRetry.
	DefaultWitnessRetry    = time.Second
	DefaultWitnessMaxRetry = 2 * time.Minute
	// maxWitnessAnswer bounds what is read of a witness's answer: a few
	// signature lines, or a size.
	maxWitnessAnswer = 8 << 10
	// maxConflicts bounds the 409 round trips of one submission: one
	// learns the witness's size, a second means it moved meanwhile.
	maxConflicts = 2
)

// ErrWitnessAnswer reports a witness's 200 answer that holds no valid
// cosignature by its key of the checkpoint submitted.
var ErrWitnessAnswer = errors.New("network: witness: answer holds no valid cosignature")

// Witness states, as reported of the witnesses a log asks.
const (
	CosignOK      = "ok"      // the checkpoint served carries its cosignature
	CosignPending = "pending" // asked, not answered yet
	CosignFailing = "failing" // its last answer was a refusal or an error
)

// RemoteWitness is a witness a log asks for cosignatures.
type RemoteWitness struct {
	// URL is the witness's submission prefix: the log POSTs to
	// URL/add-checkpoint. A dso witness's is <node>/log/<network>/witness.
	URL string
	// Key is the verifier key of the witness's cosignatures: an Ed25519
	// cosignature/v1 key (type 0x04), or a dso node's verifier key,
	// whose key it cosigns with (see Identity.WitnessKey).
	Key string
}

// WitnessedLogConfig configures the witnessing of a node's log.
type WitnessedLogConfig struct {
	// Log is the node's log. Required.
	Log *Log
	// Witnesses are asked to cosign each checkpoint the log signs.
	Witnesses []RemoteWitness
	// Client makes the requests. nil: one with DefaultWitnessTimeout.
	Client *http.Client
	// Retry and MaxRetry bound the wait after failures in a row (see
	// DefaultWitnessRetry, used for 0).
	Retry, MaxRetry time.Duration
	Logger          *slog.Logger
}

// WitnessedLog is a node's log as it is served: its latest signed
// checkpoint with the cosignatures its witnesses gave of it appended, and
// its tiles. Run asks the witnesses; appends never wait on them, and a
// checkpoint is served at once, with the cosignatures as they come.
type WitnessedLog struct {
	log       *Log
	cfg       WitnessedLogConfig
	witnesses []*remoteWitness
}

var _ TileSource = (*WitnessedLog)(nil)

// remoteWitness is one witness of the log, and what it cosigned.
type remoteWitness struct {
	RemoteWitness
	key note.Verifier

	mu         sync.Mutex // protects the fields below
	size       int64      // the size it cosigned last, as far as known
	msg        []byte     // the log's checkpoint it cosigned last
	line       []byte     // its cosignature of msg, as note signature lines
	failures   int        // in a row
	lastErr    string
	cosignedAt time.Time
}

// NewWitnessedLog checks cfg and returns the log served with its
// cosignatures; call Run to ask for them.
func NewWitnessedLog(cfg WitnessedLogConfig) (*WitnessedLog, error) {
	if cfg.Log == nil {
		return nil, errors.New("network: witnessed log needs a log")
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: DefaultWitnessTimeout}
	}
	if cfg.Retry <= 0 {
		cfg.Retry = DefaultWitnessRetry
	}
	if cfg.MaxRetry <= 0 {
		cfg.MaxRetry = DefaultWitnessMaxRetry
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	w := &WitnessedLog{log: cfg.Log, cfg: cfg}
	for _, rw := range cfg.Witnesses {
		v, err := fnote.NewVerifierForCosignatureV1(rw.Key)
		if err != nil {
			return nil, fmt.Errorf("network: witness %s: key: %w", rw.URL, err)
		}
		if rw.URL == "" {
			return nil, fmt.Errorf("network: witness %s: no URL", v.Name())
		}
		w.witnesses = append(w.witnesses, &remoteWitness{RemoteWitness: rw, key: v})
	}
	return w, nil
}

// Checkpoint implements TileSource: the log's latest checkpoint, with
// the cosignatures of it the witnesses gave.
func (w *WitnessedLog) Checkpoint(ctx context.Context) ([]byte, error) {
	msg, err := w.log.Checkpoint(ctx)
	if err != nil {
		return nil, err
	}
	out := msg
	for _, r := range w.witnesses {
		if line := r.cosignature(msg); line != nil {
			out = append(out, line...)
		}
	}
	return out, nil
}

// ReadTile implements TileSource.
func (w *WitnessedLog) ReadTile(ctx context.Context, t tlog.Tile) ([]byte, error) {
	return w.log.ReadTile(ctx, t)
}

// Run asks each witness to cosign each checkpoint the log signs, until
// ctx is done: the latest one whenever the witness is free, so a witness
// that is slow or down skips those signed meanwhile, never the newest.
func (w *WitnessedLog) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for _, r := range w.witnesses {
		wg.Go(func() { r.run(ctx, w) })
	}
	wg.Wait()
}

// run submits the log's checkpoints to r until ctx is done.
func (r *remoteWitness) run(ctx context.Context, w *WitnessedLog) {
	for {
		changed := w.log.Changed()
		msg, err := w.log.Checkpoint(ctx)
		if err == nil && r.cosignature(msg) == nil {
			err = r.submit(ctx, w, msg)
			if ctx.Err() != nil {
				return
			}
			if wait, failed := r.settle(w, err); failed {
				t := time.NewTimer(wait)
				select {
				case <-ctx.Done():
					t.Stop()
					return
				case <-t.C:
				}
				continue
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
		}
	}
}

// settle records the outcome of a submission and returns the wait before
// the next try when it failed. A failure is logged when a run of them
// begins, and the recovery when it ends.
func (r *remoteWitness) settle(w *WitnessedLog, err error) (time.Duration, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err == nil {
		if r.failures > 0 {
			w.cfg.Logger.Info("a witness cosigns the node's log again", "witness", r.URL, "origin", w.log.origin, "size", r.size)
		}
		r.failures, r.lastErr = 0, ""
		return 0, false
	}
	r.failures++
	r.lastErr = err.Error()
	if r.failures == 1 {
		w.cfg.Logger.Warn("a witness did not cosign the node's log; trying again with a back-off", "witness", r.URL,
			"origin", w.log.origin, "err", r.lastErr)
	}
	wait := w.cfg.Retry << min(r.failures-1, 20)
	return min(wait, w.cfg.MaxRetry), true
}

// cosignature returns r's cosignature lines of the log's checkpoint msg;
// nil when it has not cosigned it.
func (r *remoteWitness) cosignature(msg []byte) []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.msg == nil || !bytes.Equal(r.msg, msg) {
		return nil
	}
	return r.line
}

func (r *remoteWitness) knownSize() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.size
}

// submit asks r to cosign msg, the log's checkpoint, learning the size r
// cosigned last from its 409 answer when it is not the one known.
func (r *remoteWitness) submit(ctx context.Context, w *WitnessedLog, msg []byte) error {
	c, err := OpenCheckpoint(msg, w.log.verifier, w.log.origin)
	if err != nil {
		return err
	}
	old := r.knownSize()
	for range maxConflicts + 1 {
		if old > c.Size {
			return fmt.Errorf("%w: it cosigned size %d of this log, which has %d: another history signed by this log's key, or entries lost",
				ErrWitnessConflict, old, c.Size)
		}
		proof, err := w.log.TreeProof(ctx, old, c.Size)
		if err != nil {
			return err
		}
		sigs, err := SubmitCheckpoint(ctx, w.cfg.Client, r.URL, AddCheckpointRequest{Old: old, Proof: proof, Checkpoint: msg})
		var conflict *ConflictError
		if errors.As(err, &conflict) {
			if conflict.Size == old {
				return fmt.Errorf("%w: it cosigned another tree of size %d of this log", ErrWitnessConflict, old)
			}
			old = conflict.Size
			r.mu.Lock()
			r.size = old
			r.mu.Unlock()
			continue
		}
		if err != nil {
			return err
		}
		n, err := note.Open(append(slices.Clip(msg), sigs...), note.VerifierList(r.key))
		if err != nil {
			return fmt.Errorf("%w: %v", ErrWitnessAnswer, err)
		}
		var line []byte
		for _, s := range n.Sigs {
			line = fmt.Appendf(line, "— %s %s\n", s.Name, s.Base64)
		}
		r.mu.Lock()
		r.size, r.msg, r.line, r.cosignedAt = c.Size, msg, line, time.Now()
		r.mu.Unlock()
		return nil
	}
	return fmt.Errorf("%w: its size kept changing", ErrWitnessConflict)
}

// TreeProof returns the RFC 6962 consistency proof from the log's tree of
// size old to its tree of size n, at most the size served; empty when
// old is 0 or n.
func (l *Log) TreeProof(ctx context.Context, old, n int64) (tlog.TreeProof, error) {
	if old < 0 || old > n || n > l.Size() {
		return nil, fmt.Errorf("network: tree proof %d..%d of a log of %d", old, n, l.Size())
	}
	if old == 0 || old == n {
		return nil, nil
	}
	p, err := tlog.ProveTree(n, old, hashReader{ctx: ctx, q: l.db})
	if err != nil {
		return nil, fmt.Errorf("network: tree proof %d..%d: %w", old, n, err)
	}
	return p, nil
}

// SubmitCheckpoint posts req to the witness whose submission prefix is
// prefix, and returns its answer's cosignature lines, not yet verified. A
// refusal is returned as one of the ErrWitness errors (a *ConflictError
// for 409), anything else that went wrong on the way as ErrFetch.
func SubmitCheckpoint(ctx context.Context, client *http.Client, prefix string, req AddCheckpointRequest) ([]byte, error) {
	if client == nil {
		client = http.DefaultClient
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultWitnessTimeout)
		defer cancel()
	}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(prefix, "/")+"/add-checkpoint",
		bytes.NewReader(req.Format()))
	if err != nil {
		return nil, fmt.Errorf("network: witness: %w", err)
	}
	hreq.Header.Set("Content-Type", "text/plain; charset=utf-8")
	resp, err := client.Do(hreq)
	if err != nil {
		return nil, fmt.Errorf("%w: add-checkpoint: %w", ErrFetch, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxWitnessAnswer+1))
	if err != nil {
		return nil, fmt.Errorf("%w: add-checkpoint: %w", ErrFetch, err)
	}
	if len(body) > maxWitnessAnswer {
		return nil, fmt.Errorf("%w: add-checkpoint: answer over %d bytes", ErrFetch, maxWitnessAnswer)
	}
	switch resp.StatusCode {
	case http.StatusOK:
		return body, nil
	case http.StatusConflict:
		s, ok := strings.CutSuffix(string(body), "\n")
		n, err := strconv.ParseInt(s, 10, 64)
		if !ok || err != nil || n < 0 {
			return nil, fmt.Errorf("%w: add-checkpoint: 409 without a size", ErrFetch)
		}
		return nil, &ConflictError{Size: n}
	case http.StatusBadRequest, http.StatusRequestEntityTooLarge:
		return nil, fmt.Errorf("%w: %s", ErrWitnessRequest, resp.Status)
	case http.StatusForbidden:
		return nil, ErrWitnessSignature
	case http.StatusNotFound:
		return nil, ErrWitnessUnknownLog
	case http.StatusUnprocessableEntity:
		return nil, ErrWitnessProof
	case http.StatusServiceUnavailable:
		return nil, fmt.Errorf("%w: add-checkpoint: %s: %w", ErrFetch, resp.Status, ErrWitnessBusy)
	}
	return nil, fmt.Errorf("%w: add-checkpoint: %s", ErrFetch, resp.Status)
}

// CosignStatus is what GET /v1/network shows of a witness the node's log
// asks for cosignatures.
type CosignStatus struct {
	URL string `json:"url"`
	Key string `json:"key"`
	// State is CosignOK, CosignPending or CosignFailing.
	State string `json:"state"`
	// Size is of the latest checkpoint it cosigned, as far as known.
	Size         int64      `json:"cosigned_size"`
	LastCosigned *time.Time `json:"last_cosigned,omitempty"`
	Failures     int        `json:"consecutive_failures"`
	LastError    string     `json:"last_error,omitempty"`
}

// Status reports each witness the log asks.
func (w *WitnessedLog) Status(ctx context.Context) []CosignStatus {
	msg, _ := w.log.Checkpoint(ctx)
	out := make([]CosignStatus, 0, len(w.witnesses))
	for _, r := range w.witnesses {
		r.mu.Lock()
		cs := CosignStatus{URL: r.URL, Key: r.Key, Size: r.size, Failures: r.failures, LastError: r.lastErr}
		switch {
		case r.msg != nil && bytes.Equal(r.msg, msg):
			cs.State = CosignOK
		case r.failures > 0:
			cs.State = CosignFailing
		default:
			cs.State = CosignPending
		}
		if !r.cosignedAt.IsZero() {
			t := r.cosignedAt
			cs.LastCosigned = &t
		}
		r.mu.Unlock()
		out = append(out, cs)
	}
	return out
}
