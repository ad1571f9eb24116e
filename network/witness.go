package network

import (
	"bytes"
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// The witness side of C2SP tlog-witness: a node that witnesses the logs
// of its peers answers POST <prefix>/add-checkpoint, checks that the
// submitted checkpoint is signed by the log's key and consistent with the
// last one it cosigned for that log, keeps it, and returns its
// cosignature (C2SP tlog-cosignature, Ed25519 cosignature/v1). A log that
// shows one history to the witness can never get another cosigned, so a
// follower that requires the witness's cosignature never accepts a view
// the witness did not see.

// Bounds of an add-checkpoint request.
const (
	// MaxProofLines is the most consistency proof lines a request may
	// carry (tlog-witness: a client MUST NOT send more than 63).
	MaxProofLines = 63
	// MaxAddCheckpoint bounds a request body: the old size line, the
	// proof, the blank line and a checkpoint of at most maxCheckpoint.
	MaxAddCheckpoint = 32 + MaxProofLines*45 + 1 + maxCheckpoint
	// witnessBusyWait is how long a request waits for another one for the
	// same log to finish before it is answered 503.
	witnessBusyWait = 5 * time.Second
	// witnessBodyTimeout bounds the reading of a request body: a client
	// that sends it slowly holds no connection for longer.
	witnessBodyTimeout = 10 * time.Second
)

// Errors of an add-checkpoint, on either side: a witness answers each
// with its HTTP status (in parentheses), and a client maps the status
// back to it.
var (
	ErrWitnessRequest    = errors.New("network: witness: malformed add-checkpoint request")           // 400, 413
	ErrWitnessSignature  = errors.New("network: witness: checkpoint not signed by the log's key")     // 403
	ErrWitnessUnknownLog = errors.New("network: witness: log not witnessed here")                     // 404
	ErrWitnessConflict   = errors.New("network: witness: old size is not the size it cosigned")       // 409
	ErrWitnessProof      = errors.New("network: witness: consistency proof does not verify")          // 422
	ErrWitnessBusy       = errors.New("network: witness: busy with another request for the same log") // 503
	errWitnessTooLarge   = fmt.Errorf("%w: body over %d bytes", ErrWitnessRequest, MaxAddCheckpoint)  // 413
)

// ConflictError is a 409 answer: the witness's latest cosigned size of the
// log is not the request's old size (or, at that size, it cosigned
// another root). It wraps ErrWitnessConflict.
type ConflictError struct {
	Size int64 // the size the witness cosigned last
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("%v: it cosigned size %d", ErrWitnessConflict, e.Size)
}

func (e *ConflictError) Unwrap() error { return ErrWitnessConflict }

// AddCheckpointRequest is the body of a tlog-witness add-checkpoint: the
// size of the checkpoint the witness cosigned last, an RFC 6962
// consistency proof from it, and the new signed checkpoint.
type AddCheckpointRequest struct {
	Old        int64
	Proof      tlog.TreeProof
	Checkpoint []byte // a signed note
}

// Format returns the request body: "old N", a base64 hash a line, an
// empty line, then the checkpoint.
func (r AddCheckpointRequest) Format() []byte {
	b := make([]byte, 0, 32+len(r.Proof)*45+len(r.Checkpoint))
	b = append(b, "old "...)
	b = strconv.AppendInt(b, r.Old, 10)
	b = append(b, '\n')
	for _, h := range r.Proof {
		b = base64.StdEncoding.AppendEncode(b, h[:])
		b = append(b, '\n')
	}
	b = append(b, '\n')
	return append(b, r.Checkpoint...)
}

// ParseAddCheckpoint parses a request body. There is one body for each
// request: no leading zeros, base64 with padding, at most MaxProofLines
// proof lines, at most MaxAddCheckpoint bytes. The checkpoint is not
// checked here, only that there is one.
func ParseAddCheckpoint(body []byte) (AddCheckpointRequest, error) {
	var r AddCheckpointRequest
	if len(body) > MaxAddCheckpoint {
		return r, errWitnessTooLarge
	}
	line, rest, ok := bytes.Cut(body, []byte("\n"))
	num, isOld := bytes.CutPrefix(line, []byte("old "))
	if !ok || !isOld {
		return r, fmt.Errorf("%w: no old size line", ErrWitnessRequest)
	}
	n, err := strconv.ParseInt(string(num), 10, 64)
	if err != nil || n < 0 || strconv.FormatInt(n, 10) != string(num) {
		return r, fmt.Errorf("%w: old size %q", ErrWitnessRequest, num)
	}
	r.Old = n
	for {
		line, rest, ok = bytes.Cut(rest, []byte("\n"))
		if !ok {
			return r, fmt.Errorf("%w: no empty line before the checkpoint", ErrWitnessRequest)
		}
		if len(line) == 0 {
			break
		}
		if len(r.Proof) == MaxProofLines {
			return r, fmt.Errorf("%w: over %d proof lines", ErrWitnessRequest, MaxProofLines)
		}
		d, err := base64.StdEncoding.Strict().DecodeString(string(line))
		if err != nil || len(d) != tlog.HashSize {
			return r, fmt.Errorf("%w: proof line %d is not a base64 hash", ErrWitnessRequest, len(r.Proof))
		}
		r.Proof = append(r.Proof, tlog.Hash(d))
	}
	if len(rest) == 0 {
		return r, fmt.Errorf("%w: no checkpoint", ErrWitnessRequest)
	}
	r.Checkpoint = rest
	return r, nil
}

// witnessSchema keeps, per log a node witnesses (by origin), the latest
// checkpoint it cosigned: the size and root the next request's proof
// starts from, and the signed note as the log's own word for it.
const witnessSchema = `
CREATE TABLE IF NOT EXISTS witnessed (origin TEXT PRIMARY KEY, size INTEGER NOT NULL, hash BLOB NOT NULL, checkpoint BLOB NOT NULL, at INTEGER NOT NULL);
`

// Witnessed is the latest checkpoint a witness cosigned for a log.
type Witnessed struct {
	Origin     string    `json:"origin"`
	Size       int64     `json:"size"`
	Checkpoint string    `json:"checkpoint"` // as the log signed it
	Time       time.Time `json:"time"`
}

// ListWitnessed returns the latest checkpoint cosigned for each log
// witnessed, by origin.
func (s *State) ListWitnessed(ctx context.Context) ([]Witnessed, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT origin, size, checkpoint, at FROM witnessed ORDER BY origin`)
	if err != nil {
		return nil, fmt.Errorf("network: witnessed: %w", err)
	}
	defer rows.Close()
	var out []Witnessed
	for rows.Next() {
		var w Witnessed
		var cp []byte
		var at int64
		if err := rows.Scan(&w.Origin, &w.Size, &cp, &at); err != nil {
			return nil, fmt.Errorf("network: witnessed: %w", err)
		}
		w.Checkpoint, w.Time = string(cp), time.UnixMilli(at).UTC()
		out = append(out, w)
	}
	return out, rows.Err()
}

// witness checks c, submitted with old and proof, against the latest
// checkpoint cosigned for its log and, when it extends it, keeps msg as
// the latest, all in one transaction written with synchronous=FULL: a
// witness that forgot what it cosigned after a power cut could be led to
// cosign another history.
func (s *State) witness(ctx context.Context, old int64, proof tlog.TreeProof, c Checkpoint, msg []byte, now time.Time) error {
	return withFullSync(ctx, s.db, func(conn *sql.Conn) error {
		tx, err := conn.BeginTx(ctx, nil)
		if err != nil {
			return fmt.Errorf("network: witness: %w", err)
		}
		defer tx.Rollback()
		size, hash := int64(0), emptyTree
		var h []byte
		err = tx.QueryRowContext(ctx, `SELECT size, hash FROM witnessed WHERE origin = ?`, c.Origin).Scan(&size, &h)
		switch {
		case errors.Is(err, sql.ErrNoRows):
		case err != nil:
			return fmt.Errorf("network: witness: %w", err)
		case len(h) != tlog.HashSize:
			return fmt.Errorf("network: witness: stored root of %d bytes", len(h))
		default:
			copy(hash[:], h)
		}
		if old != size {
			return &ConflictError{Size: size}
		}
		switch {
		case c.Size == old && c.Hash != hash:
			return &ConflictError{Size: size}
		case c.Size == old && len(proof) != 0:
			return fmt.Errorf("%w: a proof between equal sizes", ErrWitnessProof)
		case old > 0:
			if err := tlog.CheckTree(proof, c.Size, c.Hash, old, hash); err != nil {
				return fmt.Errorf("%w: %d..%d: %v", ErrWitnessProof, old, c.Size, err)
			}
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO witnessed (origin, size, hash, checkpoint, at) VALUES (?, ?, ?, ?, ?)
			ON CONFLICT (origin) DO UPDATE SET size = excluded.size, hash = excluded.hash, checkpoint = excluded.checkpoint, at = excluded.at`,
			c.Origin, c.Size, c.Hash[:], msg, now.UnixMilli()); err != nil {
			return fmt.Errorf("network: witness: %w", err)
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("network: witness: %w", err)
		}
		return nil
	})
}

