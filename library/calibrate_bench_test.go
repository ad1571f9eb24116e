package library

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/dso-proxy/dso/providers"
	"github.com/dso-proxy/dso/store"
)

// calibrationLibrary opens a library of n experiences in the hash space,
// counting into embedded every text it embeds, and returns it calibrated
// on them all, with a function that adds k more.
func calibrationLibrary(b *testing.B, n int, embedded *atomic.Int64) (*Library, func(k int)) {
	b.Helper()
	ctx := context.Background()
	st, err := store.OpenDir(ctx, b.TempDir(), store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	h := providers.NewHashEmbedder(384, 1)
	l, err := New(ctx, Config{Store: st, Space: Space{Name: "hash:384",
		Embedder: EmbedFunc(func(ctx context.Context, texts []string) ([][]float32, error) {
			embedded.Add(int64(len(texts)))
			return h.Embed(ctx, texts)
		})}})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { l.Close() })
	if err := l.Prepare(ctx); err != nil {
		b.Fatal(err)
	}
	next := 0
	add := func(k int) {
		es := make([]store.Experience, k)
		for i := range es {
			es[i] = store.Experience{Text: fmt.Sprintf("Lesson %d: close what you open, and check the error it returns (case %d).", next, next%977), Confidence: 0.8}
			next++
		}
		if _, _, err := l.AddMany(ctx, es); err != nil {
			b.Fatal(err)
		}
	}
	for next < n {
		add(min(5000, n-next))
	}
	deadline := time.Now().Add(time.Minute)
	for g, ok := l.Gate(); !ok || g.Size != l.Len(); g, ok = l.Gate() {
		if time.Now().After(deadline) {
			b.Fatal("the gate was not calibrated after the fill")
		}
		time.Sleep(10 * time.Millisecond) // polling a condition, with a deadline
	}
	return l, add
}

func benchSize() int {
	if v, err := strconv.Atoi(os.Getenv("BENCH_N")); err == nil && v > 0 {
		return v
	}
	if testing.Short() {
		return 5_000
	}
	return 100_000
}

// BenchmarkCalibrate measures one calibration of the gate of a library of
// 100,000 experiences (BENCH_N for another size): the sample read from
// the store, the word weights and the anchors' floor.
//
//	go test -run xxx -bench Calibrate -benchtime 20x ./library
func BenchmarkCalibrate(b *testing.B) {
	var embedded atomic.Int64
	l, _ := calibrationLibrary(b, benchSize(), &embedded)
	s := l.cur.Load()
	b.ResetTimer()
	for b.Loop() {
		if err := l.calibrate(context.Background(), s); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRecalibrationUnderTrickle measures what keeping the gate
// calibrated costs a library of 100,000 experiences under a steady
// trickle of writes (10 a second, for 20 seconds per iteration): the
// texts embedded for calibration (all embedded texts less the writes'
// own) per second, and the CPU the process spent per second.
//
//	go test -run xxx -bench RecalibrationUnderTrickle -benchtime 1x ./library
func BenchmarkRecalibrationUnderTrickle(b *testing.B) {
	var embedded atomic.Int64
	_, add := calibrationLibrary(b, benchSize(), &embedded)
	const rate, dur = 10, 20 * time.Second
	var texts int64
	var cpu time.Duration
	b.ResetTimer()
	for range b.N {
		before, cpu0 := embedded.Load(), processCPU()
		tick := time.NewTicker(time.Second / rate)
		writes := 0
		for end := time.Now().Add(dur); time.Now().Before(end); <-tick.C {
			add(1)
			writes++
		}
		tick.Stop()
		texts += embedded.Load() - before - int64(writes)
		cpu += processCPU() - cpu0
	}
	secs := float64(b.N) * dur.Seconds()
	b.ReportMetric(float64(texts)/secs, "calibration_texts/s")
	b.ReportMetric(cpu.Seconds()/secs, "cpu_s/s")
}

// processCPU is the CPU time (user and system) the process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
