package learn

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// checkpointVersion is the checkpoint file format's version.
const checkpointVersion = 1

// checkpoint is the saved state of a run, written after each batch and
// after each operation applied.
type checkpoint struct {
	Version     int    `json:"version"`
	Fingerprint string `json:"fingerprint"`
	// Epoch is the 0-based epoch in progress; Next the first item of its
	// next batch.
	Epoch int `json:"epoch"`
	Next  int `json:"next"`
	// Pending are the last batch's operations, being applied; Applied the
	// ids of every operation applied.
	Pending         []pendingOp  `json:"pending,omitempty"`
	Applied         []string     `json:"applied"`
	BaselineDone    bool         `json:"baseline_done"`
	HeldoutBaseline *float64     `json:"heldout_baseline,omitempty"`
	Epochs          []epochState `json:"epochs"`
}

// epochState accumulates one epoch.
type epochState struct {
	Items         int      `json:"items"`
	Samples       int      `json:"samples"`
	GradeSum      float64  `json:"grade_sum"`
	MajorityRight int      `json:"majority_right"`
	Groups        int      `json:"groups"`
	BadReplies    int      `json:"bad_replies"`
	Ops           OpCounts `json:"ops"`
	Tokens        Tokens   `json:"tokens"`
	Heldout       *float64 `json:"heldout,omitempty"`
	LibrarySize   int      `json:"library_size"`
}

// pendingOp is an operation resolved against the library, ready to apply.
type pendingOp struct {
	ID     string `json:"id"` // hash of epoch, item and operation
	Kind   OpKind `json:"op"`
	Target string `json:"target,omitempty"` // experience id for modify, delete, keep
	Domain string `json:"domain,omitempty"`
	Text   string `json:"text,omitempty"`
	Key    string `json:"key,omitempty"` // the question an added lesson came from
}

// fingerprint ties a checkpoint to its datasets and sampling settings.
func fingerprint(cfg Config, train, heldout []Item) string {
	h := sha256.New()
	enc := json.NewEncoder(h)
	enc.Encode(train)
	enc.Encode(heldout)
	fmt.Fprintf(h, "%s\x00%d\x00%d", cfg.Model, cfg.Group, cfg.Batch)
	return hex.EncodeToString(h.Sum(nil)[:16])
}

func loadCheckpoint(path, fp string) (*checkpoint, bool, error) {
	fresh := &checkpoint{Version: checkpointVersion, Fingerprint: fp, Applied: []string{}}
	if path == "" {
		return fresh, false, nil
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return fresh, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("learn: checkpoint: %w", err)
	}
	var cp checkpoint
	if err := json.Unmarshal(b, &cp); err != nil {
		return nil, false, fmt.Errorf("learn: checkpoint %s: %w", path, err)
	}
	if cp.Version != checkpointVersion {
		return nil, false, fmt.Errorf("learn: checkpoint %s has version %d; want %d", path, cp.Version, checkpointVersion)
	}
	if cp.Fingerprint != fp {
		return nil, false, fmt.Errorf("learn: checkpoint %s is for another dataset, model, group or batch size", path)
	}
	return &cp, true, nil
}

// save writes the checkpoint atomically: a temporary file in the same
// folder, synced, renamed over the old one.
func (r *run) save() error {
	path := r.o.cfg.Checkpoint
	if path == "" {
		return nil
	}
	b, err := json.MarshalIndent(r.cp, "", "  ")
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("learn: checkpoint: %w", err)
	}
	_, err = f.Write(append(b, '\n'))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("learn: checkpoint: %w", err)
	}
	return nil
}
