package network

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"
)

// BenchmarkFollowerSync follows a log of experiences with 484-byte codes
// from the start and reports what crossed the wire per experience
// (checkpoint, hash tiles and entry bundles together).
func BenchmarkFollowerSync(b *testing.B) {
	ctx := context.Background()
	id := testIdentity(b, "nodeA")
	l := openTestLog(b, id, filepath.Join(b.TempDir(), "log.db"))
	const n = 5000
	var es []Experience
	for i := range n {
		es = append(es, Experience{Network: "hanzo", Domain: "code.go", Text: fmt.Sprintf("Lesson %d: check the error from Close on written files.", i),
			Confidence: 0.8, Space: "hash:2048", Code: bytes.Repeat([]byte{byte(i)}, 484), Time: t0.Add(time.Duration(i) * time.Second)})
	}
	if _, err := l.Publish(ctx, es); err != nil {
		b.Fatal(err)
	}
	fetch := serve(b, l)
	key := verifierOf(b, id)
	var wire int64
	b.ResetTimer()
	for b.Loop() {
		got := 0
		f, err := NewFollower(FollowConfig{Fetcher: fetch, Key: key, Origin: l.Origin(), MaxEntries: MaxMaxEntries,
			Accept: func(context.Context, int64, Record) error { got++; return nil }})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := f.Sync(ctx); err != nil {
			b.Fatal(err)
		}
		if got != n {
			b.Fatalf("accepted %d; want %d", got, n)
		}
		wire = f.BytesFetched()
	}
	b.ReportMetric(float64(wire)/n, "wire-B/exp")
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "exp/s")
}