// withFullSync runs fn on a connection of db set to synchronous=FULL, and
// sets it back to the state's NORMAL before it returns to the pool.
func withFullSync(ctx context.Context, db *sql.DB, fn func(*sql.Conn) error) error {
	conn, err := db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("network: witness: %w", err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, `PRAGMA synchronous = FULL`); err != nil {
		return fmt.Errorf("network: witness: %w", err)
	}
	defer func() {
		if _, err := conn.ExecContext(context.WithoutCancel(ctx), `PRAGMA synchronous = NORMAL`); err != nil {
			// FULL is safe, only slower; still, the pool should be
			// uniform: discard the connection.
			conn.Raw(func(any) error { return driver.ErrBadConn })
		}
	}()
	return fn(conn)
}

// WitnessConfig configures a node as a witness of other nodes' logs.
type WitnessConfig struct {
	// Cosigner signs the cosignatures: Identity.Cosigner. Required.
	Cosigner note.Signer
	// Logs are the verifier keys of the logs witnessed, by checkpoint
	// origin (see Origin); a checkpoint of any other origin is answered
	// 404 Not Found.
	Logs map[string]string
	// State keeps the latest checkpoint cosigned for each log. Required.
	State  *State
	Logger *slog.Logger
}

// Witness is a C2SP tlog-witness: it cosigns each checkpoint of the logs
// it knows that is consistent with the last one it cosigned for that log,
// and nothing else. Mount it with http.StripPrefix: it answers POST
// /add-checkpoint. Safe for concurrent use; it handles one request at a
// time per log, so that no two checks of one log interleave.
type Witness struct {
	cfg  WitnessConfig
	logs map[string]*witnessedLog // by origin
}

