package gpuidx

import (
	"context"
	"fmt"
	"io"
	"log/slog"

	"github.com/dso-proxy/dso/compress"
)

// Index is what the CPU and GPU backends have in common: the methods the
// library and the commands use. Both return identical results for the same
// records, configuration and queries.
type Index interface {
	Upsert(id string, m Meta, c compress.Code) error
	Delete(id string) bool
	Get(id string) (Meta, compress.Code, bool)
	Len() int
	// Reserve makes room for n records in all before they are added, so
	// that a load of n allocates once.
	Reserve(n int)
	// Bytes is the host memory the index holds.
	Bytes() int64
	Search(ctx context.Context, q Query) ([]Hit, error)
	Save(w io.Writer) error
	// Restore replaces the records with those of a snapshot written by
	// Save (of either backend); on error the records stay as they were.
	Restore(r io.Reader) error
	Close() error
}

var (
	_ Index = (*CPU)(nil)
	_ Index = (*GPU)(nil)
)

// Close does nothing: a CPU index holds only memory. It makes *CPU an Index.
func (x *CPU) Close() error { return nil }

// Index kinds for Open.
const (
	KindCPU  = "cpu"
	KindGPU  = "gpu"
	KindAuto = "auto"
)

// Open returns an empty index of kind "cpu" (or ""), "gpu" (an error
// wrapping ErrNoGPU when no GPU is usable) or "auto" (the GPU when usable,
// else the CPU, saying why on log, which may be nil).
func Open(kind string, cpu CPUConfig, gpu GPUConfig, log *slog.Logger) (Index, error) {
	return open(kind, cpu, gpu, log, func() (Index, error) { return NewCPU(cpu), nil },
		func() (*GPU, error) { return NewGPU(gpu) })
}

// LoadIndex reads a snapshot (see Save) into a new index of kind, chosen as
// Open chooses.
func LoadIndex(kind string, r io.Reader, cpu CPUConfig, gpu GPUConfig, log *slog.Logger) (Index, error) {
	return open(kind, cpu, gpu, log, func() (Index, error) { return Load(r, cpu) },
		func() (*GPU, error) {
			// Open the device before reading, so that auto can still fall
			// back to the CPU with r unread.
			g, err := NewGPU(gpu)
			if err != nil {
				return nil, err
			}
			g.Close()
			return LoadGPU(r, gpu)
		})
}

func open(kind string, cpu CPUConfig, gpu GPUConfig, log *slog.Logger, newCPU func() (Index, error), newGPU func() (*GPU, error)) (Index, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	switch kind {
	case "", KindCPU:
		return newCPU()
	case KindGPU, KindAuto:
	default:
		return nil, fmt.Errorf("gpuidx: index kind %q: want cpu, gpu or auto", kind)
	}
	g, err := newGPU()
	if err == nil {
		log.Info("gpuidx: GPU index", "device", g.Device(), "capacity", g.Capacity(), "max_bytes", g.cfg.MaxBytes)
		return g, nil
	}
	if kind == KindGPU {
		return nil, err
	}
	log.Info("gpuidx: no usable GPU, using the CPU index", "reason", err.Error())
	return newCPU()
}
