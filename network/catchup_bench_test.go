package network

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// BenchmarkFollowerCatchUp is two nodes whose libraries differ by 1%: a
// follower that has accepted 99% of a 100,000-experience log (BENCH_N for
// another size) syncs the last 1%, and reports the bytes that crossed the
// wire for it, in all and per new experience, and the time it took.
//
//	go test -run xxx -bench FollowerCatchUp -benchtime 1x ./network
func BenchmarkFollowerCatchUp(b *testing.B) {
	n := 100_000
	if v, err := strconv.Atoi(os.Getenv("BENCH_N")); err == nil && v > 0 {
		n = v
	}
	have := n - n/100
	ctx := context.Background()
	id := testIdentity(b, "nodeA")
	l := openTestLog(b, id, filepath.Join(b.TempDir(), "log.db"))
	publish := func(from, to int) {
		for lo := from; lo < to; lo += 5000 {
			var es []Experience
			for i := lo; i < min(to, lo+5000); i++ {
				es = append(es, Experience{Network: "hanzo", Domain: "code.go", Text: fmt.Sprintf("Lesson %d: check the error from Close on written files.", i),
					Confidence: 0.8, Space: "hash:2048", Code: bytes.Repeat([]byte{byte(i)}, 484), Time: t0.Add(time.Duration(i) * time.Second)})
			}
			if _, err := l.Publish(ctx, es); err != nil {
				b.Fatal(err)
			}
		}
	}
	publish(0, have)
	fetch := serve(b, l)
	key := verifierOf(b, id)
	got := 0
	f, err := NewFollower(FollowConfig{Fetcher: fetch, Key: key, Origin: l.Origin(), MaxEntries: MaxMaxEntries,
		Accept: func(context.Context, int64, Record) error { got++; return nil }})
	if err != nil {
		b.Fatal(err)
	}
	for got < have {
		if _, err := f.Sync(ctx); err != nil {
			b.Fatal(err)
		}
	}
	publish(have, n)
	before, start := f.BytesFetched(), time.Now()
	b.ResetTimer()
	for got < n {
		if _, err := f.Sync(ctx); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	wire := f.BytesFetched() - before
	b.ReportMetric(float64(wire), "wire-B")
	b.ReportMetric(float64(wire)/float64(n-have), "wire-B/new-exp")
	b.ReportMetric(float64(time.Since(start).Milliseconds()), "sync-ms")
}
