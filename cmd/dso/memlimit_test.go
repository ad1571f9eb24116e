package main

import (
	"context"
	"log/slog"
	"math"
	"runtime/debug"
	"sync/atomic"
	"testing"

	"github.com/dso-proxy/dso/config"
)

// The memory limit's tests change the process's limit: none runs in
// parallel, and each leaves it as it found it.

func TestMemoryLimitDerivedFixedOff(t *testing.T) {
	prior := debug.SetMemoryLimit(-1)
	limit := func() int64 { return debug.SetMemoryLimit(-1) }
	log := slog.New(slog.DiscardHandler)
	var index atomic.Int64
	index.Store(4 << 30) // more than the test's heap: the index decides
	cfg := config.Default()
	m := startMemoryLimit(cfg, index.Load, log)
	if got, want := limit(), config.DefaultMemoryLimit(4<<30); got != want {
		t.Fatalf("derived limit %d; want %d", got, want)
	}
	index.Store(8 << 30)
	m.update()
	if got, want := limit(), config.DefaultMemoryLimit(8<<30); got != want {
		t.Fatalf("after the index grew: %d; want %d", got, want)
	}
	// Another library in the process, with a fixed limit: the parts add.
	cfg.MemoryLimit = 1 << 30
	fixed := startMemoryLimit(cfg, index.Load, log)
	if got, want := limit(), config.DefaultMemoryLimit(8<<30)+1<<30; got != want {
		t.Fatalf("two parts: %d; want %d", got, want)
	}
	fixed.close()
	fixed.close() // twice is harmless
	if got, want := limit(), config.DefaultMemoryLimit(8<<30); got != want {
		t.Fatalf("one part left: %d; want %d", got, want)
	}
	m.close()
	if got := limit(); got != prior {
		t.Fatalf("after the last: %d; want the limit found, %d", got, prior)
	}
	cfg.MemoryLimit = config.Off
	if m := startMemoryLimit(cfg, index.Load, log); m != nil || limit() != prior {
		t.Fatal("memory_limit off set a limit")
	}
	var none *memoryLimit
	none.close() // what startMemoryLimit returns for none
}

func TestMemoryLimitKeepsGOMEMLIMIT(t *testing.T) {
	prior := debug.SetMemoryLimit(-1)
	t.Setenv("GOMEMLIMIT", "3GiB")
	log := slog.New(slog.DiscardHandler)
	cfg := config.Default()
	if m := startMemoryLimit(cfg, func() int64 { return 1 << 30 }, log); m != nil || debug.SetMemoryLimit(-1) != prior {
		t.Fatal("an unset memory_limit overrode GOMEMLIMIT")
	}
	cfg.MemoryLimit = 2 << 30
	m := startMemoryLimit(cfg, func() int64 { return 1 << 30 }, log)
	if got := debug.SetMemoryLimit(-1); got != 2<<30 {
		t.Fatalf("memory_limit with GOMEMLIMIT set: %d; want memory_limit's", got)
	}
	m.close()
}

// Serve's retrieval sets the derived limit while it runs and restores the
// one it found when it closes.
func TestRetrievalSetsMemoryLimit(t *testing.T) {
	prior := debug.SetMemoryLimit(-1)
	cfg := config.Default()
	cfg.Data = t.TempDir()
	rt, closeAll, err := openRetrieval(context.Background(), cfg, nil, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	got := debug.SetMemoryLimit(-1)
	if rt.Library == nil || got == prior || got == math.MaxInt64 || got < config.MemoryHeadroom {
		t.Fatalf("limit while serving: %d (found %d)", got, prior)
	}
	closeAll()
	if got := debug.SetMemoryLimit(-1); got != prior {
		t.Fatalf("limit after closing: %d; want %d", got, prior)
	}
}
