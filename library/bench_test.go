package library_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/dso-proxy/dso/library"
	"github.com/dso-proxy/dso/providers"
	"github.com/dso-proxy/dso/store"
)

// BenchmarkRetrieval times the request path's retrieval steps after the
// embedding, with 100,000 experiences: align+encode, search and load.
//
//	go test -run xxx -bench Retrieval ./library
func BenchmarkRetrieval(b *testing.B) {
	n := 100_000
	if testing.Short() {
		n = 5_000
	}
	st, err := store.OpenDir(context.Background(), b.TempDir(), store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	h := providers.NewHashEmbedder(384, 1)
	lib, err := library.New(context.Background(), library.Config{Store: st, Space: library.Space{Name: "hash:384", Embedder: library.EmbedFunc(h.Embed)}})
	if err != nil {
		b.Fatal(err)
	}
	defer lib.Close()
	rng := rand.New(rand.NewPCG(1, 2))
	words := strings.Fields("close file error context deadline request goroutine mutex map test table interface queue buffer body stream flush log config secret timeout retry key slice sort cache pool server client")
	text := func() string {
		var b strings.Builder
		for range 8 {
			b.WriteString(words[rng.IntN(len(words))])
			b.WriteByte(' ')
		}
		return b.String()
	}
	for start := 0; start < n; start += 5000 {
		var es []store.Experience
		for i := start; i < min(n, start+5000); i++ {
			es = append(es, store.Experience{Text: fmt.Sprintf("%s (lesson %d)", text(), i), Confidence: 0.8})
		}
		if _, _, err := lib.AddMany(context.Background(), es); err != nil {
			b.Fatal(err)
		}
	}
	q := text()
	var align, search time.Duration
	b.ReportAllocs()
	for b.Loop() {
		t0 := time.Now()
		c, err := lib.Vector(context.Background(), q) // cached after the first
		if err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		res, err := lib.Search(context.Background(), library.Query{Vector: c, K: 5, MinRelevance: &library.NoGate})
		if err != nil || len(res) != 5 {
			b.Fatalf("%d results, %v", len(res), err)
		}
		align += t1.Sub(t0)
		search += time.Since(t1)
	}
	b.ReportMetric(float64(align.Microseconds())/float64(b.N), "align-µs/op")
	b.ReportMetric(float64(search.Microseconds())/float64(b.N), "search+load-µs/op")
}

// BenchmarkRecalibrationUnderTrickle measures what keeping the gate
// calibrated costs a library of 100,000 experiences under a steady
// trickle of writes (10 a second, for 20 seconds per iteration): the
// texts embedded for calibration (all embedded texts less the writes'
// own) per second, and the CPU the process spent per second.
//
//	go test -run xxx -bench RecalibrationUnderTrickle -benchtime 1x ./library
func BenchmarkRecalibrationUnderTrickle(b *testing.B) {
	n := 100_000
	if testing.Short() {
		n = 5_000
	}
	ctx := context.Background()
	st, err := store.OpenDir(ctx, b.TempDir(), store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	h := providers.NewHashEmbedder(384, 1)
	var embedded atomic.Int64
	lib, err := library.New(ctx, library.Config{Store: st, Space: library.Space{Name: "hash:384",
		Embedder: library.EmbedFunc(func(ctx context.Context, texts []string) ([][]float32, error) {
			embedded.Add(int64(len(texts)))
			return h.Embed(ctx, texts)
		})}})
	if err != nil {
		b.Fatal(err)
	}
	defer lib.Close()
	if err := lib.Prepare(ctx); err != nil {
		b.Fatal(err)
	}
	next := 0
	add := func(k int) {
		es := make([]store.Experience, k)
		for i := range es {
			es[i] = store.Experience{Text: fmt.Sprintf("Lesson %d: close what you open, and check the error it returns.", next), Confidence: 0.8}
			next++
		}
		if _, _, err := lib.AddMany(ctx, es); err != nil {
			b.Fatal(err)
		}
	}
	for next < n {
		add(min(5000, n-next))
	}
	deadline := time.Now().Add(time.Minute)
	for g, ok := lib.Gate(); !ok || g.Size != lib.Len(); g, ok = lib.Gate() {
		if time.Now().After(deadline) {
			b.Fatal("the gate was not calibrated after the fill")
		}
		time.Sleep(10 * time.Millisecond) // polling a condition, with a deadline
	}
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