type witnessedLog struct {
	key    note.Verifier
	turn   chan struct{} // holds one token: the request being handled
	warned sync.Once     // a proof that failed is logged once
}

// NewWitness checks cfg and returns the witness.
func NewWitness(cfg WitnessConfig) (*Witness, error) {
	if cfg.Cosigner == nil || cfg.State == nil {
		return nil, errors.New("network: witness needs a cosigner and a state")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	w := &Witness{cfg: cfg, logs: map[string]*witnessedLog{}}
	for origin, key := range cfg.Logs {
		v, err := note.NewVerifier(key)
		if err != nil {
			return nil, fmt.Errorf("network: witness: key of %q: %w", origin, err)
		}
		wl := &witnessedLog{key: v, turn: make(chan struct{}, 1)}
		wl.turn <- struct{}{}
		w.logs[origin] = wl
	}
	return w, nil
}

// Origins lists the logs witnessed.
func (w *Witness) Origins() []string {
	out := make([]string, 0, len(w.logs))
	for o := range w.logs {
		out = append(out, o)
	}
	slices.Sort(out)
	return out
}

// AddCheckpoint handles one request: it returns the witness's
// cosignature lines of req.Checkpoint, or an error that wraps one of
// the ErrWitness errors (a *ConflictError for a 409).
func (w *Witness) AddCheckpoint(ctx context.Context, req AddCheckpointRequest) ([]byte, error) {
	origin, _, _ := bytes.Cut(req.Checkpoint, []byte("\n"))
	wl := w.logs[string(origin)]
	if wl == nil {
		return nil, fmt.Errorf("%w: %q", ErrWitnessUnknownLog, origin)
	}
	c, err := OpenCheckpoint(req.Checkpoint, wl.key, string(origin))
	switch {
	case errors.Is(err, ErrCheckpointSignature):
		return nil, fmt.Errorf("%w: %v", ErrWitnessSignature, err)
	case err != nil:
		return nil, fmt.Errorf("%w: %v", ErrWitnessRequest, err)
	case req.Old > c.Size:
		return nil, fmt.Errorf("%w: old size %d over the checkpoint's %d", ErrWitnessRequest, req.Old, c.Size)
	case req.Old == 0 && len(req.Proof) > 0:
		return nil, fmt.Errorf("%w: a proof from size 0", ErrWitnessRequest)
	}
	t := time.NewTimer(witnessBusyWait)
	defer t.Stop()
	select {
	case <-wl.turn:
	case <-t.C:
		return nil, ErrWitnessBusy
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { wl.turn <- struct{}{} }()
	err = w.cfg.State.witness(ctx, req.Old, req.Proof, c, req.Checkpoint, time.Now())
	if errors.Is(err, ErrWitnessProof) {
		wl.warned.Do(func() {
			w.cfg.Logger.WarnContext(ctx, "a witnessed log's checkpoint is not proved consistent with the one cosigned: another history, or a bad proof; not cosigned",
				"origin", c.Origin, "old", req.Old, "size", c.Size, "err", err.Error())
		})
	}
	if err != nil {
		return nil, err
	}
	text := c.Format()
	signed, err := note.Sign(&note.Note{Text: string(text)}, w.cfg.Cosigner)
	if err != nil {
		return nil, fmt.Errorf("network: witness: cosign: %w", err)
	}
	// note.Sign returns the text, an empty line, then the signature line.
	return signed[len(text)+1:], nil
}

// ServeHTTP implements the add-checkpoint endpoint.
func (w *Witness) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/add-checkpoint" {
		http.NotFound(rw, r)
		return
	}
	if r.Method != http.MethodPost {
		rw.Header().Set("Allow", "POST")
		http.Error(rw, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	// Not every ResponseWriter has deadlines (a test's recorder); the
	// body's size is bounded anyway.
	_ = http.NewResponseController(rw).SetReadDeadline(time.Now().Add(witnessBodyTimeout))
	body, err := io.ReadAll(http.MaxBytesReader(rw, r.Body, MaxAddCheckpoint))
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		http.Error(rw, errWitnessTooLarge.Error(), http.StatusRequestEntityTooLarge)
		return
	case err != nil:
		http.Error(rw, "reading the request", http.StatusBadRequest)
		return
	}
	req, err := ParseAddCheckpoint(body)
	var sigs []byte
	if err == nil {
		sigs, err = w.AddCheckpoint(r.Context(), req)
	}
	var conflict *ConflictError
	switch {
	case err == nil:
		rw.Header().Set("Content-Type", "text/plain; charset=utf-8")
		rw.Write(sigs)
	case errors.As(err, &conflict):
		rw.Header().Set("Content-Type", "text/x.tlog.size")
		rw.WriteHeader(http.StatusConflict)
		fmt.Fprintf(rw, "%d\n", conflict.Size)
	case errors.Is(err, ErrWitnessRequest):
		http.Error(rw, err.Error(), http.StatusBadRequest)
	case errors.Is(err, ErrWitnessSignature):
		http.Error(rw, err.Error(), http.StatusForbidden)
	case errors.Is(err, ErrWitnessUnknownLog):
		http.Error(rw, "unknown log", http.StatusNotFound)
	case errors.Is(err, ErrWitnessProof):
		http.Error(rw, "the consistency proof does not verify", http.StatusUnprocessableEntity)
	case errors.Is(err, ErrWitnessBusy):
		rw.Header().Set("Retry-After", "1")
		http.Error(rw, "busy", http.StatusServiceUnavailable)
	case r.Context().Err() != nil:
		// The client is gone; nothing to answer.
	default:
		w.cfg.Logger.WarnContext(r.Context(), "witnessing a checkpoint", "err", err.Error())
		http.Error(rw, "internal error", http.StatusInternalServerError)
	}
}

// WitnessStatus is what GET /v1/network shows of a node as a witness.
type WitnessStatus struct {
	// Key is the verifier key of its cosignatures (Identity.WitnessKey).
	Key string `json:"key"`
	// Origins are the logs it witnesses; Cosigned the latest checkpoint
	// it cosigned of each it was asked to.
	Origins  []string    `json:"origins"`
	Cosigned []Witnessed `json:"cosigned"`
}

// Status reports what the witness cosigned; key is its witness key.
func (w *Witness) Status(ctx context.Context, key string) (WitnessStatus, error) {
	ws, err := w.cfg.State.ListWitnessed(ctx)
	if err != nil {
		return WitnessStatus{}, err
	}
	if ws == nil {
		ws = []Witnessed{}
	}
	return WitnessStatus{Key: key, Origins: w.Origins(), Cosigned: ws}, nil
}
