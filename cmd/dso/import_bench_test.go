package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// BenchmarkImport imports BENCH_N experiences (50,000 by default; the built-in embedder, a
// fresh data directory per run) through `dso import` and reports the
// experiences imported per second.
//
//	go test -run xxx -bench Import -benchtime 1x ./cmd/dso
func BenchmarkImport(b *testing.B) {
	n := 50_000
	if v, err := strconv.Atoi(os.Getenv("BENCH_N")); err == nil && v > 0 {
		n = v
	}
	rng := rand.New(rand.NewPCG(1, 2))
	words := strings.Fields("close file error context deadline request goroutine mutex map test table interface queue buffer body stream flush log config secret timeout retry key slice sort cache pool server client")
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	for i := range n {
		var t strings.Builder
		for range 10 {
			t.WriteString(words[rng.IntN(len(words))])
			t.WriteByte(' ')
		}
		fmt.Fprintf(&t, "(lesson %d)", i)
		enc.Encode(map[string]any{"text": t.String(), "domain": "code", "confidence": 0.8})
	}
	file := filepath.Join(b.TempDir(), "lessons.jsonl")
	if err := os.WriteFile(file, buf.Bytes(), 0o600); err != nil {
		b.Fatal(err)
	}
	var took time.Duration
	for range b.N {
		data := b.TempDir()
		var out, errb bytes.Buffer
		t0 := time.Now()
		if code := run(context.Background(), []string{"import", "--data", data, "--file", file}, &out, &errb); code != 0 {
			b.Fatalf("import: exit %d: %s", code, errb.String())
		}
		took += time.Since(t0)
	}
	b.ReportMetric(float64(n*b.N)/took.Seconds(), "experiences/s")
}
