package main

import (
	"log/slog"
	"math"
	"os"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"time"

	"github.com/dso-proxy/dso/config"
)

// The Go memory limit serve sets (config memory_limit). A library's index
// lives on the Go heap: with GOGC alone, the heap may grow to twice what
// is live before a collection, which for a large library is as much
// garbage as index. The limit keeps the heap at what dso holds plus a
// bounded headroom (config.DefaultMemoryLimit).

// memoryLimitEvery is how often a derived limit follows the library's
// indexes as they grow: while a library of millions loads, a second adds
// well under the headroom.
const memoryLimitEvery = time.Second

// memoryLimits is the process's one memory limit, shared by the libraries
// that set one (tests run several serves in one process): the sum of what
// each wants, and the limit found before the first once none is left.
var memoryLimits struct {
	mu     sync.Mutex // protects the fields below
	prior  int64
	wanted map[*memoryLimit]int64
}

// memoryLimit is one library's part in the memory limit.
type memoryLimit struct {
	cfg   config.ByteSize
	stop  chan struct{}
	done  chan struct{}
	once  sync.Once
	mu    sync.Mutex // protects index
	index func() int64
}

// startMemoryLimit sets the memory limit for a library whose indexes hold
// index() bytes, as cfg.MemoryLimit says (see config.Config.MemoryLimit),
// and while the limit is derived follows what dso holds: the live heap,
// or index() where that is more (a load outruns the collections that
// measure the heap). It returns nil when it
// sets none: memory_limit off, or GOMEMLIMIT set with memory_limit unset.
func startMemoryLimit(cfg config.Config, index func() int64, log *slog.Logger) *memoryLimit {
	switch {
	case cfg.MemoryLimit == config.Off:
		log.Info("no memory limit (memory_limit: off)")
		return nil
	case cfg.MemoryLimit == 0 && os.Getenv("GOMEMLIMIT") != "":
		log.Info("memory limit from GOMEMLIMIT", "bytes", debug.SetMemoryLimit(-1))
		return nil
	}
	m := &memoryLimit{cfg: cfg.MemoryLimit, index: index, stop: make(chan struct{}), done: make(chan struct{})}
	want := m.want()
	memoryLimits.mu.Lock()
	if memoryLimits.wanted == nil {
		memoryLimits.wanted = map[*memoryLimit]int64{}
	}
	if len(memoryLimits.wanted) == 0 {
		memoryLimits.prior = debug.SetMemoryLimit(-1)
	}
	memoryLimits.wanted[m] = want
	applyMemoryLimits()
	memoryLimits.mu.Unlock()
	if m.cfg > 0 {
		log.Info("memory limit (memory_limit)", "bytes", int64(m.cfg), "index_bytes", index())
		close(m.done)
		return m
	}
	log.Info("memory limit derived from what dso holds, followed as the library grows", "bytes", want, "index_bytes", index())
	go m.follow()
	return m
}

// want is the limit this library asks for.
func (m *memoryLimit) want() int64 {
	if m.cfg > 0 {
		return int64(m.cfg)
	}
	m.mu.Lock()
	index := m.index
	m.mu.Unlock()
	return config.DefaultMemoryLimit(max(index(), heapLive()))
}

// heapLive is the heap the last collection found live; 0 before the first.
func heapLive() int64 {
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return int64(min(s[0].Value.Uint64(), math.MaxInt64))
}

// use makes the derived limit follow index from now on: serve follows the
// index it fills while the library loads, then the library's indexes.
func (m *memoryLimit) use(index func() int64) {
	if m == nil {
		return
	}
	m.mu.Lock()
	m.index = index
	m.mu.Unlock()
	m.update()
}

func (m *memoryLimit) follow() {
	defer close(m.done)
	t := time.NewTicker(memoryLimitEvery)
	defer t.Stop()
	for {
		select {
		case <-m.stop:
			return
		case <-t.C:
			m.update()
		}
	}
}

// update re-derives this library's part and sets the limit when it moved
// by a MiB or more.
func (m *memoryLimit) update() {
	if m.cfg > 0 {
		return
	}
	want := m.want()
	memoryLimits.mu.Lock()
	defer memoryLimits.mu.Unlock()
	old, ok := memoryLimits.wanted[m]
	if !ok || abs(want-old) < 1<<20 {
		return
	}
	memoryLimits.wanted[m] = want
	applyMemoryLimits()
}

// close removes this library's part; the last one restores the limit
// found before the first.
func (m *memoryLimit) close() {
	if m == nil {
		return
	}
	m.once.Do(func() {
		close(m.stop)
		<-m.done
		memoryLimits.mu.Lock()
		defer memoryLimits.mu.Unlock()
		delete(memoryLimits.wanted, m)
		if len(memoryLimits.wanted) == 0 {
			debug.SetMemoryLimit(memoryLimits.prior)
			return
		}
		applyMemoryLimits()
	})
}

// applyMemoryLimits sets the sum of the parts wanted. The caller holds
// memoryLimits.mu.
func applyMemoryLimits() {
	var sum int64
	for _, w := range memoryLimits.wanted {
		sum = min(sum+w, math.MaxInt64/2)
	}
	debug.SetMemoryLimit(sum)
}

func abs(n int64) int64 {
	if n < 0 {
		return -n
	}
	return n
}
